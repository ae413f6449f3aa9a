"""2D report figures: slice overlays with contours, a thick-slab MIP, training curves.

Every function takes plain arrays plus an explicit ``spacing`` (array order ``(sz, sy, sx)``
mm, as :class:`coroseg.io.volume.Volume` carries it), writes one PNG atomically
(:func:`coroseg.io.atomic.atomic_path`) and returns its path. Rendering uses matplotlib's
Agg backend (no display needed). Figure sizes are fixed (no tight bounding box), so the
pixel size of the output is known in advance: ``figsize * dpi``.

Display conventions: axial panels are shown as radiologists read them (patient's right on
the left of the screen, anterior up), which for an LPS-oriented array (identity direction)
means row ``j`` down and column ``i`` right; coronal panels have superior up.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from coroseg.errors import InputError
from coroseg.io.atomic import atomic_path

log = logging.getLogger(__name__)

__all__ = ["overlay_figure", "training_curves", "pick_slices", "PRED_COLOUR", "REF_COLOUR"]

#: contour colours (matplotlib colour strings); chosen to be distinguishable for colour-blind readers
PRED_COLOUR = "#ffb000"  # amber
REF_COLOUR = "#00c8ff"  # cyan


def _figure(figsize: tuple[float, float], dpi: int):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    # a bare Figure (no pyplot state machine): nothing leaks between calls or threads
    return Figure(figsize=figsize, dpi=dpi)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=fig.dpi, facecolor=fig.get_facecolor())
    return path


def _check_volume(name: str, arr: np.ndarray | None, shape: tuple[int, ...] | None) -> np.ndarray | None:
    if arr is None:
        return None
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise InputError(f"{name} must be a 3D (Z, Y, X) array, found shape {arr.shape}")
    if shape is not None and arr.shape != shape:
        raise InputError(f"{name} shape {arr.shape} differs from the image shape {shape}")
    return arr


def pick_slices(mask: np.ndarray, n: int, *, axis: int = 0) -> list[int]:
    """Indices of ``n`` slices along ``axis`` through the foreground-richest levels.

    Greedy: slices are visited from the most to the least foreground voxels and kept when
    at least ``extent / (2 n)`` slices away from every slice already kept (``extent`` = the
    foreground's extent along ``axis``), so the picks are spread out rather than all next to
    the single richest level. With an empty mask the slices are evenly spaced.

    Parameters
    ----------
    mask : (Z, Y, X) ndarray of bool
    n : int
        Number of slices wanted (at least 1).
    axis : int
        Axis along which the slices are indexed.

    Returns
    -------
    list of int, sorted, unique (fewer than ``n`` only when the volume is thinner than ``n``).

    Examples
    --------
    >>> m = np.zeros((10, 4, 4), bool); m[2, :2] = True; m[7] = True
    >>> pick_slices(m, 2)
    [2, 7]
    """
    mask = np.asarray(mask, dtype=bool)
    size = mask.shape[axis]
    n = max(1, min(int(n), size))
    other = tuple(a for a in range(mask.ndim) if a != axis)
    counts = mask.sum(axis=other)
    nz = np.flatnonzero(counts)
    if nz.size == 0:
        return sorted({int(round(x)) for x in np.linspace(0, size - 1, n + 2)[1:-1]})
    lo, hi = int(nz[0]), int(nz[-1]) + 1
    min_sep = max(1.0, (hi - lo) / (2.0 * n))
    order = lo + np.argsort(-counts[lo:hi], kind="stable")
    picks: list[int] = []
    for k in order:
        if all(abs(int(k) - p) >= min_sep for p in picks):
            picks.append(int(k))
            if len(picks) == n:
                break
    return sorted(set(picks))


def _bbox_2d(mask2d: np.ndarray, margin: tuple[int, int]) -> tuple[slice, slice]:
    rows = np.flatnonzero(mask2d.any(axis=1))
    cols = np.flatnonzero(mask2d.any(axis=0))
    if rows.size == 0:
        return slice(None), slice(None)
    r0, r1 = max(0, rows[0] - margin[0]), min(mask2d.shape[0], rows[-1] + 1 + margin[0])
    c0, c1 = max(0, cols[0] - margin[1]), min(mask2d.shape[1], cols[-1] + 1 + margin[1])
    return slice(r0, r1), slice(c0, c1)


def _contour(ax, mask2d: np.ndarray, extent, colour: str, lw: float = 1.2) -> None:
    m = np.asarray(mask2d, dtype=float)
    if m.min() == m.max():  # empty or full: no iso-line, and matplotlib would warn
        return
    ax.contour(m, levels=[0.5], colors=[colour], linewidths=lw, extent=extent, origin="upper")


def _panel(ax, img2d, pred2d, ref2d, *, extent, window, title: str) -> None:
    ax.imshow(img2d, cmap="gray", vmin=window[0], vmax=window[1], extent=extent, origin="upper",
              interpolation="bilinear")
    if ref2d is not None:
        _contour(ax, ref2d, extent, REF_COLOUR)
    if pred2d is not None:
        _contour(ax, pred2d, extent, PRED_COLOUR, lw=1.0)
    ax.set_title(title, fontsize=9, color="white")
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_color("#444")


def overlay_figure(image: np.ndarray, pred: np.ndarray | None, ref: np.ndarray | None, path: str | Path, *,
                   spacing: Sequence[float], n_slices: int = 3, window: tuple[float, float] = (-200, 800),
                   slab_mm: float = 20.0, margin_mm: float = 15.0, title: str | None = None,
                   dpi: int = 100, panel_inches: float = 3.0) -> Path:
    """Axial + coronal slices with prediction and ground-truth contours, and a slab MIP.

    Panels, left to right: ``n_slices`` axial slices through the vessel-richest levels
    (:func:`pick_slices` on the ground truth, else the prediction), one coronal slice through
    the richest coronal level, and an axial maximum-intensity projection over a slab of
    ``slab_mm`` around the richest axial level with the prediction's projection outlined.
    All panels are cropped to the masks' in-plane bounding box plus ``margin_mm`` and drawn
    in millimetres (anisotropic spacing is shown with true proportions).

    Parameters
    ----------
    image : (Z, Y, X) ndarray, HU
    pred, ref : (Z, Y, X) ndarray of bool, or None
        Prediction and ground truth on the image grid; either may be empty or ``None``.
    path : str or Path
        Output PNG, written atomically.
    spacing : tuple of 3 float, mm
        Voxel size ``(sz, sy, sx)``.
    n_slices : int
        Number of axial panels.
    window : (float, float), HU
        Display window (default -200..800, a CTA vessel window).
    slab_mm : float
        Thickness of the MIP slab.
    margin_mm : float
        Margin around the masks' bounding box.
    dpi : int
    panel_inches : float
        Panel width and height; the PNG is ``round(panel_inches * (n_slices + 2) * dpi)`` by
        ``round((panel_inches + 0.5) * dpi)`` pixels.

    Returns
    -------
    Path of the written PNG.
    """
    image = _check_volume("image", image, None)
    pred = _check_volume("pred", pred, image.shape)
    ref = _check_volume("ref", ref, image.shape)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise InputError(f"spacing must be 3 positive numbers (sz, sy, sx) mm, found {tuple(spacing)}")
    sz, sy, sx = (float(s) for s in spacing)
    pred_b = None if pred is None else pred.astype(bool, copy=False)
    ref_b = None if ref is None else ref.astype(bool, copy=False)
    guide = ref_b if ref_b is not None and ref_b.any() else pred_b
    if guide is None:
        guide = np.zeros(image.shape, bool)
    union = np.zeros(image.shape, bool)
    for m in (pred_b, ref_b):
        if m is not None:
            union |= m

    axial = pick_slices(guide, n_slices, axis=0)
    coronal = pick_slices(guide, 1, axis=1)[0]
    fg_yx = union.any(axis=0)
    rs, cs = _bbox_2d(fg_yx, (int(margin_mm / sy), int(margin_mm / sx)))
    fg_zx = union.any(axis=1)
    zs, _ = _bbox_2d(fg_zx, (int(margin_mm / sz), 0))

    fig = _figure((panel_inches * (n_slices + 2), panel_inches + 0.5), dpi)
    fig.set_facecolor("black")
    gs = fig.add_gridspec(1, n_slices + 2, left=0.005, right=0.995, top=(panel_inches + 0.0) / (panel_inches + 0.5),
                          bottom=0.02, wspace=0.03)

    def crop(a2d, r, c):
        return None if a2d is None else a2d[r, c]

    def ext(r: slice, c: slice, shape, dr: float, dc: float):
        r0, r1, _ = r.indices(shape[0])
        c0, c1, _ = c.indices(shape[1])
        return (c0 * dc, c1 * dc, r1 * dr, r0 * dr)

    for p, k in enumerate(axial):
        ax = fig.add_subplot(gs[0, p])
        _panel(ax, image[k][rs, cs], crop(None if pred_b is None else pred_b[k], rs, cs),
               crop(None if ref_b is None else ref_b[k], rs, cs),
               extent=ext(rs, cs, image.shape[1:], sy, sx), window=window,
               title=f"axial z={k} ({k * sz:.0f} mm)")
    # coronal: rows are z (superior up -> flip so larger k is on top), columns x
    ax = fig.add_subplot(gs[0, len(axial)])
    cor = lambda a: None if a is None else a[:, coronal, :][zs, cs][::-1]  # noqa: E731
    z0, z1, _ = zs.indices(image.shape[0])
    c0, c1, _ = cs.indices(image.shape[2])
    _panel(ax, cor(image), cor(pred_b), cor(ref_b), extent=(c0 * sx, c1 * sx, 0, (z1 - z0) * sz),
           window=window, title=f"coronal y={coronal}")
    # thick-slab axial MIP around the richest level
    k_mid = pick_slices(guide, 1, axis=0)[0]
    half = max(0, int(round(slab_mm / sz / 2)))
    k0, k1 = max(0, k_mid - half), min(image.shape[0], k_mid + half + 1)
    mip = image[k0:k1].max(axis=0)[rs, cs]
    pmip = None if pred_b is None else pred_b[k0:k1].any(axis=0)[rs, cs]
    rmip = None if ref_b is None else ref_b[k0:k1].any(axis=0)[rs, cs]
    ax = fig.add_subplot(gs[0, len(axial) + 1])
    _panel(ax, mip, pmip, rmip, extent=ext(rs, cs, image.shape[1:], sy, sx), window=window,
           title=f"MIP {(k1 - k0) * sz:.0f} mm slab")

    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=PRED_COLOUR, lw=2, label="prediction")]
    if ref_b is not None:
        handles.append(Line2D([], [], color=REF_COLOUR, lw=2, label="ground truth"))
    fig.legend(handles=handles, loc="lower left", ncol=len(handles), fontsize=8, frameon=False,
               labelcolor="white", bbox_to_anchor=(0.0, 0.0))
    if title:
        fig.suptitle(title, color="white", fontsize=10, y=0.995, va="top")
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
def read_metrics_csv(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """Read a CSV into ``(columns, rows)`` (rows as dicts of strings); clear error when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError("metrics file not found", path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            cols = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read CSV ({exc})", path) from None
    return cols, rows


def _float(v: str | None) -> float:
    try:
        return float(v) if v not in (None, "") else math.nan
    except ValueError:
        return math.nan


def training_curves(metrics_csv: str | Path, path: str | Path, *, dpi: int = 100) -> Path:
    """Plot a training log (one row per epoch) as loss and metric curves.

    A coroseg training log (columns ``phase, epoch, train_loss, val_dice, ...``) is drawn
    with :func:`coroseg.train.curves.plot_curves`, as ``coroseg train`` draws it. Any other
    CSV is drawn generically: columns are classified by name: the x axis is ``epoch`` (else ``step``, else the row
    number); columns containing ``loss`` go on the left panel; ``lr``/``learning_rate`` on a
    log-scale right axis of the left panel; every other numeric column (``val_dice``, ...)
    on the right panel, which is omitted when there is none. Non-numeric columns (time
    stamps, names) are ignored.

    Parameters
    ----------
    metrics_csv : str or Path
        CSV with a header row.
    path : str or Path
        Output PNG (``10 x 3.6`` inches at ``dpi``, or ``5.5 x 3.6`` with one panel).

    Raises
    ------
    InputError
        When the file is missing, unreadable, or has no numeric column besides the x axis.
    """
    cols, rows = read_metrics_csv(metrics_csv)
    if not rows:
        raise InputError("no rows to plot (expected one row per epoch)", metrics_csv)
    if {"phase", "epoch", "train_loss", "val_dice"} <= set(cols):
        # a coroseg training log: draw it exactly as `coroseg train` does (one curve per phase)
        try:
            from coroseg.train.curves import plot_curves
        except ImportError:
            plot_curves = None
        if plot_curves is not None:
            typed = [{**r, "epoch": _float(r["epoch"]), "train_loss": _float(r["train_loss"]),
                      "val_dice": _float(r["val_dice"])} for r in rows]
            plot_curves(path, typed)
            return Path(path)
    xkey = next((c for c in ("epoch", "step", "iteration") if c in cols), None)
    x = np.array([_float(r[xkey]) for r in rows]) if xkey else np.arange(1, len(rows) + 1, dtype=float)
    series = {}
    for c in cols:
        if c == xkey:
            continue
        v = np.array([_float(r.get(c)) for r in rows])
        if np.isfinite(v).any():
            series[c] = v
    lr_keys = [c for c in series if c.lower() in ("lr", "learning_rate")]
    loss_keys = [c for c in series if "loss" in c.lower()]
    skip = {"time", "seconds", "elapsed", "wall", "wall_s", "time_s", "epoch_time", "samples", "patches"}
    other = [c for c in series if c not in lr_keys and c not in loss_keys and c.lower() not in skip]
    if not (loss_keys or other):
        raise InputError(f"no numeric loss or metric column to plot; columns are {cols}", metrics_csv)
    two = bool(loss_keys) and bool(other)
    fig = _figure((10.0 if two else 5.5, 3.6), dpi)
    axes = [fig.add_subplot(1, 2, i + 1) for i in range(2)] if two else [fig.add_subplot(1, 1, 1)]
    panels = ([(axes[0], loss_keys, "loss"), (axes[1], other, "metric")] if two
              else [(axes[0], loss_keys or other, "loss" if loss_keys else "metric")])
    xlabel = xkey or "row"
    for ax, keys, ylabel in panels:
        for c in keys:
            ok = np.isfinite(series[c])
            ax.plot(x[ok], series[c][ok], marker="o" if ok.sum() < 30 else None, ms=3, lw=1.5, label=c)
            if ylabel == "metric" and "dice" in c.lower() and ok.any():
                i = int(np.nanargmax(np.where(ok, series[c], -np.inf)))
                ax.annotate(f"best {series[c][i]:.3f}", (x[i], series[c][i]), textcoords="offset points",
                            xytext=(0, -14), ha="center", fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, frameon=False)
    if lr_keys and loss_keys:
        ax2 = axes[0].twinx()
        for c in lr_keys:
            ok = np.isfinite(series[c]) & (series[c] > 0)
            if ok.any():
                ax2.plot(x[ok], series[c][ok], color="grey", ls="--", lw=1, label=c)
                ax2.set_yscale("log")
        ax2.set_ylabel("learning rate", color="grey")
        ax2.tick_params(axis="y", colors="grey", labelsize=7)
    fig.subplots_adjust(left=0.08 if two else 0.14, right=0.92, bottom=0.15, top=0.93, wspace=0.3)
    return _save(fig, path)

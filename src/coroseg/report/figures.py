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

__all__ = ["overlay_figure", "overlay_axes", "prior_label", "radius_profile_figure", "training_curves", "pick_slices",
           "PRED_COLOUR", "REF_COLOUR"]

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


def _panel(ax, img2d, pred2d, ref2d, *, extent, window, title: str, letters: dict[str, str], dpi: int) -> None:
    """One slice: grey image, reference then prediction contours, title, letters and a mm ruler."""
    from coroseg.report.annotate import add_orientation_letters, add_scale_bar, nice_length_mm, text_pt

    ax.imshow(img2d, cmap="gray", vmin=window[0], vmax=window[1], extent=extent, origin="upper",
              interpolation="bilinear")
    if ref2d is not None:
        _contour(ax, ref2d, extent, REF_COLOUR, lw=1.6)
    if pred2d is not None:
        _contour(ax, pred2d, extent, PRED_COLOUR, lw=1.3)
    ax.set_title(title, fontsize=text_pt(TITLE_PX, dpi), color="white", pad=3)
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_color("#444")
    add_orientation_letters(ax, letters, fontsize=text_pt(LETTER_PX, dpi))
    add_scale_bar(ax, nice_length_mm(abs(extent[1] - extent[0])), fontsize=text_pt(LETTER_PX, dpi))


#: text heights on the overlay figure, pixels (>= coroseg.report.annotate.MIN_TEXT_PX)
TITLE_PX, LETTER_PX, LEGEND_PX = 15, 14, 16
#: rows above and below the panels, pixels: the panel titles, and the legend
HEADER_PX, FOOTER_PX = 30, 34


def prior_label(prior: str | None) -> str:
    """How a figure names the centerline the prediction was made with (``auto``/``oracle``/``none``)."""
    return {"auto": "automatic centerline", "oracle": "ORACLE reference centerline",
            "none": "no centerline prior"}.get(prior or "", "centerline prior not recorded")


def overlay_figure(image: np.ndarray, pred: np.ndarray | None, ref: np.ndarray | None, path: str | Path, *,
                   spacing: Sequence[float], direction: np.ndarray | None = None, prior: str | None = None,
                   n_slices: int = 3, window: tuple[float, float] = (-200, 800), slab_mm: float = 20.0,
                   margin_mm: float = 15.0, title: str | None = None, dpi: int = 100,
                   panel_inches: float = 2.5) -> Path:
    """Axial + coronal slices with prediction and ground-truth contours, and a slab MIP (PNG).

    Panels, left to right: ``n_slices`` axial slices through the vessel-richest levels
    (:func:`pick_slices` on the ground truth, else the prediction), one coronal slice through
    the richest coronal level, and an axial maximum-intensity projection over a slab of
    ``slab_mm`` around the richest axial level with the masks' projections outlined.
    All panels are cropped to the masks' in-plane bounding box plus ``margin_mm`` and drawn
    in millimetres (anisotropic spacing is shown with true proportions). Every panel carries
    the anatomical letters of its edges (from ``direction``) and a mm ruler; the legend names
    the centerline the prediction was made with (``prior``), so a copied PNG still says
    whether it shows an automatic or an ORACLE result.

    Parameters
    ----------
    image : (Z, Y, X) ndarray, HU
    pred, ref : (Z, Y, X) ndarray of bool, or None
        Prediction and ground truth on the image grid; either may be empty or ``None``.
    path : str or Path
        Output PNG, written atomically.
    spacing : tuple of 3 float, mm
        Voxel size ``(sz, sy, sx)``.
    direction : (3, 3) ndarray, optional
        ``Volume.direction`` of the arrays (default identity: LPS, shown as radiologists read it).
    prior : {"auto", "oracle", "none"}, optional
        The centerline the prediction used (:func:`prior_label`).
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
        Panel width and height. The PNG is ``round(panel_inches * (n_slices + 2) * dpi)`` by
        ``round(panel_inches * dpi) + HEADER_PX + FOOTER_PX`` pixels: 1250 x 314 by default,
        shown unscaled in the report (:data:`coroseg.report.annotate.REPORT_WIDTH_PX`).

    Returns
    -------
    Path of the written PNG.
    """
    return _save(overlay_axes(image, pred, ref, spacing=spacing, direction=direction, prior=prior,
                              n_slices=n_slices, window=window, slab_mm=slab_mm, margin_mm=margin_mm,
                              title=title, dpi=dpi, panel_inches=panel_inches), path)


def _crop_extent(r: slice, c: slice, shape, dr: float, dc: float):
    r0, r1, _ = r.indices(shape[0])
    c0, c1, _ = c.indices(shape[1])
    return (c0 * dc, c1 * dc, r1 * dr, r0 * dr)


def overlay_axes(image, pred, ref, *, spacing, direction=None, prior=None, n_slices=3, window=(-200, 800),
                 slab_mm=20.0, margin_mm=15.0, title=None, dpi=100, panel_inches=2.5):
    """The matplotlib ``Figure`` of :func:`overlay_figure` (same parameters, nothing written)."""
    from coroseg.report.annotate import screen_letters

    image = _check_volume("image", image, None)
    pred = _check_volume("pred", pred, image.shape)
    ref = _check_volume("ref", ref, image.shape)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise InputError(f"spacing must be 3 positive numbers (sz, sy, sx) mm, found {tuple(spacing)}")
    direction = np.eye(3) if direction is None else np.asarray(direction, float).reshape(3, 3)
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
    rs, cs = _bbox_2d(union.any(axis=0), (int(margin_mm / sy), int(margin_mm / sx)))
    zs, _ = _bbox_2d(union.any(axis=1), (int(margin_mm / sz), 0))
    n_panels = n_slices + 2
    panel_px = panel_inches * dpi
    height_px = panel_px + HEADER_PX + FOOTER_PX
    fig = _figure((panel_inches * n_panels, height_px / dpi), dpi)
    fig.set_facecolor("black")
    gs = fig.add_gridspec(1, n_panels, left=0.004, right=0.996, top=1 - HEADER_PX / height_px,
                          bottom=FOOTER_PX / height_px, wspace=0.03)
    ax_letters = screen_letters(direction, rows=1, cols=2)
    sl = lambda a, k: None if a is None else a[k][rs, cs]  # noqa: E731
    for p, k in enumerate(axial):
        _panel(fig.add_subplot(gs[0, p]), image[k][rs, cs], sl(pred_b, k), sl(ref_b, k),
               extent=_crop_extent(rs, cs, image.shape[1:], sy, sx), window=window, title=f"axial slice {k}",
               letters=ax_letters, dpi=dpi)
    # coronal: rows are z, flipped so that larger k (superior for LPS) is on top; columns x
    cor = lambda a: None if a is None else a[:, coronal, :][zs, cs][::-1]  # noqa: E731
    z0, z1, _ = zs.indices(image.shape[0])
    c0, c1, _ = cs.indices(image.shape[2])
    _panel(fig.add_subplot(gs[0, len(axial)]), cor(image), cor(pred_b), cor(ref_b),
           extent=(c0 * sx, c1 * sx, 0, (z1 - z0) * sz), window=window, title=f"coronal slice {coronal}",
           letters=screen_letters(direction, rows=0, cols=2, rows_up=True), dpi=dpi)
    # thick-slab axial MIP around the richest level
    k_mid = pick_slices(guide, 1, axis=0)[0]
    half = max(0, int(round(slab_mm / sz / 2)))
    k0, k1 = max(0, k_mid - half), min(image.shape[0], k_mid + half + 1)
    mip = lambda a: None if a is None else a[k0:k1].any(axis=0)[rs, cs]  # noqa: E731
    _panel(fig.add_subplot(gs[0, len(axial) + 1]), image[k0:k1].max(axis=0)[rs, cs], mip(pred_b), mip(ref_b),
           extent=_crop_extent(rs, cs, image.shape[1:], sy, sx), window=window,
           title=f"axial MIP, {(k1 - k0) * sz:.0f} mm slab", letters=ax_letters, dpi=dpi)
    _legend_row(fig, prior, ref_b is not None, title, dpi)
    return fig


def _legend_row(fig, prior: str | None, has_ref: bool, title: str | None, dpi: int) -> None:
    """Bottom row: what each contour colour is (the prediction's centerline named), and the title."""
    from matplotlib.lines import Line2D

    from coroseg.report.annotate import text_pt

    handles = [Line2D([], [], color=PRED_COLOUR, lw=3, label=f"prediction ({prior_label(prior)})")]
    if has_ref:
        handles.append(Line2D([], [], color=REF_COLOUR, lw=3, label="ground truth"))
    fig.legend(handles=handles, loc="lower left", ncol=len(handles), fontsize=text_pt(LEGEND_PX, dpi),
               frameon=False, labelcolor="white", bbox_to_anchor=(0.0, 0.0), borderaxespad=0.3)
    if title:
        fig.text(0.996, 0.012, title, color="white", fontsize=text_pt(LEGEND_PX, dpi), ha="right", va="bottom")


def radius_profile_figure(profiles: Sequence, path: str | Path, *, prior: str | None = None, dpi: int = 100,
                          width_px: int = 940, height_px: int = 300) -> Path:
    """Radius against distance from the ostium, one panel per branch (:mod:`coroseg.eval.radius`).

    Reference (ground truth) and prediction on a shared radius axis; the prediction's line is
    named with the centerline it was made with (``prior``, as :func:`overlay_figure`). The PNG
    is ``width_px x height_px`` (it sits beside the 3D view in the report, unscaled).

    Parameters
    ----------
    profiles : sequence of :class:`coroseg.eval.radius.BranchProfile` (at least one)
    path : str or Path
        Output PNG, written atomically.
    """
    from coroseg.report.annotate import text_pt

    if not profiles:
        raise InputError("no branch to plot (the reference has no centerline)")
    fig = _figure((width_px / dpi, height_px / dpi), dpi)
    axes = fig.subplots(1, len(profiles), sharey=True, squeeze=False)[0]
    small, big = text_pt(13, dpi), text_pt(14, dpi)
    top = max(1.0, max(float(np.max(np.r_[p.ref_mm, p.pred_mm])) for p in profiles) * 1.15)
    for ax, prof in zip(axes, profiles):
        ax.plot(prof.distance_mm, prof.ref_mm, color="#0a7fa8", lw=2.0, label="ground truth")
        ax.plot(prof.distance_mm, prof.pred_mm, color="#d98c00", lw=1.6, label=f"prediction ({prior_label(prior)})")
        ax.set_title(prof.name, fontsize=big)
        ax.set_xlabel("distance from ostium (mm)", fontsize=small)
        ax.set_ylim(0, top)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=small)
    axes[0].set_ylabel("radius (mm)", fontsize=small)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=2, fontsize=small, frameon=False)
    fig.subplots_adjust(left=0.075, right=0.99, bottom=0.2, top=0.78, wspace=0.08)
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

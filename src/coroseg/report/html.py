"""``coroseg report``: one self-contained HTML page about a run and its test results.

The page (``report.html``) embeds every picture as a base64 ``data:`` URI and carries its
CSS inline, so it can be mailed or attached to an issue as a single file and opened offline.
It shows, when available:

1. the run's configuration (``run_dir/config.json``): model, sampler, attention, patch size,
   spacing, data, training settings;
2. the test results: ``<test_dir>/summary.md`` (rendered) and the per-case table from
   ``<test_dir>/metrics.csv`` (or ``per_case.csv``; any CSV with a ``case_id`` column);
3. training curves: ``run_dir/training_curves.png``, else drawn from ``run_dir/metrics.csv``;
4. per case (see :func:`find_case_triplets`): an overlay figure (axial + coronal + slab MIP,
   prediction and ground-truth contours) for the first ``max_cases`` cases and a rotating 3D
   GIF coloured TP/FP/FN for the first ``max_3d``;
5. crop-vs-grid pictures: any ``*crops*.png``/``*crops*.gif`` in ``run_dir`` or ``test_dir``,
   else drawn with :mod:`coroseg.prior.figures` for the first case when its centerline is known.

The figures are also kept as files in ``<report folder>/figures/`` (for a README or slides).
A part whose inputs are missing is left out with a one-line note; a figure that fails is
logged and noted, never fatal (the metrics still reach the page).
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from coroseg import __version__
from coroseg.data.layouts import natural_key
from coroseg.errors import CorosegError, InputError
from coroseg.io.atomic import write_text
from coroseg.io.volume import strip_extension, volume_extension
from coroseg.report.markdown import markdown_to_html

log = logging.getLogger(__name__)

__all__ = ["CaseFiles", "find_case_triplets", "markdown_to_html", "write_report", "find_metrics_csv"]


class CaseFiles(NamedTuple):
    """One test case's files: ``(case_id, image, pred, label)``; image/label may be None."""

    case_id: str
    image: Path | None
    pred: Path
    label: Path | None


#: sub-folders of ``pred/`` preferred when a case was predicted several ways
VARIANT_ORDER = ("", "auto", "oracle", "gt", "none")


def _pred_files(pred_dir: Path) -> dict[str, tuple[str, Path]]:
    """``{case_id: (variant, path)}`` for segmentation files under ``pred_dir`` (one level deep)."""
    from coroseg.eval.evaluate import case_id_from_path

    found: dict[str, list[tuple[str, Path]]] = {}
    folders = [pred_dir] + sorted(p for p in pred_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder in folders:
        variant = "" if folder == pred_dir else folder.name
        vols = [p for p in sorted(folder.iterdir())
                if p.is_file() and not p.name.startswith(".") and volume_extension(p)]
        segs = [p for p in vols if strip_extension(p).endswith("_seg")]
        if not segs:  # files named by bare case id; skip probability maps
            segs = [p for p in vols if not strip_extension(p).endswith(("_prob", "_attention", "_image"))]
        for p in segs:
            found.setdefault(case_id_from_path(p), []).append((variant, p))

    def rank(item: tuple[str, Path]) -> tuple[int, str]:
        v = item[0]
        return (VARIANT_ORDER.index(v) if v in VARIANT_ORDER else len(VARIANT_ORDER), v)

    return {cid: min(items, key=rank) for cid, items in found.items()}


def find_case_triplets(test_dir: str | Path, data_dir: str | Path | None = None) -> list[CaseFiles]:
    """Pair each prediction of a test folder with its image and ground truth.

    Predictions are the volume files in ``<test_dir>/pred/`` (or ``test_dir`` itself when it
    has no ``pred/``), and in its direct sub-folders (e.g. ``pred/auto/``, ``pred/oracle/``:
    one file per case is kept, preferring the top level, then ``auto``, ``oracle``, ``gt``,
    ``none``, then alphabetical). Within a folder, files named ``<id>_seg.<ext>`` (what
    ``coroseg predict``/``test`` write) are used when present, else every volume file except
    ``*_prob``/``*_attention``/``*_image``. The case id is the name minus extension and role
    suffix (:func:`coroseg.eval.evaluate.case_id_from_path`).

    Images and labels come from ``data_dir`` through :func:`coroseg.data.layouts.discover_cases`
    (any supported layout), matched by case id; without ``data_dir``, or for a case the
    dataset lacks, they are ``None``.

    Parameters
    ----------
    test_dir : str or Path
        Output folder of ``coroseg test`` (or a folder of predictions).
    data_dir : str or Path, optional
        Dataset root.

    Returns
    -------
    list of CaseFiles
        ``(case_id, image, pred, label)``, sorted by case id (natural order).

    Raises
    ------
    InputError
        When ``test_dir`` does not exist, or ``data_dir`` is given but holds no dataset.
    """
    test_dir = Path(test_dir)
    if not test_dir.is_dir():
        raise InputError("test folder not found" if not test_dir.exists() else "not a folder", test_dir)
    pred_dir = test_dir / "pred" if (test_dir / "pred").is_dir() else test_dir
    preds = _pred_files(pred_dir)
    cases = {}
    if data_dir is not None:
        from coroseg.data.layouts import discover_cases

        _, found = discover_cases(data_dir)
        cases = {c.case_id: c for c in found}
    out = []
    for cid in sorted(preds, key=natural_key):
        c = cases.get(cid)
        out.append(CaseFiles(cid, c.image if c else None, preds[cid][1], c.label if c else None))
    return out



# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#14202e;color:#fff;padding:22px 32px}
header h1{margin:0;font-size:22px;font-weight:600}
header .sub{opacity:.8;font-size:13px;margin-top:4px}
header code{background:#26364a;color:#fff}
main{max-width:1560px;margin:0 auto;padding:8px 32px 40px}
section{background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:14px 20px;margin:18px 0}
h2{font-size:17px;margin:4px 0 12px;color:#14202e}
h3,h4,h5{font-size:14px;margin:12px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{padding:4px 10px;border-bottom:1px solid #e6e8ee;text-align:right;white-space:nowrap}
th{background:#eef1f5;font-weight:600}
td:first-child,th:first-child{text-align:left}
table.kv td:first-child{color:#56607a}
table.kv td{text-align:left}
tr:hover td{background:#f7f9fc}
.scroll{overflow-x:auto}
img{max-width:100%;height:auto;border-radius:4px}
figure{margin:10px 0 18px}
figcaption{font-size:12px;color:#56607a;margin-top:4px}
.case{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
.case .ov{flex:1 1 900px}
.case .r3d{flex:0 0 320px}
.note{color:#8a5a00;font-size:13px}
code{background:#eef1f5;padding:1px 4px;border-radius:3px}
footer{color:#8790a3;font-size:12px;text-align:center;padding:16px}
"""


def _img(path: Path, alt: str) -> str:
    mime = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}[path.suffix.lower()]
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:{mime};base64,{data}" alt="{html.escape(alt)}">'


def _fmt_value(v: str) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return html.escape(str(v))
    if math.isinf(f):
        return "∞" if f > 0 else "−∞"
    if math.isnan(f):
        return "–"
    if float(f).is_integer() and abs(f) < 1e6 and "." not in str(v):
        return str(int(f))
    return f"{f:.3f}" if abs(f) < 1000 else f"{f:.1f}"


def _csv_table(cols: Sequence[str], rows: Sequence[dict]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "\n".join("<tr>" + "".join(f"<td>{_fmt_value(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table></div>'


def _mean_rows(cols: Sequence[str], rows: Sequence[dict]) -> list[dict]:
    """Mean ± std per numeric column, one row per ``centerline`` value (or one overall row)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r.get("centerline", "") or "all", []).append(r)
    out = []
    for g, rs in groups.items():
        row = {cols[0]: f"mean ± std ({g}, n={len(rs)})"}
        for c in cols[1:]:
            vals = []
            for r in rs:
                try:
                    vals.append(float(r.get(c, "")))
                except (TypeError, ValueError):
                    pass
            fin = [v for v in vals if math.isfinite(v)]
            if fin:
                s = f"{np.mean(fin):.3f} ± {np.std(fin):.3f}"
                row[c] = s + (f" ({len(vals) - len(fin)} inf)" if len(fin) < len(vals) else "")
        out.append(row)
    return out


def find_metrics_csv(test_dir: Path) -> Path | None:
    """The per-case CSV of a test folder: ``metrics.csv`` or ``per_case.csv`` with a ``case_id`` column."""
    from coroseg.report.figures import read_metrics_csv

    for name in ("metrics.csv", "per_case.csv"):
        p = test_dir / name
        if p.is_file():
            cols, _ = read_metrics_csv(p)
            if "case_id" in cols:
                return p
    return None


def _config_rows(cfg: dict) -> list[tuple[str, str]]:
    def g(*keys, default=None):
        d = cfg
        for k in keys:
            if not isinstance(d, dict) or k not in d:
                return default
            d = d[k]
        return d

    def fmt(v) -> str:
        if v is None:
            return "–"
        if isinstance(v, (list, tuple)):
            return " × ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
        if isinstance(v, float):
            return f"{v:g}"
        return str(v)

    rows = [("model", fmt(g("model"))), ("dimensions", fmt(g("dims"))), ("sampler", fmt(g("sampler"))),
            ("attention channel", fmt(g("attention"))), ("input channels", fmt(g("in_channels"))),
            ("patch size (voxels, z×y×x)", fmt(g("patch_size"))), ("spacing (mm, z×y×x)", fmt(g("spacing"))),
            ("intensity clip (HU)", fmt(g("intensity", "clip"))),
            ("locator", "yes" if g("locator") else "no"),
            ("crop method", fmt(g("crop", "method"))),
            ("data", f"{fmt(g('data', 'root'))} ({fmt(g('data', 'layout'))})"),
            ("seed", fmt(g("seed")))]
    train = g("train", default={}) or {}
    if isinstance(train, dict) and train:
        rows.append(("training", ", ".join(f"{k}={fmt(v)}" for k, v in train.items()
                                           if not isinstance(v, (dict, list)))))
    rows.append(("coroseg version", fmt(g("coroseg_version"))))
    return [(k, v) for k, v in rows if v not in ("–", "– (–)")]


def _safe(what: str, notes: list[str], fn, *args, **kwargs):
    """Run a figure function; on failure log it, add a note and return None."""
    try:
        return fn(*args, **kwargs)
    except (CorosegError, ValueError, RuntimeError, OSError, MemoryError, KeyError, TypeError) as exc:
        log.warning("report: %s failed: %s", what, exc)
        notes.append(f"{what}: not drawn ({exc})")
        return None


def _case_arrays(case: CaseFiles):
    """Read image (or None), pred, label (or None) on one grid; pred/label resampled to the image if needed."""
    from coroseg.io.volume import grid_mismatch, read_volume, resample_to_grid

    pred = read_volume(case.pred, is_label=True)
    ref = read_volume(case.label, is_label=True) if case.label else None
    img = read_volume(case.image) if case.image else None
    base = img if img is not None else pred
    if pred is not base and grid_mismatch(pred, base):
        pred = resample_to_grid(pred, base)
    if ref is not None and grid_mismatch(ref, base):
        ref = resample_to_grid(ref, base)
    return (None if img is None else img.array, pred.array > 0, None if ref is None else ref.array > 0,
            base.spacing, base)


def _crop_figures(case: CaseFiles, cfg: dict, fig_dir: Path, notes: list[str]) -> list[Path]:
    """Crop-vs-grid still + GIF for one case with :mod:`coroseg.prior` (needs image + label).

    Crop centres come from the skeleton of the ground truth (an oracle centerline) with the
    run's patch size converted from model voxels to image voxels (``patch * model spacing /
    image spacing``); 2D runs get a 64^3 size so the picture stays meaningful.
    """
    try:
        from coroseg.prior import figures as pfig
        from coroseg.prior.crops import crop_centres
        from coroseg.prior.grid import grid_tiles
    except ImportError as exc:  # prior module absent in this build
        notes.append(f"crop-vs-grid figure: coroseg.prior unavailable ({exc})")
        return []
    from skimage.morphology import skeletonize

    from coroseg.io.volume import read_volume

    img = read_volume(case.image)
    lab = read_volume(case.label, is_label=True)
    patch = [int(s) for s in (cfg.get("patch_size") or [64, 64, 64])]
    model_sp = [float(s) for s in (cfg.get("spacing") or img.spacing)]
    if len(patch) != 3 or patch[0] == 1:
        patch = [64, 64, 64]
    size = [max(4, int(round(p * m / s))) for p, m, s in zip(patch, model_sp, img.spacing)]
    size = [min(a, b) for a, b in zip(size, img.shape)]
    pts = np.argwhere(skeletonize(lab.array > 0))
    if pts.size == 0:
        return []
    centres = crop_centres(pts, size=size, spacing=img.spacing, shape=img.shape)
    grid = grid_tiles(img.shape, size)
    # hand the prior figures an image already windowed to [0, 1] (CTA window -200..800 HU) and
    # flagged as a label, so they show it as is instead of taking whole-volume percentiles per
    # frame (which costs ~1 s a frame on a 512 x 512 x 200 scan)
    shown = img.with_array(np.clip((img.array.astype(np.float32) + 200.0) / 1000.0, 0.0, 1.0), is_label=True)
    img = shown
    return [pfig.plot_crops_vs_grid(img, centres, grid, size, fig_dir / f"{case.case_id}_crops_vs_grid.png",
                                    label=lab),
            pfig.crops_gif(img, centres, size, fig_dir / f"{case.case_id}_crops.gif", grid_centres=grid, label=lab,
                           step=max(2, size[0] // 8), max_side=320)]


def write_report(run_dir: str | Path, out_path: str | Path | None = None, *, test_dir: str | Path | None = None,
                 data_dir: str | Path | None = None, cases: Sequence[tuple] | None = None,
                 max_cases: int = 6, max_3d: int = 3, crop_figures: bool = True) -> Path:
    """Write ``report.html`` for a run folder (and, optionally, a ``coroseg test`` folder).

    Parameters
    ----------
    run_dir : str or Path
        Run folder (``config.json``, ``metrics.csv``, ``training_curves.png`` ...).
    out_path : str or Path, optional
        Output HTML; default ``<test_dir>/report.html`` when a test folder is known, else
        ``<run_dir>/report.html``. Figures are also written to ``<out folder>/figures/``.
    test_dir : str or Path, optional
        Output folder of ``coroseg test``; default ``<run_dir>/test`` if it exists.
    data_dir : str or Path, optional
        Dataset with the images and ground truths of the test cases; default the run's
        ``config["data"]["root"]`` when that folder exists.
    cases : sequence of (case_id, image, pred, label) tuples, optional
        The cases to draw, instead of :func:`find_case_triplets` ``(test_dir, data_dir)``;
        ``image`` and ``label`` may be None (no overlay / prediction-only 3D view).
    max_cases : int
        Cases with an overlay figure (the first ones, by case id).
    max_3d : int
        Cases with a rotating 3D GIF.
    crop_figures : bool
        Draw crop-vs-grid figures for the first case when none are found on disk.

    Returns
    -------
    Path of the written HTML.

    Raises
    ------
    InputError
        ``run_dir`` or a given ``test_dir`` is missing, or ``config.json`` is not valid JSON.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError("run folder not found" if not run_dir.exists() else "not a folder", run_dir)
    if test_dir is None and (run_dir / "test").is_dir():
        test_dir = run_dir / "test"
    test_dir = None if test_dir is None else Path(test_dir)
    if test_dir is not None and not test_dir.is_dir():
        raise InputError("test folder not found", test_dir)
    out_path = Path(out_path) if out_path else (test_dir or run_dir) / "report.html"
    fig_dir = out_path.parent / "figures"
    cfg: dict = {}
    if (run_dir / "config.json").is_file():
        try:
            cfg = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"not valid JSON ({exc})", run_dir / "config.json") from None
    if data_dir is None:
        root = (cfg.get("data") or {}).get("root") if isinstance(cfg.get("data"), dict) else None
        if root and Path(root).is_dir():
            data_dir = root
    notes: list[str] = []
    parts: list[str] = []

    # 1. configuration
    if cfg:
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in _config_rows(cfg))
        parts.append(f'<section><h2>Run configuration</h2><table class="kv">{rows}</table></section>')
    else:
        parts.append(f'<section><h2>Run configuration</h2><p class="note">no config.json in '
                     f'<code>{html.escape(str(run_dir))}</code></p></section>')

    # 2. metrics
    if test_dir is not None:
        body = []
        if (test_dir / "summary.md").is_file():
            body.append(markdown_to_html((test_dir / "summary.md").read_text(encoding="utf-8")))
        mcsv = find_metrics_csv(test_dir)
        if mcsv is not None:
            from coroseg.report.figures import read_metrics_csv

            cols, rows_ = read_metrics_csv(mcsv)
            body.append(f"<h3>Per case ({html.escape(mcsv.name)})</h3>" + _csv_table(cols, rows_))
            if not (test_dir / "summary.md").is_file() and rows_:
                body.insert(0, "<h3>Summary</h3>" + _csv_table(cols, _mean_rows(cols, rows_)))
        if not body:
            body.append('<p class="note">no summary.md or per-case metrics CSV in the test folder</p>')
        parts.append(f"<section><h2>Test results</h2><p>Test folder: <code>{html.escape(str(test_dir))}</code></p>"
                     + "\n".join(body) + "</section>")

    # 3. training curves
    curves = run_dir / "training_curves.png"
    if not curves.is_file() and (run_dir / "metrics.csv").is_file():
        from coroseg.report.figures import training_curves

        curves = _safe("training curves", notes, training_curves, run_dir / "metrics.csv",
                       fig_dir / "training_curves.png")
    if curves is not None and Path(curves).is_file():
        parts.append(f"<section><h2>Training</h2><figure>{_img(Path(curves), 'training curves')}"
                     "<figcaption>training loss and validation metrics per epoch</figcaption></figure></section>")

    # 4. per-case figures
    if cases is not None:
        cases = [CaseFiles(str(c[0]), None if c[1] is None else Path(c[1]), Path(c[2]),
                           None if c[3] is None else Path(c[3])) for c in cases]
    else:
        cases = find_case_triplets(test_dir, data_dir) if test_dir is not None else []
    if cases:
        from coroseg.report.figures import overlay_figure
        from coroseg.report.render3d import render3d_gif, render3d_png

        blocks = []
        for n, case in enumerate(cases[: max(max_cases, max_3d)]):
            arrays = _safe(f"{case.case_id}: reading volumes", notes, _case_arrays, case)
            if arrays is None:
                continue
            image, pred, ref, spacing, _ = arrays
            cells = []
            if n < max_cases and image is not None:
                p = _safe(f"{case.case_id} overlay", notes, overlay_figure, image, pred, ref,
                          fig_dir / f"{case.case_id}_overlay.png", spacing=spacing)
                if p is not None:
                    cells.append(f'<figure class="ov">{_img(p, case.case_id + " overlay")}<figcaption>'
                                 "axial slices through the vessel-richest levels, a coronal slice and a slab MIP; "
                                 "amber = prediction, cyan = ground truth</figcaption></figure>")
            elif image is None:
                notes.append(f"{case.case_id}: no image found (pass --data) — overlay skipped")
            if n < max_3d:
                g = _safe(f"{case.case_id} 3D view", notes, render3d_gif, pred, ref,
                          fig_dir / f"{case.case_id}_3d.gif", spacing=spacing, title=case.case_id)
                if n == 0:
                    _safe(f"{case.case_id} 3D still", notes, render3d_png, pred, ref,
                          fig_dir / f"{case.case_id}_3d.png", spacing=spacing, title=case.case_id)
                if g is not None:
                    legend = "gold = true positive, red = false positive, blue = false negative" if ref is not None \
                        else "prediction (no ground truth)"
                    cells.append(f'<figure class="r3d">{_img(g, case.case_id + " 3D")}<figcaption>3D, '
                                 f"rotating about the superior axis: {legend}</figcaption></figure>")
            if cells:
                blocks.append(f"<h3>{html.escape(case.case_id)}</h3><div class=\"case\">{''.join(cells)}</div>")
        if blocks:
            parts.append("<section><h2>Cases</h2>" + "\n".join(blocks) + "</section>")

    # 5. crop-vs-grid figures
    found: list[Path] = []
    for d in dict.fromkeys([run_dir, test_dir, run_dir / "figures", fig_dir]):
        if d is not None and Path(d).is_dir():
            found += [p for p in sorted(Path(d).iterdir())
                      if "crops" in p.name.lower() and p.suffix.lower() in (".png", ".gif") and p.is_file()]
    if not found and crop_figures and cases and cases[0].image and cases[0].label:
        found = _safe("crop-vs-grid figures", notes, _crop_figures, cases[0], cfg, fig_dir, notes) or []
    if found:
        imgs = "".join(f"<figure>{_img(p, p.stem)}<figcaption>{html.escape(p.name)}</figcaption></figure>"
                       for p in dict.fromkeys(found))
        parts.append("<section><h2>Centerline crops vs a fixed grid</h2>" + imgs + "</section>")

    if notes:
        parts.append("<section><h2>Notes</h2><ul>" + "".join(f"<li class=\"note\">{html.escape(n)}</li>"
                                                               for n in notes) + "</ul></section>")
    title = f"coroseg report — {cfg.get('model', run_dir.name)}"
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
            f"<header><h1>{html.escape(title)}</h1><div class=\"sub\">run <code>{html.escape(str(run_dir))}</code>"
            f" · generated {when} · coroseg {__version__}</div></header>\n<main>\n" + "\n".join(parts)
            + "\n</main><footer>self-contained report written by <code>coroseg report</code></footer></body></html>\n")
    write_text(out_path, page)
    return out_path

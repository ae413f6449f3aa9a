"""The sections of ``report.html`` (:func:`coroseg.report.html.write_report`), one function each.

Every section function returns its HTML (``""`` when its inputs are missing) and appends a
one-line note for anything it could not draw; a figure that fails is logged and noted, never
fatal, so the metrics still reach the page.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from coroseg.errors import CorosegError, InputError
from coroseg.report.markdown import markdown_to_html

if TYPE_CHECKING:
    from coroseg.report.html import CaseFiles

log = logging.getLogger("coroseg.report.html")


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


def read_run_config(run_dir: Path) -> dict:
    """The run's ``config.json`` as JSON (empty without one): the report also describes unfinished runs."""
    path = run_dir / "config.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON ({exc})", path) from None


def _identity_rows(run_dir: Path) -> list[tuple[str, str]]:
    """The model that produced the report's results: name, version, sha256 of its weights."""
    from coroseg.models.store import model_provenance

    try:
        ident = model_provenance(run_dir)
    except CorosegError:  # an unfinished run without weights yet
        return []
    return [("model (name, version, weights sha256)",
             f"{ident['model_name']}, {ident['model_version']}, {ident['model_sha256'][:12]}")]


def config_section(cfg: dict, run_dir: Path) -> str:
    """1. the run configuration table."""
    if not cfg:
        return (f'<section><h2>Run configuration</h2><p class="note">no config.json in '
                f'<code>{html.escape(str(run_dir))}</code></p></section>')
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
                   for k, v in _identity_rows(run_dir) + _config_rows(cfg))
    return f'<section><h2>Run configuration</h2><table class="kv">{rows}</table></section>'


def metrics_section(test_dir: Path | None) -> str:
    """2. the test results: ``summary.md`` and the per-case table."""
    if test_dir is None:
        return ""
    body = []
    if (test_dir / "summary.md").is_file():
        body.append(markdown_to_html((test_dir / "summary.md").read_text(encoding="utf-8")))
    mcsv = find_metrics_csv(test_dir)
    if mcsv is not None:
        from coroseg.report.figures import read_metrics_csv

        cols, rows = read_metrics_csv(mcsv)
        body.append(f"<h3>Per case ({html.escape(mcsv.name)})</h3>" + _csv_table(cols, rows))
        if not (test_dir / "summary.md").is_file() and rows:
            body.insert(0, "<h3>Summary</h3>" + _csv_table(cols, _mean_rows(cols, rows)))
    if not body:
        body.append('<p class="note">no summary.md or per-case metrics CSV in the test folder</p>')
    return (f"<section><h2>Test results</h2><p>Test folder: <code>{html.escape(str(test_dir))}</code></p>"
            + "\n".join(body) + "</section>")


def curves_section(run_dir: Path, fig_dir: Path, notes: list[str]) -> str:
    """3. the training curves (the run's picture, else drawn from its ``metrics.csv``)."""
    curves = run_dir / "training_curves.png"
    if not curves.is_file() and (run_dir / "metrics.csv").is_file():
        from coroseg.report.figures import training_curves

        curves = _safe("training curves", notes, training_curves, run_dir / "metrics.csv",
                       fig_dir / "training_curves.png")
    if curves is None or not Path(curves).is_file():
        return ""
    return (f"<section><h2>Training</h2><figure>{_img(Path(curves), 'training curves')}"
            "<figcaption>training loss and validation metrics per epoch</figcaption></figure></section>")


def cases_section(cases: Sequence[CaseFiles], fig_dir: Path, notes: list[str], *, max_cases: int, max_3d: int) -> str:
    """4. per case: an overlay figure (first ``max_cases``) and a rotating 3D view (first ``max_3d``)."""
    if not cases:
        return ""
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
    return ("<section><h2>Cases</h2>" + "\n".join(blocks) + "</section>") if blocks else ""


def crops_section(run_dir: Path, test_dir: Path | None, fig_dir: Path, cases: Sequence[CaseFiles], cfg: dict,
                  notes: list[str], *, draw: bool) -> str:
    """5. crop-vs-grid pictures: any found on disk, else (``draw``) drawn for the first case."""
    found: list[Path] = []
    for d in dict.fromkeys([run_dir, test_dir, run_dir / "figures", fig_dir]):
        if d is not None and Path(d).is_dir():
            found += [p for p in sorted(Path(d).iterdir())
                      if "crops" in p.name.lower() and p.suffix.lower() in (".png", ".gif") and p.is_file()]
    if not found and draw and cases and cases[0].image and cases[0].label:
        found = _safe("crop-vs-grid figures", notes, _crop_figures, cases[0], cfg, fig_dir, notes) or []
    if not found:
        return ""
    imgs = "".join(f"<figure>{_img(p, p.stem)}<figcaption>{html.escape(p.name)}</figcaption></figure>"
                   for p in dict.fromkeys(found))
    return "<section><h2>Centerline crops vs a fixed grid</h2>" + imgs + "</section>"


def notes_section(notes: list[str]) -> str:
    """What was left out and why (last, so every section's notes are in)."""
    if not notes:
        return ""
    return ("<section><h2>Notes</h2><ul>" + "".join(f"<li class=\"note\">{html.escape(n)}</li>" for n in notes)
            + "</ul></section>")


__all__ = ["read_run_config", "config_section", "metrics_section", "curves_section", "cases_section",
           "crops_section", "notes_section", "find_metrics_csv"]

"""The per-case parts of ``report.html``: the case table with links, the case figures, the crops.

Every figure names the centerline its prediction was made with (``CaseFiles.prior``: ``auto``,
``oracle`` or ``none``), in the picture and in its caption: an ORACLE result (the reference
centerline as prior) is an upper bound, and a reader must never take it for what a new scan gets.
Volumes are shown LPS-oriented (:func:`coroseg.io.volume.orient_lps`, flips and permutations
only), so every overlay reads as a radiologist expects whatever the file's storage order.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from coroseg.report.sections import _fmt_value, _safe, embed_image

if TYPE_CHECKING:
    from coroseg.report.html import CaseFiles

__all__ = ["case_arrays", "case_table_section", "cases_section", "crops_section"]

#: metric columns of the case table: (metrics.csv column names tried in order, header)
TABLE_METRICS = ((("dice",), "Dice"), (("hd95_mm", "hd95"), "HD95 (mm)"), (("cldice",), "clDice"))
MODE_NAMES = {"auto": "auto", "oracle": "ORACLE", "none": "no prior", "": "?"}
#: a case's figure files (``<case_id>_<name>`` in the figures folder), linked from the case table
FIGURE_FILES = ("overlay.png", "radius.png", "3d.gif", "3d.png", "crops_vs_grid.png", "crops_vs_grid.gif")


def case_arrays(case: CaseFiles):
    """Image (or None), pred, label (or None) as arrays on one LPS-oriented grid, its spacing and the grid.

    pred and label are resampled onto the image's grid when theirs differs (nearest neighbour).
    """
    from coroseg.io.volume import grid_mismatch, orient_lps, read_volume, resample_to_grid

    pred = read_volume(case.pred, is_label=True)
    ref = read_volume(case.label, is_label=True) if case.label else None
    img = read_volume(case.image) if case.image else None
    base = img if img is not None else pred
    if pred is not base and grid_mismatch(pred, base):
        pred = resample_to_grid(pred, base)
    if ref is not None and grid_mismatch(ref, base):
        ref = resample_to_grid(ref, base)
    base = orient_lps(base)
    pred, ref, img = (None if v is None else orient_lps(v) for v in (pred, ref, img))
    return (None if img is None else img.array, pred.array > 0, None if ref is None else ref.array > 0,
            base.spacing, base)


def _link(path: Path | None, out_dir: Path, text: str) -> str:
    """A relative link from the report's folder (works when the folders move together), or a dash."""
    if path is None or not Path(path).exists():
        return "–"
    rel = Path(os.path.relpath(Path(path).resolve(), out_dir.resolve())).as_posix()
    return f'<a href="{html.escape(rel)}">{html.escape(text)}</a>'


def _metric(rows: Sequence[dict], case_id: str, mode: str, names: tuple[str, ...]) -> str:
    for r in rows:
        if r.get("case_id") == case_id and (r.get("centerline") or "") == mode:
            for n in names:
                if n in r:
                    return _fmt_value(r[n])
    return "–"


def case_table_section(cases: Sequence[CaseFiles], rows: Sequence[dict], out_dir: Path, fig_dir: Path) -> str:
    """One row per case: its scores per centerline mode and links to its files and figures.

    ``rows`` are the metrics CSV rows (``case_id``, ``centerline``, metrics); links are relative
    to ``out_dir`` (the report's folder).
    """
    if not cases:
        return ""
    modes = [m for m in ("none", "auto", "oracle") if any(r.get("centerline") == m for r in rows)] or [""]
    head = ["case"] + [f"{h} ({MODE_NAMES[m]})" for _, h in TABLE_METRICS for m in modes if m]
    head += ["prediction", "ORACLE prediction", "centerline", "image", "ground truth", "figures"]
    body = []
    for c in cases:
        cells = [html.escape(c.case_id)]
        cells += [_metric(rows, c.case_id, m, names) for names, _ in TABLE_METRICS for m in modes if m]
        cells.append(_link(c.pred, out_dir, f"{c.pred.name} ({MODE_NAMES.get(c.prior, c.prior)})"))
        cells.append(_link(c.oracle_pred, out_dir, c.oracle_pred.name if c.oracle_pred else ""))
        lines = [_link(p, out_dir, f"{p.name} ({what})") for p, what in c.centerlines()]
        cells.append("<br>".join(lines) or "–")
        cells.append(_link(c.image, out_dir, "image"))
        cells.append(_link(c.label, out_dir, "label"))
        figs = [_link(fig_dir / f"{c.case_id}_{f}", out_dir, f) for f in FIGURE_FILES]
        cells.append(" ".join(f for f in figs if f != "–") or "–")
        body.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    ths = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return ("<section><h2>Cases</h2><p>Scores per case and centerline (auto: the run's own locator, what a new "
            "scan gets; ORACLE: the reference centerline, an upper bound). Links are relative to this page.</p>"
            f'<div class="scroll"><table><thead><tr>{ths}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
            "</section>")


def _overlay_cell(case, image, pred, ref, base, fig_dir: Path, notes: list[str]) -> str:
    from coroseg.report.figures import overlay_figure, prior_label

    p = _safe(f"{case.case_id} overlay", notes, overlay_figure, image, pred, ref,
              fig_dir / f"{case.case_id}_overlay.png", spacing=base.spacing, direction=base.direction,
              prior=case.prior, title=case.case_id)
    if p is None:
        return ""
    return (f'<figure class="ov">{embed_image(p, case.case_id + " overlay")}<figcaption>Prediction with the '
            f"<strong>{prior_label(case.prior)}</strong> (amber) and ground truth (cyan): axial slices through the "
            "vessel-richest levels, a coronal slice and a 20 mm axial MIP slab, each cropped to the vessels; letters "
            "give the patient's sides (R/L, A/P, S/I), the ruler is in mm.</figcaption></figure>")


def _render_cell(case, pred, ref, spacing, fig_dir: Path, notes: list[str], *, still: bool) -> str:
    from coroseg.report.figures import prior_label
    from coroseg.report.render3d import render3d_gif, render3d_png

    label = {"auto": "auto centerline", "oracle": "ORACLE centerline"}.get(case.prior, prior_label(case.prior))
    title = f"{case.case_id}, {label}"
    g = _safe(f"{case.case_id} 3D view", notes, render3d_gif, pred, ref, fig_dir / f"{case.case_id}_3d.gif",
              spacing=spacing, title=title)
    if still:
        _safe(f"{case.case_id} 3D still", notes, render3d_png, pred, ref, fig_dir / f"{case.case_id}_3d.png",
              spacing=spacing, title=title)
    if g is None:
        return ""
    legend = ("gold = true positive, red = false positive, blue = false negative" if ref is not None
              else "prediction (no ground truth)")
    return (f'<figure class="r3d">{embed_image(g, case.case_id + " 3D")}<figcaption>3D, prediction with the '
            f"<strong>{prior_label(case.prior)}</strong>, turning about the superior axis (0°: seen from the front): "
            f"{legend}</figcaption></figure>")


def _profile_cell(case, pred, ref, base, fig_dir: Path, notes: list[str]) -> str:
    from coroseg.eval.radius import branch_profiles
    from coroseg.report.figures import prior_label, radius_profile_figure

    def draw():
        from coroseg.report.crops import reference_centerline

        graph = reference_centerline(case)[0] if case.centerline is not None else None
        profiles = branch_profiles(pred, ref, base, graph=graph)
        return radius_profile_figure(profiles, fig_dir / f"{case.case_id}_radius.png", prior=case.prior)

    p = _safe(f"{case.case_id} radius profile", notes, draw)
    if p is None:
        return ""
    src = f"the reference centerline file {case.centerline.name}" if case.centerline else \
        "the skeleton of the ground truth"
    return (f'<figure class="rp">{embed_image(p, case.case_id + " radius profile")}<figcaption>Radius along the '
            f"main branches (the longest ostium-to-end paths of {src}): the ground truth's and the prediction's "
            f"(<strong>{prior_label(case.prior)}</strong>) distance from the centerline to the mask's wall; 0 where "
            "the prediction misses the vessel.</figcaption></figure>")


def cases_section(cases: Sequence[CaseFiles], fig_dir: Path, notes: list[str], *, max_cases: int,
                  max_3d: int) -> str:
    """Per case: overlay and radius profile (first ``max_cases``), a rotating 3D view (first ``max_3d``)."""
    blocks = []
    for n, case in enumerate(cases[: max(max_cases, max_3d)]):
        arrays = _safe(f"{case.case_id}: reading volumes", notes, case_arrays, case)
        if arrays is None:
            continue
        image, pred, ref, spacing, base = arrays
        top, row = "", []
        if n < max_cases and image is not None:
            top = _overlay_cell(case, image, pred, ref, base, fig_dir, notes)
        elif image is None:
            notes.append(f"{case.case_id}: no image found (pass --data) — overlay skipped")
        if n < max_3d:
            row.append(_render_cell(case, pred, ref, spacing, fig_dir, notes, still=n == 0))
        if n < max_cases and ref is not None:
            row.append(_profile_cell(case, pred, ref, base, fig_dir, notes))
        if top or any(row):
            blocks.append(f"<h3>{html.escape(case.case_id)}</h3>{top}<div class=\"case\">{''.join(row)}</div>")
    return ("<section><h2>Case figures</h2>" + "\n".join(blocks) + "</section>") if blocks else ""


def crops_section(run_dir: Path, fig_dir: Path, cases: Sequence[CaseFiles], notes: list[str], *, draw: bool) -> str:
    """Crop-vs-grid still and slice-scroll GIF for the first case with an image and a label."""
    from coroseg.report.crops import crop_figures, crops_caption

    case = next((c for c in cases if c.image is not None and c.label is not None), None)
    if not draw or case is None:
        return ""
    made = _safe("crop-vs-grid figures", notes, crop_figures, case, run_dir, fig_dir)
    if made is None:
        return ""
    paths, plan = made
    caption = html.escape(crops_caption(plan))
    figs = "".join(f"<figure>{embed_image(p, p.stem)}</figure>" for p in paths)
    return (f"<section><h2>Centerline crops vs a fixed grid ({html.escape(case.case_id)})</h2>{figs}"
            f"<p class=\"caption\">{caption}</p></section>")

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

import datetime
import html
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from coroseg import __version__
from coroseg.data.layouts import natural_key
from coroseg.errors import InputError
from coroseg.io.atomic import write_text
from coroseg.io.volume import strip_extension, volume_extension
from coroseg.report import sections as S
from coroseg.report.markdown import markdown_to_html
from coroseg.report.sections import _case_arrays, find_metrics_csv  # noqa: F401 (re-exported)

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
    cfg = S.read_run_config(run_dir)
    if data_dir is None:
        root = (cfg.get("data") or {}).get("root") if isinstance(cfg.get("data"), dict) else None
        if root and Path(root).is_dir():
            data_dir = root
    if cases is not None:
        cases = [CaseFiles(str(c[0]), None if c[1] is None else Path(c[1]), Path(c[2]),
                           None if c[3] is None else Path(c[3])) for c in cases]
    else:
        cases = find_case_triplets(test_dir, data_dir) if test_dir is not None else []
    notes: list[str] = []
    parts = [S.config_section(cfg, run_dir), S.metrics_section(test_dir), S.curves_section(run_dir, fig_dir, notes),
             S.cases_section(cases, fig_dir, notes, max_cases=max_cases, max_3d=max_3d),
             S.crops_section(run_dir, test_dir, fig_dir, cases, cfg, notes, draw=crop_figures),
             S.notes_section(notes)]
    title = f"coroseg report — {cfg.get('model', run_dir.name)}"
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
            f"<header><h1>{html.escape(title)}</h1><div class=\"sub\">run <code>{html.escape(str(run_dir))}</code>"
            f" · generated {when} · coroseg {__version__}</div></header>\n<main>\n" + "\n".join(p for p in parts if p)
            + "\n</main><footer>self-contained report written by <code>coroseg report</code></footer></body></html>\n")
    write_text(out_path, page)
    return out_path

"""``coroseg report``: one self-contained HTML page about a run and its test results.

The page (``report.html``) embeds every picture as a ``data:`` URI (WebP, a few tens of KB a
figure: :func:`coroseg.report.sections.embed_image`) and carries its CSS inline, so it can be
mailed or attached to an issue as a single file and opened offline. The figures are also kept
as PNG/GIF files in ``<report folder>/figures/`` (for a README or slides), and the case table
links each case's files relative to the page. It is laid out to be read in a window 1400 px
wide: figures are at most :data:`coroseg.report.annotate.REPORT_WIDTH_PX` wide and shown unscaled.
It shows, when available:

0. a banner when the training or test data are ``coroseg synth`` phantoms (their ``manifest.json``);
1. the run's configuration (``run_dir/config.json``) and the model's identity;
2. training: epochs trained per phase, best validation Dice, why each phase stopped
   (``config.json`` ``train.stopped``), and the curves;
3. the test results: ``<test_dir>/summary.md`` (rendered with markdown-it-py) and every row of
   ``<test_dir>/metrics.csv`` (or ``per_case.csv``; any CSV with a ``case_id`` column);
4. the case table: scores per centerline mode and relative links to each case's predictions
   (auto and ORACLE), centerline files, image, label and figures;
5. per case (see :func:`find_case_triplets`): an overlay figure (axial + coronal + slab MIP with
   orientation letters and a mm ruler) and a radius profile along the main branches for the
   first ``max_cases`` cases, a rotating 3D view coloured TP/FP/FN for the first ``max_3d``;
   every figure names the centerline its prediction used (automatic or ORACLE);
6. crop-vs-grid pictures for the first case: the crops the run's crop model places on its
   automatic centerline (:mod:`coroseg.report.crops`), against a fixed grid.

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
from coroseg.report import cases as C
from coroseg.report import sections as S
from coroseg.report.cases import case_arrays as _case_arrays  # noqa: F401 (re-exported)
from coroseg.report.sections import find_metrics_csv, markdown_to_html

log = logging.getLogger(__name__)

__all__ = ["CaseFiles", "find_case_triplets", "prediction_files", "markdown_to_html", "write_report",
           "find_metrics_csv"]


class CaseFiles(NamedTuple):
    """One test case's files: ``(case_id, image, pred, label)``, then what is known beside them.

    ``image``/``label`` may be None. ``prior`` is the centerline ``pred`` was made with
    (``"auto"``, ``"oracle"``, ``"none"``; ``""``: not recorded); ``oracle_pred`` the same case's
    ORACLE prediction when there is one; ``centerline`` the dataset's reference centerline file;
    ``pred_centerline`` the prediction's own centerline file (``coroseg predict`` writes one).
    """

    case_id: str
    image: Path | None
    pred: Path
    label: Path | None
    prior: str = ""
    oracle_pred: Path | None = None
    centerline: Path | None = None
    pred_centerline: Path | None = None

    def centerlines(self) -> list[tuple[Path, str]]:
        """The case's centerline files, each with what it is."""
        out = [] if self.pred_centerline is None else [(self.pred_centerline, "of the prediction")]
        return out + ([] if self.centerline is None else [(self.centerline, "reference")])


#: sub-folders of ``pred/`` named by centerline mode; ``coroseg test`` itself writes ``pred/`` (auto, or
#: none for grid models: read from metrics.csv's ``centerline`` column) and ``pred-oracle/``
VARIANTS = {"auto": "auto", "oracle": "oracle", "gt": "oracle", "none": "none"}
#: which of a case's predictions its figures show: what a new scan gets first, ORACLE last
PRIOR_ORDER = ("auto", "none", "", "oracle")


def _segs(folder: Path) -> list[Path]:
    """Segmentation files of a folder: ``<id>_seg.<ext>``, else every volume but probability maps."""
    vols = [p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".") and volume_extension(p)]
    segs = [p for p in vols if strip_extension(p).endswith("_seg")]
    return segs or [p for p in vols if not strip_extension(p).endswith(("_prob", "_attention", "_image"))]


def _top_level_prior(test_dir: Path) -> dict[str, str]:
    """``{case_id: mode}`` for predictions directly in ``pred/``: the one non-ORACLE mode metrics.csv gives."""
    mcsv = find_metrics_csv(test_dir)
    if mcsv is None:
        return {}
    from coroseg.report.figures import read_metrics_csv

    modes: dict[str, set] = {}
    for r in read_metrics_csv(mcsv)[1]:
        modes.setdefault(r.get("case_id", ""), set()).add(r.get("centerline") or "")
    return {cid: next(iter(m - {"oracle"})) for cid, m in modes.items() if len(m - {"oracle"}) == 1}


def prediction_files(test_dir: str | Path) -> dict[str, dict[str, Path]]:
    """``{case_id: {prior: segmentation file}}`` of a test folder (see :func:`find_case_triplets`)."""
    from coroseg.eval.evaluate import case_id_from_path

    test_dir = Path(test_dir)
    pred_dir = test_dir / "pred" if (test_dir / "pred").is_dir() else test_dir
    folders: list[tuple[Path, str | None]] = [(pred_dir, None)]
    folders += [(p, VARIANTS.get(p.name, p.name)) for p in sorted(pred_dir.iterdir())
                if p.is_dir() and not p.name.startswith(".") and p.name != "pred-oracle"]
    if (test_dir / "pred-oracle").is_dir():
        folders.append((test_dir / "pred-oracle", "oracle"))
    top = _top_level_prior(test_dir)
    found: dict[str, dict[str, Path]] = {}
    for folder, prior in folders:
        for p in _segs(folder):
            cid = case_id_from_path(p)
            found.setdefault(cid, {}).setdefault(top.get(cid, "") if prior is None else prior, p)
    return found


def _own_centerline(pred: Path, case_id: str) -> Path | None:
    """``<id>_centerline.vtp`` (or ``.gml``, ``.mrk.json``) beside a prediction, as ``coroseg predict`` writes."""
    for ext in (".vtp", ".gml", ".mrk.json"):
        p = pred.parent / f"{case_id}_centerline{ext}"
        if p.is_file():
            return p
    return None


def find_case_triplets(test_dir: str | Path, data_dir: str | Path | None = None) -> list[CaseFiles]:
    """Pair each prediction of a test folder with its image, ground truth and centerline.

    Predictions are the volume files in ``<test_dir>/pred/`` (or ``test_dir`` itself when it
    has no ``pred/``), in its direct sub-folders named by centerline mode (``auto/``,
    ``oracle/``, ``gt/``, ``none/``) and in ``<test_dir>/pred-oracle/`` (what ``coroseg test
    --centerline gt`` writes). The mode of ``pred/`` itself comes from the test's metrics CSV
    (its ``centerline`` column). Each case's figures use one prediction, in the order of
    :data:`PRIOR_ORDER` (automatic first, ORACLE only when there is nothing else); its ORACLE
    prediction, when there is another, is kept as ``oracle_pred``. Within a folder, files named
    ``<id>_seg.<ext>`` are used when present, else every volume file except
    ``*_prob``/``*_attention``/``*_image``; the case id is the name minus extension and role
    suffix (:func:`coroseg.eval.evaluate.case_id_from_path`).

    Images, labels and reference centerlines come from ``data_dir`` through
    :func:`coroseg.data.layouts.discover_cases` (any supported layout), matched by case id;
    without ``data_dir``, or for a case the dataset lacks, they are ``None``.

    Parameters
    ----------
    test_dir : str or Path
        Output folder of ``coroseg test`` (or a folder of predictions).
    data_dir : str or Path, optional
        Dataset root.

    Returns
    -------
    list of CaseFiles, sorted by case id (natural order).

    Raises
    ------
    InputError
        When ``test_dir`` does not exist, or ``data_dir`` is given but holds no dataset.
    """
    test_dir = Path(test_dir)
    if not test_dir.is_dir():
        raise InputError("test folder not found" if not test_dir.exists() else "not a folder", test_dir)
    preds = prediction_files(test_dir)
    cases = {}
    if data_dir is not None:
        from coroseg.data.layouts import discover_cases

        _, found = discover_cases(data_dir)
        cases = {c.case_id: c for c in found}
    out = []
    for cid in sorted(preds, key=natural_key):
        by_prior = preds[cid]
        prior = min(by_prior, key=lambda m: PRIOR_ORDER.index(m) if m in PRIOR_ORDER else len(PRIOR_ORDER))
        oracle = by_prior.get("oracle") if prior != "oracle" else None
        c = cases.get(cid)
        out.append(CaseFiles(cid, c.image if c else None, by_prior[prior], c.label if c else None, prior, oracle,
                             c.centerline if c else None, _own_centerline(by_prior[prior], cid)))
    return out


# ---------------------------------------------------------------------------------------------
#: laid out for a 1400 px window: a section's content is 1400 - 15 (scroll bar) - 2 x 24 - 2 x 21 = 1295 px,
#: at least REPORT_WIDTH_PX, so figures are shown at their own size
_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#14202e;color:#fff;padding:22px 32px}
header h1{margin:0;font-size:22px;font-weight:600}
header .sub{opacity:.8;font-size:13px;margin-top:4px}
header code{background:#26364a;color:#fff}
main{max-width:1400px;margin:0 auto;padding:8px 24px 40px}
section{background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:14px 20px;margin:18px 0}
section.synthetic{background:#fff6e0;border-color:#e8b04a}
h2{font-size:18px;margin:4px 0 12px;color:#14202e}
h3,h4,h5{font-size:15px;margin:14px 0 6px}
p,li{font-size:15px;line-height:1.45}
table{border-collapse:collapse;font-size:14px;margin:6px 0}
th,td{padding:4px 10px;border-bottom:1px solid #e6e8ee;text-align:right;white-space:nowrap}
th{background:#eef1f5;font-weight:600}
td:first-child,th:first-child{text-align:left}
table.kv td,table.kv th{text-align:left;white-space:normal}
table.kv td:first-child{color:#56607a}
tr:hover td{background:#f7f9fc}
.scroll{overflow-x:auto}
img{max-width:100%;height:auto;border-radius:4px}
figure{margin:10px 0 18px}
figcaption,.caption{font-size:14px;color:#3d4659;margin-top:4px;max-width:1280px;line-height:1.4}
.case{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
.case .r3d{flex:0 0 320px}
.case .rp{flex:1 1 600px}
details summary{cursor:pointer;font-size:14px;margin:8px 0}
.note{color:#8a5a00;font-size:14px}
code{background:#eef1f5;padding:1px 4px;border-radius:3px}
footer{color:#8790a3;font-size:13px;text-align:center;padding:16px}
"""


def _read_cases(cases: Sequence[tuple]) -> list[CaseFiles]:
    """Explicit cases, ``(case_id, image, pred, label[, prior])`` tuples, as :class:`CaseFiles`."""
    path = lambda v: None if v is None else Path(v)  # noqa: E731
    return [CaseFiles(str(c[0]), path(c[1]), Path(c[2]), path(c[3]), str(c[4]) if len(c) > 4 else "")
            for c in cases]


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
    cases : sequence of (case_id, image, pred, label[, prior]) tuples, optional
        The cases to draw, instead of :func:`find_case_triplets` ``(test_dir, data_dir)``;
        ``image`` and ``label`` may be None (no overlay / prediction-only 3D view); ``prior``:
        ``"auto"``, ``"oracle"`` or ``"none"``, the centerline the prediction used.
    max_cases : int
        Cases with an overlay figure and a radius profile (the first ones, by case id).
    max_3d : int
        Cases with a rotating 3D view.
    crop_figures : bool
        Draw the crop-vs-grid figures for the first case with an image and a label.

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
        cases = _read_cases(cases)
    else:
        cases = find_case_triplets(test_dir, data_dir) if test_dir is not None else []
    rows = []
    mcsv = None if test_dir is None else find_metrics_csv(test_dir)
    if mcsv is not None:
        from coroseg.report.figures import read_metrics_csv

        rows = read_metrics_csv(mcsv)[1]
    notes: list[str] = []
    # figures first: the case table links the files they write
    figures = C.cases_section(cases, fig_dir, notes, max_cases=max_cases, max_3d=max_3d)
    crops = C.crops_section(run_dir, fig_dir, cases, notes, draw=crop_figures)
    parts = [S.synthetic_notice(cfg, None if data_dir is None else Path(data_dir)), S.config_section(cfg, run_dir),
             S.training_section(cfg, run_dir, fig_dir, notes), S.metrics_section(test_dir),
             C.case_table_section(cases, rows, out_path.parent, fig_dir), figures, crops, S.notes_section(notes)]
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

"""Evaluate a folder of predicted masks against a folder of ground-truth masks.

Files are paired by **case id**: the file name without its volume extension and without a
trailing role suffix such as ``_seg``, ``_pred``, ``_label``, ``.label``, ``.img`` (so
``Normal_1.nrrd`` / ``Normal_1_pred.nii.gz`` and ImageCAS ``12.label.nii.gz`` / nnU-Net
``12.nii.gz`` pair up; ``predict``'s ``<id>_prob`` maps are skipped). Every prediction must have a ground truth (else
:class:`~coroseg.errors.InputError`). A ground truth without a prediction is a **failure**, not
a case left out: it is scored as an all-zero prediction (Dice 0, HD95 inf, ...), flagged in the
``missing_prediction`` column and counted in the summary, so a method that skips its hard cases
cannot look better for it (``skip_missing=True`` / ``--skip-missing`` scores only the cases that
have a prediction, e.g. a job array still running, and says so). Each pair must share the grid
(shape, spacing, origin, direction), else :class:`~coroseg.errors.GeometryError` naming the
prediction, expected vs found.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from coroseg.data.layouts import natural_key
from coroseg.errors import GeometryError, InputError
from coroseg.eval.metrics import METRICS, all_metrics
from coroseg.io.atomic import write_text
from coroseg.io.volume import grid_mismatch, read_volume, strip_extension, volume_extension

log = logging.getLogger(__name__)

__all__ = ["case_id_from_path", "pair_cases", "binary_label", "evaluate_folders", "missing_metrics",
           "missing_note", "summarize", "summary_table", "comparison_table", "write_csv", "ROLE_SUFFIXES"]

#: trailing role markers removed (case-insensitively, repeatedly) to get a case id
ROLE_SUFFIXES = ("_seg", "_segmentation", "_pred", "_prediction", "_label", "_labels", "_mask",
                 "_gt", ".label", ".seg", ".img")

#: volume files in a prediction folder that are not masks (skipped when pairing)
NOT_MASKS = ("_prob", "_probability")

#: how each metric is shown in tables
_LABELS = {"dice": "Dice", "precision": "Precision", "recall": "Recall",
           "voxel_accuracy": "Voxel accuracy", "hd95_mm": "HD95 (mm)", "assd_mm": "ASSD (mm)",
           "hd95_asoca_vox": "HD95 ASOCA (vox)", "cldice": "clDice", "betti0_error": "Betti-0 error"}


def case_id_from_path(path: str | Path) -> str:
    """Case id of a volume file: name minus extension minus role suffixes (see module doc).

    >>> case_id_from_path("data/Normal_1_pred.nii.gz")
    'Normal_1'
    >>> case_id_from_path("12.label.nii.gz")
    '12'
    """
    name = strip_extension(path)
    changed = True
    while changed:
        changed = False
        for suf in ROLE_SUFFIXES:
            if len(name) > len(suf) and name.lower().endswith(suf):
                name, changed = name[: -len(suf)], True
    return name


def _index(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise InputError(f"{what} folder not found" if not folder.exists() else "not a folder", folder)
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or volume_extension(p) is None:
            continue
        if strip_extension(p).lower().endswith(NOT_MASKS):  # predict --save-prob writes these beside the masks
            continue
        cid = case_id_from_path(p)
        if cid in found:
            raise InputError(f"two {what} files map to case id {cid!r}: {found[cid].name} and {p.name}",
                             folder)
        found[cid] = p
    if not found:
        raise InputError(f"no {what} volumes (.nrrd, .nii.gz, .mha, ...) in folder", folder)
    return found


def pair_cases(pred_dir: str | Path, gt_dir: str | Path) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """Pair prediction and ground-truth files by case id.

    Returns
    -------
    pairs : list of (case_id, pred_path, gt_path)
        Sorted by case id (natural order).
    missing : list of str
        Case ids with a ground truth but no prediction (scored as failures by :func:`evaluate_folders`).

    Raises
    ------
    InputError
        A folder is missing or empty, two files share a case id, or a prediction has no
        ground truth.
    """
    preds = _index(Path(pred_dir), "prediction")
    gts = _index(Path(gt_dir), "ground-truth")
    orphans = [preds[c].name for c in preds if c not in gts]
    if orphans:
        shown = ", ".join(orphans[:5]) + (f" and {len(orphans) - 5} more" if len(orphans) > 5 else "")
        raise InputError(f"no ground truth for {len(orphans)} prediction(s): {shown}; expected a file "
                         f"with the same case id in {gt_dir}", pred_dir)
    ids = sorted(preds, key=natural_key)
    missing = sorted((c for c in gts if c not in preds), key=natural_key)
    return [(c, preds[c], gts[c]) for c in ids], missing



def binary_label(array: np.ndarray, path: Path, *, label_value: int | None = None) -> np.ndarray:
    """Foreground mask of a label array.

    With ``label_value=None`` the array must hold only {0, 1} (else
    :class:`~coroseg.errors.InputError` listing the values found); otherwise voxels equal to
    ``label_value`` are foreground and everything else background.
    """
    if label_value is not None:
        return array == label_value
    if array.dtype == np.bool_:
        return array
    if array.size and (array.min() < 0 or array.max() > 1):
        vals = np.unique(array)
        shown = ", ".join(str(v) for v in vals[:8]) + (", ..." if len(vals) > 8 else "")
        raise InputError(f"label values {{{shown}}} found; expected {{0, 1}} "
                         f"(pass label_value / --label-value to pick one label)", path)
    return array.astype(bool)


def missing_metrics(ref: np.ndarray, *, spacing) -> dict[str, float]:
    """The scores of a case without a prediction: those of an all-zero prediction against ``ref``.

    Against a non-empty reference that is Dice, precision, recall and clDice 0 and every distance
    inf (:func:`~coroseg.eval.metrics.all_metrics`). Against an empty reference an empty
    prediction would score a perfect 1; a missing file has earned nothing, so the overlap scores
    are 0 and the distances inf there too.
    """
    m = all_metrics(np.zeros(ref.shape, bool), ref, spacing=spacing)
    if not ref.any():
        m.update({k: 0.0 for k in ("dice", "precision", "recall", "cldice")})
        m.update({k: math.inf for k in ("hd95_mm", "assd_mm", "hd95_asoca_vox")})
    return m


def missing_note(rows: Iterable[dict], skipped: Sequence[str] = ()) -> str:
    """The summary's line on cases without a prediction (empty when there are none)."""
    failed = [r["case_id"] for r in rows if r.get("missing_prediction")]
    if failed:
        return (f"{len(failed)} case(s) had no prediction and are scored as failures (Dice 0): "
                f"{', '.join(failed)}\n")
    if skipped:
        return (f"{len(skipped)} ground-truth case(s) had no prediction and were skipped (--skip-missing; "
                f"not scored): {', '.join(skipped)}\n")
    return ""


def evaluate_folders(pred_dir: str | Path, gt_dir: str | Path, *, out: str | Path | None = None,
                     label_value: int | None = None, metrics: Sequence[str] = METRICS,
                     progress: bool = True, skip_missing: bool = False,
                     ) -> tuple[list[dict], dict[str, dict[str, float]]]:
    """Score every prediction in ``pred_dir`` against its ground truth in ``gt_dir``.

    Parameters
    ----------
    pred_dir, gt_dir : path
        Folders of label volumes (NRRD, NIfTI, MHA), paired by case id (:func:`pair_cases`).
    out : path, optional
        Where to write results. A ``*.csv`` path gets the per-case table, and the summary
        goes next to it as ``*.md``; any other path is a folder receiving ``per_case.csv``
        and ``summary.md``. Written atomically.
    label_value : int, optional
        Foreground label value. ``None`` requires binary {0, 1} masks.
    metrics : sequence of str
        Metric keys (of :func:`coroseg.eval.metrics.all_metrics`) to summarise.
    progress : bool
        Show a tqdm progress bar (on a terminal).
    skip_missing : bool
        Leave ground truths without a prediction out (listed, not scored) instead of scoring
        them as failures: for a partial result, e.g. a job array still running.

    Returns
    -------
    rows : list of dict
        One per case, in case-id order: ``case_id, pred, gt, missing_prediction`` and every metric
        of ``all_metrics``; a case without a prediction has ``pred`` ``""`` and the scores of
        :func:`missing_metrics` (Dice 0).
    summary : dict
        ``{metric: {"mean", "std", "median", "n", "n_nonfinite"}}`` (see :func:`summarize`) over
        every row, failures included, plus ``"_missing": {"n": ..., "scored": 1.0 or 0.0}`` when
        ground truths lack a prediction.
    """
    from tqdm import tqdm

    pairs, missing = pair_cases(pred_dir, gt_dir)
    if missing:
        what = "are skipped (--skip-missing; not scored)" if skip_missing else "are scored as failures (Dice 0)"
        log.warning("%d ground-truth case(s) have no prediction and %s: %s", len(missing), what,
                    ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
    gts = _index(Path(gt_dir), "ground-truth") if missing and not skip_missing else {}
    todo = [*pairs, *((c, None, gts[c]) for c in missing if c in gts)]
    todo.sort(key=lambda t: natural_key(t[0]))
    rows = [_score(cid, p_path, g_path, label_value) for cid, p_path, g_path in
            tqdm(todo, desc="evaluate", unit="case", disable=None if progress else True)]
    summary = summarize(rows, metrics)
    if missing:
        summary["_missing"] = {"n": float(len(missing)), "scored": 0.0 if skip_missing else 1.0}
    if out is not None:
        out = Path(out)
        csv_path, md_path = ((out, out.with_suffix(".md")) if out.suffix.lower() == ".csv"
                             else (out / "per_case.csv", out / "summary.md"))
        write_csv(csv_path, rows)
        note = missing_note(rows, missing if skip_missing else ())
        write_text(md_path, summary_table(rows, metrics) + (f"\n{note}" if note else ""))
    return rows, summary


def _score(cid: str, p_path: Path | None, g_path: Path, label_value: int | None) -> dict:
    """One case's row; ``p_path`` None: no prediction, scored as a failure (:func:`missing_metrics`)."""
    gt = read_volume(g_path, is_label=True)
    ref = binary_label(gt.array, g_path, label_value=label_value)
    if p_path is None:
        return {"case_id": cid, "pred": "", "gt": g_path.name, "missing_prediction": True,
                **missing_metrics(ref, spacing=gt.spacing)}
    pred = read_volume(p_path, is_label=True)
    problem = grid_mismatch(gt, pred)
    if problem:
        raise GeometryError(f"grid does not match ground truth {g_path.name}: {problem}", p_path)
    m = all_metrics(binary_label(pred.array, p_path, label_value=label_value), ref, spacing=gt.spacing)
    log.debug("%s: dice %.4f hd95 %.2f mm", cid, m["dice"], m["hd95_mm"])
    return {"case_id": cid, "pred": p_path.name, "gt": g_path.name, "missing_prediction": False, **m}


def summarize(rows: Iterable[dict], metrics: Sequence[str] = METRICS) -> dict[str, dict[str, float]]:
    """Mean, standard deviation (ddof=0) and median of each metric over rows.

    Non-finite values (``inf`` distances from an empty mask, ``nan``) are left out of the
    statistics and counted in ``n_nonfinite``; ``n`` counts the finite values.
    """
    rows = list(rows)
    out: dict[str, dict[str, float]] = {}
    for key in metrics:
        vals = np.array([float(r[key]) for r in rows if key in r and r[key] is not None], dtype=float)
        fin = vals[np.isfinite(vals)]
        out[key] = {
            "mean": float(fin.mean()) if fin.size else math.nan,
            "std": float(fin.std()) if fin.size else math.nan,
            "median": float(np.median(fin)) if fin.size else math.nan,
            "n": float(fin.size),
            "n_nonfinite": float(vals.size - fin.size),
        }
    return out


def _num(v: float, digits: int) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.{digits}f}"


def _digits(key: str) -> int:
    return 2 if key.endswith(("_mm", "_vox")) or key == "betti0_error" else 4


def summary_table(rows: Iterable[dict], metrics: Sequence[str] = METRICS, *, title: str | None = None) -> str:
    """Markdown table of ``mean ± std`` and median per metric over ``rows``.

    ``rows`` are dicts holding the metric keys (e.g. from :func:`evaluate_folders`). Cases with
    a non-finite value (e.g. ``inf`` HD95 for an empty prediction) are excluded from that
    metric's statistics and counted in the last column.

    Returns
    -------
    str
        ``| Metric | Mean ± std | Median | n | excluded (inf/nan) |`` and one line per metric.
    """
    summ = summarize(rows, metrics)
    lines = [f"## {title}", ""] if title else []
    lines += ["| Metric | Mean ± std | Median | n | Excluded (inf/nan) |",
              "|---|---|---|---|---|"]
    for key in metrics:
        s = summ[key]
        d = _digits(key)
        lines.append(f"| {_LABELS.get(key, key)} | {_num(s['mean'], d)} ± {_num(s['std'], d)} | "
                     f"{_num(s['median'], d)} | {int(s['n'])} | {int(s['n_nonfinite'])} |")
    return "\n".join(lines) + "\n"


def comparison_table(groups: Mapping[str, Iterable[dict]], metrics: Sequence[str] = METRICS) -> str:
    """Markdown table with one line per method: ``mean ± std`` of each metric over its rows.

    Parameters
    ----------
    groups : mapping of str to rows
        Method name -> rows holding metric keys (per case, or per seed already averaged).
    metrics : sequence of str

    Non-finite values are excluded from each cell's statistics; a cell shows ``(k inf)`` when
    ``k`` rows were excluded.
    """
    head = "| Method | " + " | ".join(_LABELS.get(m, m) for m in metrics) + " |"
    lines = [head, "|---" * (len(metrics) + 1) + "|"]
    for name, rows in groups.items():
        summ = summarize(rows, metrics)
        cells = []
        for key in metrics:
            s, d = summ[key], _digits(key)
            cell = f"{_num(s['mean'], d)} ± {_num(s['std'], d)}"
            if s["n_nonfinite"]:
                cell += f" ({int(s['n_nonfinite'])} inf)"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: str | Path, rows: Sequence[dict]) -> None:
    """Write dict rows as CSV atomically; columns are the union of keys in first-seen order."""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    write_text(path, buf.getvalue())

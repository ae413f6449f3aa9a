"""``coroseg test``: predict every case of a split with a trained run, then score it.

The centerline prior of crop models comes either from the run's own locator (``"auto"``, what
a new patient gets) or from the dataset's ground truth (``"gt"``). Ground-truth results are an
upper bound, never a deliverable, and are labelled ``oracle`` in every file and table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from coroseg.data.cache import load_centerline, read_case
from coroseg.data.layouts import Case, load_dataset
from coroseg.errors import CorosegError
from coroseg.eval.centerline_recall import KEYS as CL_KEYS
from coroseg.eval.centerline_recall import centerline_recall
from coroseg.eval.evaluate import summary_table, write_csv
from coroseg.eval.metrics import all_metrics
from coroseg.io.atomic import staged_files, write_text
from coroseg.io.volume import write_volume

log = logging.getLogger(__name__)

#: how a centerline mode is reported: the ground truth is an oracle, not a result
MODE_LABELS = {"auto": "auto", "gt": "oracle", "none": "none"}
TABLE_METRICS = ("dice", "precision", "recall", "voxel_accuracy", "hd95_mm", "cldice", "cl_recall", "betti0_error")


def split_cases(run_dir: str | Path | None, data_dir: str | Path, split: str) -> list[Case]:
    """Cases of ``split``, using the run's saved ``splits.json`` when the dataset has no folders."""
    splits_file = None if run_dir is None else Path(run_dir) / "splits.json"
    cases = load_dataset(data_dir, splits_file=splits_file if splits_file is not None and splits_file.exists()
                         else None)
    chosen = cases if split == "all" else [c for c in cases if c.split == split]
    if not chosen:
        raise CorosegError(f"no cases in split '{split}' (found splits: "
                           f"{', '.join(sorted({str(c.split) for c in cases}))})", data_dir)
    return chosen


def test_run(run_dir, data_dir: str | Path, out_dir: str | Path, *, split: str | None = None,
             centerlines: Sequence[str] = ("auto",), device: str = "auto", save_predictions: bool = True,
             progress: bool = True, tta: bool = False) -> tuple[list[dict], str]:
    """Predict and evaluate ``split`` of ``data_dir`` with the run in ``run_dir``.

    Parameters
    ----------
    run_dir : path, name or LoadedRun
        The run folder, an installed model's name, ``"builtin"``, or a run already loaded (its
        ``run_dir`` gives the saved splits).
    split : {"train", "val", "test", "all"}, optional
        Default ``"test"`` for a run folder; ``"all"`` for an installed or built-in model (a
        model package), which was trained on other data and has no split of this one.
    centerlines : sequence of {"auto", "gt", "none"}
        Prior sources to test (crop models); grid models ignore it and run once.
    tta : bool
        Test-time mirroring (:func:`coroseg.infer.predict_volume`).
    save_predictions : bool
        Write ``<out_dir>/pred[-oracle]/<id>_seg.nrrd`` (uint8, on the image's grid).

    Returns
    -------
    rows, table : list of dict, str
        One row per case and mode (``case_id``, ``centerline``, metrics, ``seconds``), and the
        markdown summary also written to ``<out_dir>/summary.md`` beside ``metrics.csv``.
    """
    from coroseg.infer.pipeline import load, resolve_device

    for m in centerlines:
        if m not in MODE_LABELS:
            raise CorosegError(f"centerline mode must be one of {', '.join(MODE_LABELS)}, not '{m}'")
    out_dir = Path(out_dir)
    dev = resolve_device(device)
    run = load(run_dir, dev)
    if not run.config.is_crop:
        centerlines = ("none",)
    if isinstance(run_dir, (str, Path)):
        from coroseg.models.store import resolve_model

        folder = resolve_model(run_dir)
    else:
        folder = getattr(run_dir, "run_dir", None)
    if split is None:
        split = "all" if folder is not None and (Path(folder) / "model.json").is_file() else "test"
    cases = split_cases(folder, data_dir, split)
    from coroseg.models.store import model_provenance

    named = model_provenance(folder)
    named = {"model_name": named["model_name"], "model_sha256": named["model_sha256"][:12]} if named else {}
    rows: list[dict] = []
    # everything is written into a hidden folder and moved into out_dir when every case is done:
    # a bad case (or Ctrl-C) leaves no predictions of the cases before it
    with staged_files(out_dir) as stage:
        bar = tqdm(total=len(cases) * len(centerlines), desc=f"test {split}", unit="case",
                   disable=None if progress else True)  # None: off when stderr is no TTY
        try:
            for case in cases:
                image, label = read_case(case)  # once per case, checked as in training
                ref = label.array > 0
                # the reference centerline: a file, or (needed anyway for an ORACLE run) the label's
                graph = _reference_centerline(case, label, needed="gt" in centerlines)
                for mode in centerlines:
                    rows.append({**_test_one(run, case, image, label, ref, mode, dev, stage, save_predictions, tta,
                                             graph), **named})
                    bar.update(1)
        finally:
            bar.close()  # before any error line, so the bar does not redraw after it
        write_csv(stage / "metrics.csv", rows)
        model = run.config.model
        if named:
            model = f"{named['model_name']} ({model}, sha256 {named['model_sha256']})"
        table = results_by_mode(rows, title=f"{model} on {split} ({len(cases)} cases)")
        write_text(stage / "summary.md", table)
    return rows, table


def _reference_centerline(case: Case, label, *, needed: bool):
    """The case's reference centerline (a file, else extracted from the label), or None.

    Without an ORACLE run it only serves centerline recall: a file that cannot be used then costs
    that metric (a warning, NaN), not the whole test."""
    if not needed and case.centerline is None:
        return None
    try:
        return load_centerline(case, label)[0]
    except CorosegError as exc:
        if needed:
            raise
        log.warning("%s: reference centerline not used, no centerline recall for this case (%s)",
                    case.case_id, exc)
        return None


def _test_one(run, case: Case, image, label, ref: np.ndarray, mode: str, dev, out_dir: Path,
              save_predictions: bool, tta: bool = False, graph=None) -> dict:
    """Predict one case with one centerline mode and score it against ``ref`` (and, when the
    reference centerline ``graph`` is known, centerline recall by vessel radius)."""
    from coroseg.infer.pipeline import predict_volume

    # the reference centerline is read against the label (ASOCA .vtp files use an image frame)
    if mode == "gt" and graph is None:
        graph = load_centerline(case, label)[0]
    prior = graph if mode == "gt" else ("auto" if mode == "auto" else "none")
    t0 = time.perf_counter()
    pred = predict_volume(run, image, centerline=prior, device=dev,
                          centerline_source="oracle" if mode == "gt" else None, extract_centerline=False,
                          keep_prob=False, tta=tta)
    seconds = time.perf_counter() - t0
    if save_predictions:
        sub = "pred" if mode != "gt" else "pred-oracle"
        write_volume(pred.seg, out_dir / sub / f"{case.case_id}_seg.nrrd")
    by_radius = centerline_recall(graph, pred.seg) if graph is not None else {k: float("nan") for k in CL_KEYS}
    scores = all_metrics(pred.seg.array > 0, ref, spacing=image.spacing)
    if not ref.any():  # nothing to find: Dice would be 1 for an empty prediction, which says nothing
        log.warning("%s: the label is empty (no vessel voxels); the case is flagged and not scored", case.label)
        scores = {k: float("nan") for k in scores}
    return {"case_id": case.case_id, "group": case.group or "", "centerline": MODE_LABELS[mode],
            "empty_reference": bool(not ref.any()), **scores, **by_radius, "seconds": round(seconds, 2),
            "crops": pred.info.get("n_crops")}


def results_by_mode(rows: list[dict], *, title: str) -> str:
    """One markdown summary table per centerline mode, oracle last and labelled as such."""
    parts = [f"# {title}", ""]
    modes = [m for m in ("none", "auto", "oracle") if any(r["centerline"] == m for r in rows)]
    for m in modes:
        sub = [r for r in rows if r["centerline"] == m]
        name = {"none": "whole volume", "auto": "automatic centerline",
                "oracle": "ORACLE: ground-truth centerline (upper bound, not a result)"}[m]
        parts.append(summary_table(sub, TABLE_METRICS, title=name))
    return "\n".join(parts)


def mean_dice(rows: list[dict], mode: str) -> float:
    vals = [r["dice"] for r in rows if r["centerline"] == mode]
    return float(np.mean(vals)) if vals else float("nan")

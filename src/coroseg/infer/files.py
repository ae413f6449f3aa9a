"""``predict``: scans on disk in, segmentation files out (what ``coroseg predict`` calls).

For each scan ``<id>`` the output folder receives, each file written atomically::

    <id>_seg.<ext>            uint8 {0, 1}, the input's own grid and geometry
    <id>_prob.<ext>           float32 vessel probability (save_prob=True)
    <id>_centerline.vtp       centerline of the segmentation (VMTK polylines, RAS like VMTK)
    <id>_centerline.gml       the same graph with node attributes (networkx GML)
    <id>_centerline.mrk.json  3D Slicer markups
    <id>_vessels.stl          surface mesh, LPS mm (mesh=True)
    summary.json              one entry per scan: timings, volume, length, branches, source
                              (entries of other scans already in the folder are kept)

``<ext>`` is the input's extension (``.nii.gz`` for a DICOM series), or what ``output_format``
(``--format``) asks for: ``seg.nrrd`` writes ``<id>_seg.seg.nrrd``, a 3D Slicer segmentation;
``dicom-seg`` (DICOM series inputs only) ``<id>_seg.dcm``, a DICOM SEG referencing the series.

A scan's files are written into a hidden folder and moved into place together
(:func:`coroseg.io.atomic.staged_files`); its entry is then added to ``summary.json`` under a
lock (re-read first), so runs writing into one folder never drop each other's cases. **A scan is
complete when summary.json lists it without an error and every file of its entry exists**
(:func:`complete_cases`). Files of a folder that are outputs listed in its own summary.json
are never taken as inputs (``--input D --output D`` twice does not segment its own masks).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from coroseg import __version__
from coroseg.errors import CorosegError, InputError
from coroseg.infer.outputs import (
    check_output_format,
    geometry_dict,
    mask_stats,
    mesh_from_mask,
    output_extensions,
    write_centerline_files,
    write_stl,
)
from coroseg.infer.pipeline import case_id, find_inputs, load, predict_volume, resolve_device
from coroseg.infer.postprocess import PostprocessOptions
from coroseg.io.atomic import locked, staged_files, write_json
from coroseg.io.centerline import CenterlineGraph
from coroseg.io.dicom_seg import DICOM_SEG, check_dicom_inputs, write_dicom_seg
from coroseg.io.volume import read_volume, write_volume
from coroseg.models.store import model_provenance

log = logging.getLogger(__name__)


def predict(
    run: Any,
    inputs: str | Path | list[str | Path],
    output_dir: str | Path,
    *,
    centerline: str | Path | CenterlineGraph = "auto",
    device: str | torch.device = "auto",
    save_prob: bool = False,
    mesh: bool = False,
    postprocess: PostprocessOptions = PostprocessOptions(),
    iterate: bool = True,
    batch_size: int = 4,
    progress: bool = True,
    precision: str = "auto",
    skip_complete: bool = False,
    num_parts: int | None = None,
    part_id: int | None = None,
    tta: bool = False,
    output_format: str = "input",
) -> list[dict]:
    """Segment every scan in ``inputs`` and write the outputs to ``output_dir``.

    Parameters
    ----------
    run : path or LoadedRun
        Run folder written by ``coroseg train`` (or an already loaded run).
    inputs : path or list of paths
        A volume file (NRRD/NIfTI/MHA), a DICOM series folder, or a folder of volume files.
    output_dir : path
        Created when missing.
    centerline : "auto", "none", path or CenterlineGraph
        Centerline prior for crop models (see :func:`coroseg.infer.predict_volume`). A file is
        only meaningful for a single scan.
    device : "auto", "cpu" or "cuda"
    save_prob, mesh : bool
        Also write ``<id>_prob`` / ``<id>_vessels.stl``.
    postprocess : PostprocessOptions
    iterate : bool
        Add crops where vessels leave the covered region (crop models).
    batch_size : int
        Windows / crops per forward pass.
    progress : bool
        tqdm progress bar over scans.
    precision : {"auto", "fp32", "bf16"}
        Network arithmetic (see :func:`coroseg.infer.predict_volume`).
    skip_complete : bool
        ``--continue``: leave out scans whose outputs in ``output_dir`` are complete
        (:func:`complete_cases`); their summary entries are kept.
    tta : bool
        Test-time mirroring (:func:`coroseg.infer.predict_volume`; 4x the time).
    num_parts, part_id : int, optional
        Segment only part ``part_id`` (0-based) of ``num_parts`` of the scans (job arrays;
        :func:`select_part`). Under ``torchrun`` each process takes part ``RANK`` of
        ``WORLD_SIZE`` (and GPU ``LOCAL_RANK``). Every part adds its cases to the one
        ``summary.json`` of ``output_dir`` (under a lock), so the parts' summaries merge.
    output_format : {"input", "nii.gz", "nii", "nrrd", "mha", "seg.nrrd", "dicom-seg"}
        ``--format`` of the mask and probability files (:func:`coroseg.infer.outputs.output_extensions`):
        ``input`` keeps the input's extension; ``seg.nrrd`` writes a 3D Slicer segmentation;
        ``dicom-seg`` a DICOM SEG of each input series (:mod:`coroseg.io.dicom_seg`; needs the
        ``coroseg[dicom]`` extra; inputs that are no DICOM series are refused before any work).

    Returns
    -------
    list of dict
        The per-scan summaries also written to ``summary.json``.

    Raises
    ------
    CorosegError
        Bad run folder, unreadable input, or (batch) after all scans ran, when any failed
        (the message lists them; the others' outputs are written).
    """
    from coroseg.infer.windows import PRECISIONS

    if precision not in PRECISIONS:
        raise CorosegError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    check_output_format(output_format)
    output_dir = Path(output_dir)
    paths: list[Path] = []
    for p in ([inputs] if isinstance(inputs, (str, Path)) else list(inputs)):
        paths.extend(find_inputs(p))
    if not paths:
        raise InputError("no input scans found", inputs if isinstance(inputs, (str, Path)) else None)
    if output_format == DICOM_SEG:  # before the model is loaded: what cannot get a DICOM SEG fails at once
        check_dicom_inputs(paths, output_dir)
    if isinstance(centerline, (str, Path)) and str(centerline) not in ("auto", "none"):
        if not Path(centerline).exists():
            raise InputError("centerline file not found", centerline)
        if len(paths) > 1:
            raise InputError(f"one centerline file given for {len(paths)} scans; use auto or none for a batch",
                             centerline)
    num_parts, part_id, local_rank = _part(num_parts, part_id)
    dev = resolve_device(device, local_rank)
    loaded = load(run, dev)
    run_dir = getattr(loaded, "run_dir", None)

    complete = complete_cases(output_dir) if output_dir.is_dir() else {}  # {output file name: case id}
    if complete:  # a folder that is also the output folder: skip what earlier runs wrote there
        out_res = output_dir.resolve()
        paths = [p for p in paths if not (p.parent.resolve() == out_res and p.name in complete)]
        if not paths:
            raise InputError("holds only coroseg outputs listed in its summary.json; nothing to segment",
                             inputs if isinstance(inputs, (str, Path)) else output_dir)
    if num_parts > 1:
        n_all = len(paths)
        paths = select_part(paths, num_parts, part_id)
        log.info("part %d of %d: %d of %d scans", part_id, num_parts, len(paths), n_all)
        if not paths:
            return []
    if skip_complete:
        done = set(complete.values())
        skipped = [p for p in paths if case_id(p) in done]
        paths = [p for p in paths if case_id(p) not in done]
        if skipped:
            log.info("--continue: %d of %d scans already complete in %s", len(skipped), len(skipped) + len(paths),
                     output_dir)
        if not paths:
            return []
    ids = [case_id(p) for p in paths]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise InputError(f"several inputs share the case id {sorted(dupes)[0]!r}; outputs would overwrite each other",
                         paths[ids.index(sorted(dupes)[0])])

    summaries: list[dict] = []
    failures: list[tuple[Path, str]] = []
    header = {"coroseg_version": __version__, "run": None if run_dir is None else str(run_dir),
              "model": loaded.config.model, **model_provenance(run_dir), "device": str(dev)}
    from tqdm.auto import tqdm

    bar = tqdm(paths, desc="predict", unit="scan", disable=None if (progress and len(paths) > 1) else True)
    try:
        for path in bar:
            try:
                with staged_files(output_dir) as stage:
                    entry = _predict_one(loaded, path, stage, centerline=centerline, device=dev,
                                         save_prob=save_prob, mesh=mesh, postprocess=postprocess,
                                         precision=precision, iterate=iterate, batch_size=batch_size, tta=tta,
                                         output_format=output_format, model=header)
            except CorosegError as exc:
                if len(paths) == 1:
                    raise
                log.warning("%s; going on with the other scans", exc)  # the error line at the end lists it
                failures.append((path, str(exc)))
                entry = {"id": case_id(path), "input": str(path), "error": str(exc)}
            summaries.append(entry)
            try:
                _record_case(output_dir, header, entry)
            except CorosegError:
                # a case whose summary cannot be written is not finished: remove its files too
                _remove_outputs(output_dir, entry.get("files", {}))
                raise
    finally:
        bar.close()
    if failures:
        raise CorosegError(f"{len(failures)} of {len(paths)} scans failed: "
                           + "; ".join(msg for _, msg in failures), output_dir / "summary.json")
    return summaries


def select_part(paths: list[Path], num_parts: int, part_id: int) -> list[Path]:
    """Part ``part_id`` of ``num_parts`` of the scans: every ``num_parts``-th scan in case-id order.

    Depends only on the list of scans (not on what is complete), so a job array re-run with
    ``--continue`` gives every scan to the same part; the parts cover the list exactly once.
    """
    ordered = sorted(paths, key=lambda p: (case_id(p), str(p)))
    return ordered[part_id::num_parts]


def _part(num_parts: int | None, part_id: int | None) -> tuple[int, int, int]:
    """``(num_parts, part_id, local_rank)`` from the options, else from torchrun's environment."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if (num_parts is None) != (part_id is None):
        raise CorosegError("--num-parts and --part-id go together")
    if num_parts is not None:
        if world > 1:
            raise CorosegError("under torchrun each process takes part RANK of WORLD_SIZE; "
                               "do not also give --num-parts/--part-id")
        if num_parts < 1 or not 0 <= part_id < num_parts:
            raise CorosegError(f"--part-id must be from 0 to --num-parts - 1 ({num_parts - 1}), found {part_id}")
        return num_parts, part_id, 0
    if world > 1:
        return world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    return 1, 0, 0


def _summary_cases(output_dir: Path) -> list[dict]:
    """The case entries of ``output_dir/summary.json`` ([] when missing or unreadable)."""
    import json

    try:
        cases = json.loads((output_dir / "summary.json").read_text(encoding="utf-8"))["cases"]
        return [c for c in cases if isinstance(c, dict) and isinstance(c.get("id"), str)]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return []


def complete_cases(output_dir: str | Path) -> dict[str, str]:
    """``{file name: case id}`` of every output of the complete cases in ``output_dir``.

    A case is complete when ``summary.json`` lists it without an error and every file named in
    its entry exists (a case interrupted before its entry was written is not complete).
    """
    output_dir = Path(output_dir)
    out: dict[str, str] = {}
    for c in _summary_cases(output_dir):
        files = c.get("files")
        if "error" in c or not isinstance(files, dict):
            continue
        names = [Path(str(n)).name for n in files.values()]
        if names and all((output_dir / n).is_file() for n in names):
            out.update({n: c["id"] for n in names})
    return out


def _record_case(output_dir: Path, header: dict, entry: dict) -> None:
    """Add (or replace) ``entry`` in ``output_dir/summary.json``, re-read under a lock."""
    with locked(output_dir):
        cases = [c for c in _summary_cases(output_dir) if c.get("id") != entry["id"]]
        write_json(output_dir / "summary.json", {**header, "cases": cases + [entry]})


def _predict_one(loaded, path: Path, output_dir: Path, *, centerline, device, save_prob: bool, mesh: bool,
                 precision: str, postprocess: PostprocessOptions, iterate: bool, batch_size: int,
                 tta: bool = False, output_format: str = "input", model: dict | None = None) -> dict:
    t0 = time.perf_counter()
    vol = read_volume(path)
    t_read = time.perf_counter() - t0
    pred = predict_volume(loaded, vol, centerline=centerline, device=device, postprocess_options=postprocess,
                          iterate=iterate, batch_size=batch_size, extract_centerline=True, keep_prob=save_prob,
                          precision=precision, tta=tta)
    cid = case_id(path)
    ext, prob_ext = output_extensions(path, output_format)
    t0 = time.perf_counter()
    files: dict[str, Path] = {}  # written into the caller's staging folder, moved into place together
    seg_path = output_dir / f"{cid}_seg{ext}"
    files["seg"] = (write_dicom_seg(pred.seg, path, seg_path, model=model) if output_format == DICOM_SEG
                    else write_volume(pred.seg, seg_path))
    if save_prob:
        files["prob"] = write_volume(pred.prob, output_dir / f"{cid}_prob{prob_ext}")
    if pred.graph is not None and len(pred.graph) > 0:
        for p in write_centerline_files(pred.graph, output_dir / f"{cid}_centerline"):
            files["centerline" + "".join(p.suffixes[-2:] if p.name.endswith(".mrk.json") else p.suffixes[-1:])] = p
    if mesh:
        verts, faces = mesh_from_mask(pred.seg)
        files["mesh"] = write_stl(output_dir / f"{cid}_vessels.stl", verts, faces)
    t_write = time.perf_counter() - t0
    timings = {"read": round(t_read, 4), **{k: v for k, v in pred.timings.items() if k != "total"},
               "write": round(t_write, 4), "total": round(t_read + pred.timings["total"] + t_write, 4)}
    return {
        "id": cid,
        "input": str(path),
        **pred.info,
        **mask_stats(pred.seg, pred.graph),
        "geometry": geometry_dict(pred.seg),
        "timings_s": timings,
        "files": {k: Path(v).name for k, v in files.items()},
    }


def _remove_outputs(output_dir: Path, files: dict) -> None:
    for name in files.values():
        try:
            (output_dir / Path(name).name).unlink(missing_ok=True)
        except OSError:  # e.g. the output "folder" is a file: nothing was written there
            pass


__all__ = ["predict", "complete_cases"]

"""Whole-volume inference: ``predict`` (files in, files out) and ``predict_volume`` (in memory).

Geometry path of one scan::

    input Volume (any orientation)
      -> orient_lps (flip/permute only, exact)       so RAS or flipped storage gives the same input
      -> to_model_grid (linear, model spacing)        exactly as in training (crop models:
      -> normalise (clip + standardise, run config)   only the crops, ModelGridPatches)
      -> network stage(s) -> vessel probability on the model grid
      -> resample_to_grid(input grid, linear)         the probability, not the mask
      -> postprocess (threshold, keep trees, fill holes) on the input grid
      -> <id>_seg on the input's own grid, origin, spacing and direction

Centerline prior (crop models): ``"auto"`` = the run's locator + skeleton, a path = a
``.vtp``/``.gml``/``.mrk.json`` file, a :class:`CenterlineGraph` = given in memory (label it
``centerline_source="oracle"`` when it is the dataset's ground truth), ``"none"`` = no prior
(the crop model tiles the whole volume, attention channel all zero). Grid models ignore it.
The output centerline is always re-extracted from the final mask, so it describes the
segmentation that is handed back.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from coroseg.device import resolve_device
from coroseg.errors import CorosegError, InputError
from coroseg.infer.postprocess import PostprocessOptions, postprocess
from coroseg.infer.stages import (
    MAX_ITERATIONS,
    MAX_VESSEL_FRACTION,
    REFINE_ROUNDS,
    StageInfo,
    locate,
    run_crops,
    run_grid,
)
from coroseg.infer.windows import inference_precision
from coroseg.io.centerline import CenterlineGraph
from coroseg.io.volume import Volume, orient_lps, resample_to_grid, sub_grid
from coroseg.models.config import RunConfig, as_run_config

log = logging.getLogger(__name__)

CENTERLINE_MODES = ("auto", "none")
#: ``tta``: the scan and its mirrors along each array axis (nnU-Net mirrors over all 8 axis
#: combinations; the 3 single-axis mirrors give most of that at half the cost)
TTA_FLIPS = ((), (0,), (1,), (2,))
#: probabilities at most this are treated as 0 when choosing the region to resample back
PROB_FLOOR = 1e-3


class Prediction(NamedTuple):
    """Result of :func:`predict_volume`.

    seg : Volume, uint8 {0, 1} on the input grid
    prob : Volume or None, float32 vessel probability on the input grid (None: not asked for)
    graph : CenterlineGraph or None, extracted from ``seg`` (LPS mm); None when not asked for
    timings : dict, seconds per stage (and ``"total"``)
    info : dict, what ran: centerline source, crops, iterations, device, prior graph size
    """

    seg: Volume
    prob: Volume | None
    graph: CenterlineGraph | None
    timings: dict
    info: dict


def load(run: Any, device: torch.device):
    """A loaded run (anything with ``.config``, ``.model``, ``.locator``) from a folder, an installed
    model's name or ``"builtin"`` (:func:`coroseg.models.store.resolve_model`), or as is."""
    if isinstance(run, (str, Path)):
        from coroseg.models.run import load_run
        from coroseg.models.store import resolve_model

        run = load_run(resolve_model(run), device="cpu")
    for name in ("config", "model", "locator"):
        if not hasattr(run, name):
            raise TypeError(f"run must be a run folder or a LoadedRun, got {type(run).__name__}")
    if not isinstance(run.config, RunConfig):  # a hand-made run (tests, notebooks): check its config dict
        from coroseg.models.run import LoadedRun

        run = LoadedRun(as_run_config(run.config), run.model, run.locator, getattr(run, "run_dir", None))
    run.model.to(device).eval()
    if run.locator is not None:
        run.locator.to(device).eval()
    return run


def _prior_graph(run, vol_lps: Volume, centerline, device: torch.device, info: StageInfo,
                 source: str | None, max_vessel_fraction: float) -> tuple[CenterlineGraph | None, str]:
    cfg = run.config
    if isinstance(centerline, CenterlineGraph):
        from coroseg.io.centerline_files import check_centerline_in_image

        # a graph in another frame (e.g. an ASOCA .vtp read without its image) fails here, not silently
        check_centerline_in_image(centerline, vol_lps, f"{source or 'given'} centerline")
        return centerline, source or "given"
    if isinstance(centerline, (str, Path)) and str(centerline) not in CENTERLINE_MODES:
        from coroseg.io.centerline_files import check_centerline_in_image, read_centerline

        t0 = time.perf_counter()
        graph = read_centerline(Path(centerline), reference=vol_lps)
        check_centerline_in_image(graph, vol_lps, centerline)
        info.tick("centerline_read", t0)
        return graph, source or "file"
    if str(centerline) == "none":
        return None, "none"
    # auto
    if run.locator is None or cfg.locator is None:
        where = getattr(run, "run_dir", None)
        raise CorosegError("this crop model has no locator network (config 'locator' is null), so "
                           "--centerline auto cannot find a centerline; pass --centerline FILE or none",
                           None if where is None else Path(where) / "config.json")
    _, graph = locate(vol_lps, run.locator, cfg.locator, device=device, info=info,
                      max_vessel_fraction=max_vessel_fraction, referenced=True)
    return graph, (source or "auto") if graph is not None else "auto-failed"


def predict_volume(
    run: Any,
    vol: Volume,
    *,
    centerline: str | Path | CenterlineGraph = "auto",
    centerline_source: str | None = None,
    device: str | torch.device = "auto",
    postprocess_options: PostprocessOptions = PostprocessOptions(),
    iterate: bool = True,
    max_iterations: int = MAX_ITERATIONS,
    refine: int = REFINE_ROUNDS,
    batch_size: int = 4,
    extract_centerline: bool = True,
    max_vessel_fraction: float = MAX_VESSEL_FRACTION,
    keep_prob: bool = True,
    precision: str = "auto",
    tta: bool = False,
) -> Prediction:
    """Segment one in-memory volume.

    Parameters
    ----------
    run : LoadedRun or path
        A trained run (``coroseg.models.run.load_run``) or its folder.
    vol : Volume
        HU image, any orientation and spacing.
    centerline : "auto", "none", path or CenterlineGraph
        Centerline prior for crop models (ignored by grid models); see the module docstring.
    centerline_source : str, optional
        Label reported for the prior (e.g. ``"oracle"`` for a ground-truth graph).
    device : "auto", "cpu", "cuda" or torch.device
    postprocess_options : PostprocessOptions
    iterate, max_iterations : bool, int
        Iterative crop addition (crop models).
    refine : int
        Crop models: rounds in which every crop runs again with the attention drawn from the
        centerline of its own result (:func:`coroseg.infer.stages.run_crops`); only with the
        automatic centerline (a given one is the prior the user asked for).
    batch_size : int
        Windows / crops per forward pass.
    extract_centerline : bool
        Skeletonise the final mask into the returned graph.
    max_vessel_fraction : float
        Masks covering more of the volume are not coronary trees (an untrained or wrong
        model): no centerline is extracted from them (locator: crop model runs without a
        prior, source ``"auto-failed"``; output: graph ``None``), with a warning in ``info``.
    keep_prob : bool
        Return the probability map (an input-sized float32 volume); ``False`` gives
        ``prob=None`` and saves that memory and time when only the mask is wanted.
    precision : {"auto", "fp32", "bf16"}
        Network arithmetic: ``auto`` = bf16 autocast on CUDA, fp32 on CPU. ``bf16`` on a CPU
        with bf16 instructions is ~1.5x faster in the networks at equal Dice
        (docs/benchmarks.md), and much slower on one without.
    tta : bool
        Test-time mirroring: the whole prediction (crop models: locator, centerline, crop
        placement, attention) also runs on the scan mirrored along each array axis
        (:data:`TTA_FLIPS`: the scan and its 3 single-axis mirrors, 4x the time); the four
        probabilities, mirrored back, are averaged before post-processing. A given centerline
        is mirrored with the scan.

    Returns
    -------
    Prediction
        ``(seg, prob, graph, timings, info)``; ``seg`` and ``prob`` share ``vol``'s grid exactly.
    """
    kwargs = dict(centerline=centerline, centerline_source=centerline_source, device=device,
                  postprocess_options=postprocess_options, iterate=iterate, max_iterations=max_iterations,
                  refine=refine, batch_size=batch_size, extract_centerline=extract_centerline,
                  max_vessel_fraction=max_vessel_fraction, keep_prob=keep_prob)
    with inference_precision(precision):
        return _predict_tta(run, vol, **kwargs) if tta else _predict_volume(run, vol, **kwargs)


def _predict_tta(run, vol: Volume, *, centerline, postprocess_options, extract_centerline, keep_prob,
                 max_vessel_fraction, **kwargs) -> Prediction:
    """:func:`predict_volume` averaged over :data:`TTA_FLIPS` (whole pipeline per mirrored scan)."""
    t_start = time.perf_counter()
    if isinstance(centerline, (str, Path)) and str(centerline) not in CENTERLINE_MODES:
        from coroseg.io.centerline_files import read_centerline

        centerline = read_centerline(Path(centerline), reference=orient_lps(vol))  # mirrored with the scan below
    run = load(run, resolve_device(kwargs["device"]))
    total = None
    first = None
    timings: dict[str, float] = {}
    for axes in TTA_FLIPS:
        mirrored = vol if not axes else vol.with_array(np.ascontiguousarray(np.flip(vol.array, axes)))
        prior = mirror_graph(centerline, vol, axes) if isinstance(centerline, CenterlineGraph) else centerline
        pred = _predict_volume(run, mirrored, centerline=prior, postprocess_options=postprocess_options,
                               extract_centerline=False, keep_prob=True, max_vessel_fraction=max_vessel_fraction,
                               **kwargs)
        prob = np.flip(pred.prob.array, axes) if axes else pred.prob.array
        total = prob.copy() if total is None else total + prob
        first = first or pred
        for k, v in pred.timings.items():
            timings[k] = timings.get(k, 0.0) + v
    mean = total / np.float32(len(TTA_FLIPS))
    info = StageInfo()
    t0 = time.perf_counter()
    seg = vol.with_array(postprocess(mean, postprocess_options, spacing=vol.spacing), is_label=True)
    info.tick("postprocess", t0)
    graph = _output_centerline(seg, info, max_vessel_fraction) if extract_centerline else None
    timings.update({k: round(timings.get(k, 0.0) + v, 4) for k, v in info.timings.items()})
    timings["total"] = round(time.perf_counter() - t_start, 4)
    meta = {**first.info, "tta": len(TTA_FLIPS), "warnings": first.info["warnings"] + info.warnings}
    return Prediction(seg, vol.with_array(mean, is_label=False) if keep_prob else None, graph, timings, meta)


def mirror_graph(graph: CenterlineGraph, vol: Volume, axes: tuple[int, ...]) -> CenterlineGraph:
    """``graph`` (world mm) moved as ``vol``'s anatomy moves when its array is flipped along ``axes``."""
    if not axes:
        return graph
    size = np.asarray(vol.shape, dtype=float) - 1.0

    def move(points: np.ndarray) -> np.ndarray:
        idx = vol.world_to_index(points)
        idx[:, list(axes)] = size[list(axes)] - idx[:, list(axes)]
        return vol.index_to_world(idx)

    return graph.transformed(move)


def _output_centerline(seg: Volume, info: StageInfo, max_vessel_fraction: float,
                       box: tuple[slice, ...] | None = None) -> CenterlineGraph | None:
    """The centerline of the final mask (empty when nothing is segmented; None when it is too big).

    Skeletonised in the LPS-oriented frame, so the graph does not depend on storage order, and
    only on ``box`` (where the mask can be; the graph is in world mm, the same either way).
    """
    from coroseg.infer.postprocess import bounding_box
    from coroseg.prior.skeleton import centerline_from_mask

    t0 = time.perf_counter()
    box = bounding_box(seg.array > 0) if box is None else box
    frac = 0.0 if box is None else float(np.count_nonzero(seg.array[box])) / max(1, seg.array.size)
    graph = None
    if box is None or frac == 0.0:  # nothing segmented: nothing to skeletonise
        graph = CenterlineGraph()
    elif frac > max_vessel_fraction:
        info.warn(f"segmentation covers {100 * frac:.1f} % of the volume: no centerline extracted")
    else:
        graph = centerline_from_mask(orient_lps(sub_grid(seg, box)))
    info.tick("centerline_output", t0)
    return graph


def _is_auto(centerline) -> bool:
    return not isinstance(centerline, CenterlineGraph) and str(centerline) == "auto"


def _predict_volume(run, vol: Volume, *, centerline, centerline_source, device, postprocess_options, iterate,
                    max_iterations, refine, batch_size, extract_centerline, max_vessel_fraction,
                    keep_prob) -> Prediction:
    from coroseg.data.levels import network_input
    from coroseg.data.preprocess import ModelGridPatches, normalise, to_model_grid

    t_start = time.perf_counter()
    dev = resolve_device(device)
    run = load(run, dev)
    cfg = run.config
    info = StageInfo()
    t0 = time.perf_counter()
    vol_lps = orient_lps(vol)
    # once for both networks (the locator is told: referenced=True in _prior_graph)
    vol_lps, levels = network_input(vol_lps, cfg.intensity)
    if levels is not None and levels.warning:
        info.warn(levels.warning)
    t0 = info.tick("preprocess", t0)

    def whole_volume() -> tuple[Volume, np.ndarray]:
        t = time.perf_counter()
        grid = to_model_grid(vol_lps, cfg.spacing)
        # normalise in place when resampling made a new float32 array (never the caller's)
        own = grid is not vol_lps and grid.array.dtype == np.float32
        norm = normalise(grid.array, cfg.intensity, out=grid.array if own else None)
        info.tick("preprocess", t)
        return grid, norm

    source = "none"
    prior_nodes = None
    if cfg.is_crop:
        prior, source = _prior_graph(run, vol_lps, centerline, dev, info, centerline_source, max_vessel_fraction)
        if prior is None:  # no prior: crop model over the whole volume, attention all zero
            grid, norm = whole_volume()
            t0 = time.perf_counter()
            prob = grid.with_array(run_grid(norm, run.model, cfg, device=dev, batch_size=batch_size))
            info.tick("network", t0)
        else:
            prior_nodes = len(prior)
            # the model-grid image is resampled crop by crop, never as a whole volume
            patches = ModelGridPatches(vol_lps, cfg.spacing, cfg.intensity)
            grid = patches.grid
            reach = cfg.locator.reach_mm if cfg.locator is not None else None
            prob, _ = run_crops(patches, grid, prior, run.model, cfg, device=dev, batch_size=batch_size,
                                iterate=iterate, max_iterations=max_iterations,
                                threshold=postprocess_options.threshold, info=info,
                                max_vessel_fraction=max_vessel_fraction, reach_mm=reach,
                                refine=refine if _is_auto(centerline) else 0)
    else:
        if isinstance(centerline, CenterlineGraph) or str(centerline) not in CENTERLINE_MODES:
            info.warn(f"{cfg.model} is a grid model: the given centerline is not used")
        grid, norm = whole_volume()
        t0 = time.perf_counter()
        prob = grid.with_array(run_grid(norm, run.model, cfg, device=dev, batch_size=batch_size))
        info.tick("network", t0)

    t0 = time.perf_counter()
    prob_arr = np.zeros(vol.shape, np.float32) if keep_prob else None
    seg_arr = np.zeros(vol.shape, np.uint8)
    found = None if prob is None else _input_box(prob, vol, floor=min(PROB_FLOOR, postprocess_options.threshold))
    if found is not None:  # resample and post-process only where the network said anything
        box, src = found
        sub = sub_grid(vol, box)
        back = resample_to_grid(src, sub, order=1, default=0.0).array
        np.clip(back, 0.0, 1.0, out=back)
        if prob_arr is not None:
            prob_arr[box] = back
        t0 = info.tick("resample_back", t0)
        seg_arr[box] = postprocess(back, postprocess_options, spacing=vol.spacing)
        t0 = info.tick("postprocess", t0)
    prob_in = vol.with_array(prob_arr, is_label=False) if prob_arr is not None else None
    seg = vol.with_array(seg_arr, is_label=True)
    graph = None
    if extract_centerline:
        graph = (CenterlineGraph() if found is None
                 else _output_centerline(seg, info, max_vessel_fraction, box=found[0]))
    timings = {k: round(v, 4) for k, v in info.timings.items()}
    timings["total"] = round(time.perf_counter() - t_start, 4)
    meta = {"centerline_source": source, "n_crops": info.n_crops, "iterations": info.iterations,
            "prior_nodes": prior_nodes, "device": str(dev), "model": cfg.model,
            "model_grid_shape": list(grid.shape), "model_spacing": list(grid.spacing),
            "warnings": list(info.warnings)}
    if levels is not None:
        meta["hu_levels"] = levels.summary()
    return Prediction(seg, prob_in, graph, timings, meta)


def _input_box(prob: Volume, vol: Volume, *, margin: int = 2,
               floor: float = PROB_FLOOR) -> tuple[tuple[slice, ...], Volume] | None:
    """Where the network said anything: slices of ``vol``'s grid, and the part of ``prob`` to resample there.

    The box of the model-grid voxels above ``floor`` (grown by ``margin`` voxels, for the
    linear interpolation's reach) is cut out of ``prob`` and mapped through world space onto
    the input grid; ``None`` when all is zero. Outside it every interpolated probability is
    at most ``floor`` (below any sensible threshold), so the mask is the same as from the
    whole volume and the saved probability differs by at most ``floor``; crop models leave
    most of the volume untouched, so this saves most of the resampling and post-processing.
    """
    arr = prob.array
    nz = np.nonzero(arr.max(axis=(1, 2)) > floor)[0]
    if len(nz) == 0:
        return None
    ny = np.nonzero(arr.max(axis=(0, 2)) > floor)[0]
    nx_ = np.nonzero(arr.max(axis=(0, 1)) > floor)[0]
    lo = np.maximum(np.array([nz[0], ny[0], nx_[0]]) - margin, 0)
    hi = np.minimum(np.array([nz[-1], ny[-1], nx_[-1]]) + margin, np.array(arr.shape) - 1)
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])], float)
    idx = vol.world_to_index(prob.index_to_world(corners))
    start = np.clip(np.floor(idx.min(0)).astype(int) - margin, 0, np.array(vol.shape))
    stop = np.clip(np.ceil(idx.max(0)).astype(int) + margin + 1, 0, np.array(vol.shape))
    if np.any(stop <= start):
        return None
    src = sub_grid(prob, tuple(slice(int(a), int(b) + 1) for a, b in zip(lo, hi)))
    return tuple(slice(int(a), int(b)) for a, b in zip(start, stop)), src


def find_inputs(path: str | Path) -> list[Path]:
    """The scans under ``path``: the file itself, a DICOM series folder, or a folder's volume files.

    A folder holding volume files (``.nrrd``, ``.nii.gz``, ...) is a batch, sorted by name;
    a folder holding none is read as one DICOM series. In a batch, files named like labels or
    outputs (:func:`is_label_like`: ``<id>_seg``, ``<id>.label``, ``<id>_prob``, ...) are not
    scans and are skipped, with a log line, unless nothing else is there.
    """
    from coroseg.io.volume import check_regular_file, volume_extension

    path = Path(path)
    if not path.exists():
        raise InputError("no such file or folder", path)
    if not path.is_dir():
        check_regular_file(path)  # a named pipe would block the reader forever
    if path.is_file():
        if volume_extension(path) is None:
            raise InputError(f"unsupported file type {''.join(path.suffixes) or '(none)'}; expected a "
                             ".nrrd, .nii(.gz), .mha/.mhd file or a DICOM folder", path)
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and volume_extension(p) and not p.name.startswith("."))
    scans = [p for p in files if not is_label_like(p)]
    if scans and len(scans) < len(files):
        log.info("%s: skipping %d file(s) named like labels or outputs (e.g. %s)", path, len(files) - len(scans),
                 next(p.name for p in files if is_label_like(p)))
    if files:
        return scans or files
    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs and not any(p.is_file() and not p.name.startswith(".") for p in path.iterdir()):
        return subdirs  # a folder of DICOM series folders
    return [path]


#: name endings (after the extension) of label and output files, never scans to segment
LABEL_LIKE = ("_seg", "_segmentation", "_pred", "_prediction", "_label", "_labels", "_mask", "_gt", ".label",
              ".seg", "_prob")


def is_label_like(path: Path) -> bool:
    """Whether a volume file's name marks a label or an output (``a_seg.nrrd``, ``12.label.nii.gz``,
    ``a_prob.nrrd``), not a scan (ImageCAS ``12.img.nii.gz`` is a scan)."""
    from coroseg.io.volume import strip_extension

    return strip_extension(path).lower().endswith(LABEL_LIKE)


#: nnU-Net's channel suffix on image files (``case_0000.nii.gz``): not part of the case id
NNUNET_CHANNEL = "_0000"


def case_id(path: Path) -> str:
    """The case id of an input: a folder's name, or a file's name without its extension and, in an
    nnU-Net image folder, without the channel suffix ``_0000`` (``imagesTs/case_0000.nii.gz``
    gives ``case_seg.nii.gz``, which ``evaluate`` pairs with ``labelsTs/case.nii.gz``).

    A folder counts as nnU-Net's when it is named ``images*`` or every volume file in it ends in
    ``_0000``; elsewhere ``synth_0000.nrrd`` stays ``synth_0000``.
    """
    from coroseg.io.volume import strip_extension

    if path.is_dir():
        return path.name
    name = strip_extension(path)
    if name.endswith(NNUNET_CHANNEL) and len(name) > len(NNUNET_CHANNEL) and _nnunet_folder(path.parent):
        return name[: -len(NNUNET_CHANNEL)]
    return name


def _nnunet_folder(folder: Path) -> bool:
    if folder.name.lower().startswith("images"):
        return True
    try:
        stamp = folder.stat().st_mtime_ns
    except OSError:
        return False
    return _all_channel_suffixed(folder, stamp)


@functools.lru_cache(maxsize=64)
def _all_channel_suffixed(folder: Path, stamp: int) -> bool:  # noqa: ARG001 (stamp: the cache key)
    """Whether every scan-like volume file in ``folder`` ends in ``_0000``; cached per folder and
    modification time, so a folder whose files change is listed again."""
    from coroseg.io.volume import strip_extension, volume_extension

    try:
        names = [strip_extension(p) for p in folder.iterdir()
                 if volume_extension(p) and not p.name.startswith(".") and not is_label_like(p)]
    except OSError:
        return False
    return bool(names) and all(n.endswith(NNUNET_CHANNEL) for n in names)


__all__ = ["predict_volume", "Prediction", "resolve_device", "find_inputs", "is_label_like", "case_id", "load",
           "CENTERLINE_MODES", "TTA_FLIPS"]

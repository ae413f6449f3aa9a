"""The network stages of whole-volume inference, on the model grid.

- :func:`run_grid`: grid models, sliding window over the whole volume (2D slice by slice).
- :func:`locate`: stage 1 of crop models, ``--centerline auto``: the run's locator network
  (a small 3D grid U-Net, no prior, coarser spacing) segments the whole scan; its mask is
  skeletonised into a :class:`~coroseg.io.centerline.CenterlineGraph`
  (:func:`coroseg.prior.centerline_from_mask`).
- :func:`run_crops`: stage 2, the crop model on crops centred on clusters of centerline points
  (:func:`crop_starts`, :func:`coroseg.prior.crop_centres`), each crop's input read from a patch
  source and its attention channel built per crop exactly as in training (:func:`crop_attention`);
  optionally iterated: the centerline is re-extracted from the stage-2 mask and crops are added
  where the vessels leave the region covered so far, until nothing new is found or after
  ``max_iterations`` extra rounds.

Inputs are normalised arrays (or, for :func:`run_crops`, a patch source such as
:class:`coroseg.data.preprocess.ModelGridPatches`) and HU volumes on an LPS-oriented grid;
outputs are probabilities. Geometry bookkeeping lives in :mod:`coroseg.infer.pipeline`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from coroseg.infer.crops import ArrayPatches, CropAccumulator, crop_boxes, predict_crops
from coroseg.infer.postprocess import bounding_box, grow_into, keep_main_components
from coroseg.infer.windows import sliding_window, vessel_predictor
from coroseg.io.centerline import CenterlineGraph
from coroseg.io.volume import Volume, sub_grid
from coroseg.models.config import (
    LOCATOR_KEEP_FRACTION,
    LOCATOR_LOW_THRESHOLD,
    LOCATOR_REACH_MM,
    LOCATOR_THRESHOLD,
    LocatorConfig,
    RunConfig,
)

log = logging.getLogger(__name__)

#: sliding-window defaults (nnU-Net uses 0.5 overlap; 0.25 is MONAI's default and ~2x cheaper)
OVERLAP = 0.25
#: the locator's sliding-window overlap (a coarse whole-volume pass: its windows are the main
#: fixed cost of a crop model's prediction)
LOCATOR_OVERLAP = OVERLAP
#: spacing of centerline points used for crop centres (mm)
POINT_STEP_MM = 1.0
#: a mask covering more than this fraction of the volume is not a coronary tree (coronaries
#: fill ~0.1-0.5 % of a CTCA scan); skeletonising it would be slow and meaningless
MAX_VESSEL_FRACTION = 0.1
#: extra rounds of crop addition (tracking) after the first crops, and a cap on all crops of a
#: scan (a coronary tree at 0.8 mm needs 15-45 crops of 48^3; the cap bounds a runaway on a
#: scan that is not a CTCA)
MAX_ITERATIONS = 3
MAX_CROPS = 400
#: refinement rounds after tracking: every crop is run again with its attention drawn from the
#: centerline of the stage-2 mask instead of the prior it started from
REFINE_ROUNDS = 0
#: ``locator.tta``: the locator's probability is averaged over the scan and these flipped copies
LOCATOR_TTA_FLIPS = ((), (0,), (1,), (2,))
@dataclass
class StageInfo:
    """What a stage did: timings (s), crop counts, iterations."""

    timings: dict[str, float] = field(default_factory=dict)
    n_crops: int = 0
    iterations: int = 0
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        log.warning("%s", message)
        self.warnings.append(message)

    def tick(self, name: str, t0: float) -> float:
        t = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + (t - t0)
        return t


def pad_value(intensity: dict) -> float:
    """Normalised value of the lowest clipped HU (air): what the network sees outside the body."""
    from coroseg.data.preprocess import normalise

    lo = float(intensity["clip"][0])
    return float(normalise(np.array([lo], np.float32), intensity)[0])


def run_grid(norm: np.ndarray, model: torch.nn.Module, config: RunConfig, *, device: torch.device,
             batch_size: int = 4, overlap: float = OVERLAP) -> np.ndarray:
    """Vessel probability ``(Z, Y, X)`` of a model slid over the whole normalised volume.

    A crop model run this way (no centerline prior) gets an all-zero attention map, added to
    each window as it runs (padding included) rather than stacked as a volume-sized array.
    """
    predictor = vessel_predictor(model)
    if config.attention:
        base = predictor

        def predictor(x: torch.Tensor) -> torch.Tensor:  # the channel model_input would stack
            return base(torch.cat([x, torch.zeros_like(x)], 1))

    return sliding_window(norm, predictor, patch_size=config.patch_size, overlap=overlap,
                          batch_size=batch_size, device=device, mode="gaussian", cval=pad_value(config.intensity))


def locate(vol_lps: Volume, locator: torch.nn.Module, loc_cfg: LocatorConfig, *, device: torch.device,
           batch_size: int = 4, info: StageInfo | None = None,
           max_vessel_fraction: float = MAX_VESSEL_FRACTION,
           referenced: bool = False) -> tuple[Volume, CenterlineGraph | None]:
    """Stage 1: locator probability on its own grid, and the centerline skeletonised from it.

    Parameters
    ----------
    vol_lps : Volume
        HU image, LPS-oriented (any spacing).
    locator : torch.nn.Module
        3D grid network, 1 input channel, logits (N, 2, ...).
    loc_cfg : LocatorConfig
        The run config's locator: grid (``spacing``, ``patch_size``), ``intensity``, and the
        mask rules of :func:`locator_mask`; ``tta`` averages over :data:`LOCATOR_TTA_FLIPS`.
    referenced : bool
        ``vol_lps`` is already on the fixed HU levels (:func:`coroseg.data.levels.reference_volume`;
        ``predict`` does that once for both networks); otherwise it is referenced here when
        ``loc_cfg.intensity`` asks for it.

    Returns
    -------
    prob : Volume
        Locator vessel probability on the locator grid.
    graph : CenterlineGraph or None
        LPS mm; empty when the locator finds nothing; ``None`` (with a warning in ``info``)
        when its mask covers more than ``max_vessel_fraction`` of the volume.
    """
    from coroseg.prior.skeleton import centerline_from_mask

    info = info if info is not None else StageInfo()
    prob = locator_probability(vol_lps, locator, loc_cfg, device=device, batch_size=batch_size, info=info,
                               referenced=referenced)
    t0 = time.perf_counter()
    mask = locator_mask(prob, loc_cfg)
    frac = float(mask.mean())
    if frac > max_vessel_fraction:
        info.warn(f"locator mask covers {100 * frac:.1f} % of the volume (more than "
                  f"{100 * max_vessel_fraction:g} %): not a coronary tree, running without a centerline prior")
        info.tick("locator_centerline", t0)
        return prob, None
    graph = centerline_from_mask(prob.with_array(mask.astype(np.uint8), is_label=True))
    info.tick("locator_centerline", t0)
    return prob, graph


def locator_probability(vol_lps: Volume, locator: torch.nn.Module, loc_cfg: LocatorConfig, *, device: torch.device,
                        batch_size: int = 4, info: StageInfo | None = None, referenced: bool = False) -> Volume:
    """The locator's vessel probability on its own grid: HU-referenced when its config asks (and
    ``referenced`` is false, see :func:`locate`), resampled, normalised, slid (``tta``: mirrored)."""
    from coroseg.data.levels import network_input
    from coroseg.data.preprocess import normalise, to_model_grid

    info = info if info is not None else StageInfo()
    t0 = time.perf_counter()
    if not referenced:
        vol_lps, levels = network_input(vol_lps, loc_cfg.intensity)
        if levels is not None and levels.warning:
            info.warn(levels.warning)
    grid = to_model_grid(vol_lps, loc_cfg.spacing)
    norm = normalise(grid.array, loc_cfg.intensity)
    t0 = info.tick("locator_preprocess", t0)
    prob = None
    flips = LOCATOR_TTA_FLIPS if loc_cfg.tta else ((),)
    for axes in flips:  # test-time mirroring: the mean over flipped copies of the scan
        x = np.ascontiguousarray(np.flip(norm, axes)) if axes else norm
        p = sliding_window(x, vessel_predictor(locator), patch_size=loc_cfg.patch_size, overlap=LOCATOR_OVERLAP,
                           batch_size=batch_size, device=device, cval=pad_value(loc_cfg.intensity))
        p = np.flip(p, axes) if axes else p
        prob = p if prob is None else prob + p
    if len(flips) > 1:
        prob = np.ascontiguousarray(prob / np.float32(len(flips)))
    info.tick("locator_network", t0)
    return grid.with_array(prob, is_label=False)


def locator_mask(prob: Volume, loc_cfg: LocatorConfig) -> np.ndarray:
    """The locator's trees (bool, its grid): ``threshold``, the size rule (``keep_fraction``, or
    ``reach_mm``: pieces within that distance of the largest tree), hysteresis growth into
    probability >= ``low_threshold`` (:mod:`coroseg.models.config` explains each default)."""
    mask = keep_main_components(prob.array >= loc_cfg.threshold, spacing=prob.spacing,
                                keep_fraction=loc_cfg.keep_fraction, reach_mm=loc_cfg.reach_mm)
    if loc_cfg.low_threshold is not None and mask.any():
        mask = grow_into(mask, prob.array >= loc_cfg.low_threshold)
    if loc_cfg.bridge_mm is not None and mask.any():
        from coroseg.infer.bridging import bridge_pieces

        pieces = prob.array >= loc_cfg.threshold
        if loc_cfg.low_threshold is not None:
            pieces = grow_into(pieces, prob.array >= loc_cfg.low_threshold)
        mask = bridge_pieces(mask, pieces, prob, gap_mm=loc_cfg.bridge_mm)
    return mask


def centre_points(graph: CenterlineGraph, grid: Volume, *, step_mm: float = POINT_STEP_MM) -> np.ndarray:
    """Centerline points as fractional indices ``(N, 3)`` of ``grid``, only those inside it."""
    if len(graph) == 0:
        return np.zeros((0, 3))
    pts, _ = graph.dense_points(step_mm)
    idx = grid.world_to_index(pts)
    inside = np.all((idx > -0.5) & (idx < np.array(grid.shape) - 0.5), axis=1)
    return idx[inside]


def crop_starts(points_idx: np.ndarray, grid: Volume, config: RunConfig) -> np.ndarray:
    """Crop start indices ``(M, 3)`` covering ``points_idx`` with the run's clustering method."""
    from coroseg.prior.crops import crop_centres, crop_centres_2d

    if len(points_idx) == 0:
        return np.zeros((0, 3), np.int64)
    kwargs = config.crop.clustering()
    # cluster with crops shrunk by the border margin, so that every centerline point lies at
    # least ``margin`` voxels inside its full-size crop (room for the vessel's radius); the
    # clustering works in the volume shrunk by the margin on every side, so points and the
    # resulting centres are shifted by it (full crops can then reach every volume face)
    m = crop_margin(config.patch_size)
    inner = np.asarray(config.patch_size, dtype=np.int64) - 2 * m
    kwargs.update(method=config.crop.method, spacing=tuple(grid.spacing), seed=config.seed,
                  shape=tuple(np.asarray(grid.shape) - 2 * m))
    pts = np.asarray(points_idx, dtype=float) - m
    if inner[0] == 1:
        centres = crop_centres_2d(pts, size_2d=inner[1:].tolist(), **kwargs)
    else:
        centres = crop_centres(pts, size=tuple(inner.tolist()), **kwargs)
    return crop_boxes(np.asarray(centres).reshape(-1, 3) + m, grid.shape, config.patch_size)


def attention(graph: CenterlineGraph, grid: Volume, config: RunConfig) -> np.ndarray:
    """The attention map ``(Z, Y, X)`` float32 in [0, 1] on ``grid``, as in training."""
    from coroseg.prior.attention import attention_channel

    acfg = config.attention_cfg
    return np.asarray(attention_channel(graph, grid, dilation_mm=acfg.dilation_mm, mode=acfg.mode), dtype=np.float32)


def crop_attention(graph: CenterlineGraph, grid: Volume, config: RunConfig):
    """``(start, image_patch) -> (1, pz, py, px)``: the attention input of one crop, as in training.

    The same map as :func:`attention` (and :func:`model_input`'s second channel) restricted
    to the crop, computed from the centerline points that reach it, so no volume-sized
    attention array is ever built.
    """
    from coroseg.data.sampling import attention_patch, centerline_points

    pts, rad = centerline_points(graph, grid)
    acfg = config.attention_cfg
    size = np.asarray(config.patch_size, dtype=np.int64)

    def make(start: np.ndarray, patch: np.ndarray) -> np.ndarray:  # noqa: ARG001 (the image patch: unused)
        return attention_patch(pts, rad, np.asarray(start) + size // 2, size, grid.spacing, mode=acfg.mode,
                               dilation_mm=acfg.dilation_mm)[None]

    return make


def model_input(norm: np.ndarray, att: np.ndarray | None, config: RunConfig) -> tuple[np.ndarray, list[float]]:
    """Network input channels ``(C, Z, Y, X)`` and their padding values, as in training.

    Attention models get a second channel, the attention map itself (what
    :class:`coroseg.data.sampling.PatchDataset` feeds in training); channel 0 is the image.
    Padding: the image's lowest normalised value, attention 0.
    """
    from coroseg.prior.attention import stack_attention

    cval = pad_value(config.intensity)
    if not config.attention:
        return norm[None], [cval]
    return stack_attention(norm, np.zeros_like(norm) if att is None else att), [cval, 0.0]


def thin_points(points: np.ndarray, cell: Sequence[int]) -> np.ndarray:
    """One point (the first) per cell of a lattice of ``cell`` voxels: fewer points, same places.

    Keeps crop clustering cheap when thousands of border voxels seed new crops; every dropped
    point lies within one cell of a kept one, i.e. within the crop margin.
    """
    pts = np.asarray(points, dtype=float).reshape(-1, 3)
    if len(pts) == 0:
        return pts
    c = np.maximum(np.asarray(cell, dtype=float), 1.0)
    _, first = np.unique(np.floor(pts / c).astype(np.int64), axis=0, return_index=True)
    return pts[np.sort(first)]


def crop_margin(patch_size: Sequence[int]) -> np.ndarray:
    """Border margin (voxels) per axis: ``max(2, size // 8)``, 0 for single-slice axes."""
    size = np.asarray(patch_size, dtype=np.int64)
    return np.where(size > 1, np.maximum(2, size // 8), 0)


def border_voxels(mask: np.ndarray, covered: np.ndarray, margin: Sequence[int]) -> np.ndarray:
    """Indices ``(N, 3)`` of vessel voxels within ``margin`` of the covered region's edge.

    The edge of the volume does not count: a vessel there has nowhere further to go. These
    are the places where a vessel may leave the crops, so they seed new crops.
    """
    from scipy import ndimage

    m = np.asarray(margin, dtype=np.int64)
    if not mask.any() or m.max() == 0:
        return np.zeros((0, 3))
    bb = bounding_box(mask)
    lo = np.maximum(np.array([b.start for b in bb]) - m - 1, 0)
    hi = np.array([b.stop for b in bb]) + m + 1
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    # erode the covered region by the margin (box structure, per-axis radius) with the outside
    # of the volume counting as covered; working on the mask's bounding box grown by the
    # margin gives the same answer at every mask voxel as eroding the whole volume
    pad_lo = np.maximum(lo - m, 0)
    pad_hi = hi + m
    big = tuple(slice(a, b) for a, b in zip(pad_lo, pad_hi))
    cov = covered[big]
    # a box erosion is a separable minimum filter: 1D passes instead of a (2m+1)^3 structure
    # (same result, ~40x faster at m = 6)
    interior = ndimage.minimum_filter(cov.view(np.uint8), size=tuple(2 * m + 1), mode="constant", cval=1).view(bool)
    inner = tuple(slice(a - b, a - b + (min(c, n) - a)) for a, b, c, n in zip(lo, pad_lo, hi, mask.shape))
    edge = mask[box] & ~interior[inner]
    return np.argwhere(edge).astype(float) + lo


def uncovered_points(points_idx: np.ndarray, starts: np.ndarray, shape: Sequence[int],
                     patch_size: Sequence[int], *, margin: Sequence[int] | None = None) -> np.ndarray:
    """Points not inside any crop's interior (crop shrunk by ``margin`` except at volume edges).

    A vessel point within ``margin`` voxels of a crop face that is not also a volume face is
    "at the crop border": the vessel may continue outside, so it needs its own crop.
    """
    pts = np.asarray(points_idx, dtype=float).reshape(-1, 3)
    if len(pts) == 0:
        return pts
    size = np.asarray(patch_size, dtype=float)
    if margin is None:
        margin = crop_margin(patch_size)
    margin = np.asarray(margin, dtype=float)
    dims = np.asarray(shape, dtype=float)
    st = np.asarray(starts, dtype=float).reshape(-1, 3)
    if len(st) == 0:
        return pts
    lo = np.where(st <= 0, -np.inf, st + margin)  # (M, 3)
    hi_face = st + size
    hi = np.where(hi_face >= dims, np.inf, hi_face - 1 - margin)
    r = np.round(pts)
    inside = np.zeros(len(pts), bool)
    for a, b in zip(lo, hi):
        inside |= np.all((r >= a) & (r <= b), axis=1)
    return pts[~inside]


def run_crops(norm, grid: Volume, graph: CenterlineGraph, model: torch.nn.Module, config: RunConfig, *,
              device: torch.device, batch_size: int = 8, iterate: bool = True, max_iterations: int = MAX_ITERATIONS,
              threshold: float = 0.5, info: StageInfo | None = None,
              max_vessel_fraction: float = MAX_VESSEL_FRACTION, max_crops: int | None = None,
              reach_mm: float | None = None, refine: int = REFINE_ROUNDS) -> tuple[Volume | None, CenterlineGraph]:
    """Stage 2: crop model at crop centres of ``graph``; returns probability and final prior graph.

    Parameters
    ----------
    norm : (Z, Y, X) ndarray of float32, or a patch source
        Normalised image on the model grid ``grid``, or
        :class:`coroseg.data.preprocess.ModelGridPatches` (resampled crop by crop).
    graph : CenterlineGraph
        The centerline prior (LPS mm).
    iterate : bool
        Re-extract the centerline from the result and add crops where vessels touch the border
        of the covered region (tracking the tree outwards), until nothing new is found, at most
        ``max_iterations`` extra rounds and ``max_crops`` crops in all.
    reach_mm : float, optional
        While iterating, pieces of the mask within this distance of its main trees count as
        tree too (:func:`coroseg.infer.postprocess.keep_main_components`), so a branch
        interrupted by a faint stretch is followed past the gap.
    refine : int
        Rounds of refinement after the tracking: the centerline is re-extracted from the
        stage-2 mask and every crop so far is run again with the attention drawn from it
        (the prior's false pieces that the crop model rejected drop out of the attention, and
        the rest is centred on the vessels the crop model found); each round replaces the
        previous probability.

    Returns
    -------
    prob : Volume or None
        Float32 probability on the sub-grid of ``grid`` bounding every crop (0 where no crop
        reached); ``None`` when no crop ran.
    graph : CenterlineGraph
        The prior used last (the input graph, or the re-extracted one after iterating).
    """
    info = info if info is not None else StageInfo()
    use_att = config.attention
    source = norm if hasattr(norm, "region") else ArrayPatches(norm)
    pad = pad_value(config.intensity)  # padding as in model_input: image pad, attention 0
    predictor = vessel_predictor(model)
    acc = CropAccumulator.empty(grid.shape)
    all_starts = np.zeros((0, 3), np.int64)
    points = centre_points(graph, grid)
    current = graph
    for it in range(1 + (max_iterations if iterate else 0)):
        t0 = time.perf_counter()
        starts = crop_starts(points, grid, config)
        if len(all_starts):  # never run the same crop twice
            seen = {tuple(s) for s in all_starts}
            starts = np.array([s for s in starts if tuple(s) not in seen], np.int64).reshape(-1, 3)
        starts = starts[: max(0, int(MAX_CROPS if max_crops is None else max_crops) - len(all_starts))]
        if len(starts) == 0:
            break
        extra = crop_attention(current, grid, config) if use_att else None
        t0 = info.tick("crop_centres", t0)
        predict_crops(source, starts, predictor, patch_size=config.patch_size, batch_size=batch_size,
                      device=device, cval=pad, accumulator=acc, extra_channels=extra, extra_cval=0.0)
        t0 = info.tick("crop_network", t0)
        all_starts = np.concatenate([all_starts, starts])
        info.iterations = it + 1
        if not iterate or it == max_iterations:
            break
        stage2 = _stage2_tree(acc, grid, config, threshold, reach_mm, max_vessel_fraction, info, "not iterating")
        if stage2 is None:
            break
        box, mask, covered_box, current = stage2
        margin = crop_margin(config.patch_size)
        lo = np.array([b.start for b in box])
        points = thin_points(np.concatenate([
            uncovered_points(centre_points(current, grid), all_starts, grid.shape, config.patch_size),
            border_voxels(mask, covered_box, margin) + lo]), margin)
        info.tick("crop_iterate_centerline", t0)
        if len(points) == 0:
            break
        log.debug("iteration %d: %d centerline points at crop borders", it + 1, len(points))
    if use_att:
        for _ in range(max(0, int(refine))):
            t0 = time.perf_counter()
            stage2 = _stage2_tree(acc, grid, config, threshold, reach_mm, max_vessel_fraction, info, "not refining")
            if stage2 is None or len(stage2[3]) == 0:
                break
            current = stage2[3]
            extra = crop_attention(current, grid, config)
            t0 = info.tick("crop_refine_centerline", t0)
            acc = predict_crops(source, all_starts, predictor, patch_size=config.patch_size, batch_size=batch_size,
                                device=device, cval=pad, accumulator=CropAccumulator.empty(grid.shape),
                                extra_channels=extra, extra_cval=0.0)
            info.tick("crop_network", t0)
    info.n_crops = int(len(all_starts))
    box = acc.box()
    if box is None:
        return None, current
    return sub_grid(grid, box).with_array(acc.probability(box), is_label=False), current


def _stage2_tree(acc: CropAccumulator, grid: Volume, config: RunConfig, threshold: float, reach_mm: float | None,
                 max_vessel_fraction: float, info: StageInfo, on_too_large: str):
    """The stage-2 mask's main trees and their centerline, on the crops' bounding box.

    Returns ``(box, mask, covered, graph)`` (``mask`` and ``covered`` over ``box``), or ``None``
    when the mask is empty or covers more than ``max_vessel_fraction`` of the volume (warned,
    ending with ``on_too_large``). The box is grown by the crop margin + 1, so its faces are
    either volume faces or at least a margin away from every vessel voxel: the same result as
    on the whole grid at a fraction of the cost.
    """
    from coroseg.prior.skeleton import centerline_from_mask

    box = acc.box(crop_margin(config.patch_size) + 1)
    if box is None:
        return None
    prob_box, covered_box = acc.blend(box)
    mask = keep_main_components(prob_box >= threshold, spacing=grid.spacing, reach_mm=reach_mm)
    if not mask.any():
        return None
    frac = float(mask.sum()) / float(np.prod(grid.shape))
    if frac > max_vessel_fraction:
        info.warn(f"stage-2 mask covers {100 * frac:.1f} % of the volume: {on_too_large}")
        return None
    tight = bounding_box(mask, pad=1)  # skeletonise only around the vessels, not the whole box
    graph = centerline_from_mask(sub_grid(sub_grid(grid, box), tight).with_array(
        mask[tight].astype(np.uint8), is_label=True))
    return box, mask, covered_box, graph


__all__ = ["run_grid", "locate", "locator_probability", "locator_mask", "run_crops", "centre_points", "crop_starts",
           "attention", "uncovered_points", "pad_value", "model_input", "crop_attention", "border_voxels",
           "crop_margin", "thin_points", "StageInfo", "MAX_VESSEL_FRACTION", "OVERLAP", "LOCATOR_KEEP_FRACTION",
           "LOCATOR_THRESHOLD", "LOCATOR_REACH_MM", "LOCATOR_TTA_FLIPS", "MAX_ITERATIONS", "MAX_CROPS",
           "LOCATOR_LOW_THRESHOLD", "REFINE_ROUNDS"]

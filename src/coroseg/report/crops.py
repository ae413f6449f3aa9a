"""The report's crop-vs-grid figures: where a crop model looks, against a fixed grid of tiles.

The crops are the ones ``coroseg predict`` runs first (:func:`coroseg.infer.stages.crop_starts`
on the model grid, the run's clustering and patch size), placed on the run's **automatic**
centerline (its locator, what a new scan gets), and drawn on the image grid. A run without a
locator, or whose locator finds nothing, gets the reference centerline instead and the figure
says **ORACLE**: a picture of the prior must not quietly show the ground truth's crops as if a
new scan would get them. The grid is a regular tiling of the whole scan with boxes of the same
physical size (what a grid model covers). The iterative stage of prediction adds crops where the
segmented vessel leaves the covered region; those are not drawn.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from coroseg.errors import CorosegError
from coroseg.io.volume import Volume

if TYPE_CHECKING:
    from coroseg.report.html import CaseFiles

log = logging.getLogger("coroseg.report.html")

__all__ = ["CropPlan", "crop_plan", "crop_figures", "crops_caption", "reference_centerline"]


class CropPlan(NamedTuple):
    """Boxes to draw on ``image`` (LPS-oriented, windowed to [0, 1]): centres ``(M, 3)`` in image voxels."""

    image: Volume
    label: Volume
    crops: np.ndarray
    grid: np.ndarray
    size: tuple[int, int, int]
    source: str  # "auto" or "oracle"
    why: str  # how the centerline was found, for the caption


def reference_centerline(case: CaseFiles):
    """``(graph, description)``: the dataset's centerline file, read against the label as stored (the
    frame of an ASOCA ``.vtp`` is resolved from it), else the ground truth's skeleton."""
    from coroseg.io.volume import read_volume
    from coroseg.prior.skeleton import centerline_from_mask

    label = read_volume(case.label, is_label=True)
    if case.centerline is not None:
        from coroseg.io.centerline_files import read_centerline

        return read_centerline(case.centerline, reference=label), f"the reference centerline ({case.centerline.name})"
    return centerline_from_mask(label), "the reference centerline (skeleton of the ground truth)"


def _load_locator(run_dir: Path, cfg):
    """The run's locator network on the CPU, or ``(None, why not)``."""
    from coroseg.models.registry import build_network
    from coroseg.models.run import load_weights

    if cfg.locator is None:
        return None, "this run has no locator network"
    try:
        net = build_network(cfg.locator.network)
        load_weights(net, run_dir / cfg.locator.weights)
    except CorosegError as exc:
        return None, f"the locator could not be loaded ({exc})"
    return net.eval(), ""


def _centerline(run_dir: Path, cfg, case: CaseFiles, image: Volume):
    """(graph, source, why): the locator's centerline on ``image`` when the run has one, else the reference."""
    import torch

    from coroseg.infer.stages import locate

    locator, why = _load_locator(run_dir, cfg)
    if locator is not None:
        with torch.inference_mode():
            _, graph = locate(image, locator, cfg.locator, device=torch.device("cpu"))
        if graph is not None and len(graph):
            return graph, "auto", "the run's automatic centerline (its locator network on this scan)"
        why = "the locator found no coronary tree on this scan"
    graph, ref = reference_centerline(case)
    return graph, "oracle", f"{why}, so {ref}"


def crop_plan(case: CaseFiles, run_dir: Path) -> CropPlan:
    """The first-pass crops of ``run_dir``'s crop model on ``case`` and a same-size grid, on the image grid."""
    from coroseg.infer.stages import centre_points, crop_starts
    from coroseg.io.resample import resampled_grid
    from coroseg.io.volume import grid_mismatch, orient_lps, read_volume, resample_to_grid
    from coroseg.models.run import read_config
    from coroseg.prior.grid import grid_tiles

    image = orient_lps(read_volume(case.image))
    label = orient_lps(read_volume(case.label, is_label=True))
    if grid_mismatch(image, label):
        label = resample_to_grid(label, image)
    cfg = read_config(run_dir)
    graph, source, why = _centerline(run_dir, cfg, case, image)
    grid = resampled_grid(image, cfg.spacing)
    patch = np.asarray(cfg.patch_size, dtype=float)
    starts = crop_starts(centre_points(graph, grid), grid, cfg)
    centres = np.round(image.world_to_index(grid.index_to_world(starts + (patch - 1) / 2))).astype(np.int64)
    size = tuple(int(min(n, max(1, round(p * m / s))))
                 for p, m, s, n in zip(patch, grid.spacing, image.spacing, image.shape))
    # the CTA window (-200..800 HU) applied once, flagged as a label so the figures show it as is
    shown = image.with_array(np.clip((image.array.astype(np.float32) + 200.0) / 1000.0, 0.0, 1.0), is_label=True)
    return CropPlan(shown, label, centres, grid_tiles(image.shape, size), size, source, why)


def crops_caption(plan: CropPlan) -> str:
    """What the crop figures show, which centerline placed the crops, and why it matters (plain text)."""
    src = "automatic centerline" if plan.source == "auto" else "ORACLE reference centerline"
    return (f"Where the networks look, on one test scan. Left: a fixed grid of {len(plan.grid)} tiles covering the "
            f"whole scan, as a grid model sees it. Right: the {len(plan.crops)} crops the crop model runs first, "
            f"placed on the {src}: {plan.why}. Both use boxes of "
            f"{' x '.join(str(s) for s in plan.size)} image voxels (the model's patch); red is the reference "
            f"vessel. Prediction adds crops where the vessel leaves the covered region (not drawn).")


def crop_figures(case: CaseFiles, run_dir: Path, fig_dir: Path) -> tuple[list[Path], CropPlan]:
    """A crop-vs-grid still (busiest slice) and the slice-scroll GIF of both, for one case."""
    from coroseg.prior import figures as pfig

    plan = crop_plan(case, run_dir)
    if not len(plan.crops):
        raise CorosegError("no crops: the centerline has no point inside the scan", case.image)
    title = "crops, automatic centerline" if plan.source == "auto" else "crops, ORACLE centerline"
    still = pfig.plot_crops_vs_grid(plan.image, plan.crops, plan.grid, plan.size,
                                    fig_dir / f"{case.case_id}_crops_vs_grid.png", label=plan.label, crop_title=title)
    gif = pfig.crops_vs_grid_gif(plan.image, plan.crops, plan.grid, plan.size,
                                 fig_dir / f"{case.case_id}_crops_vs_grid.gif", label=plan.label, crop_title=title,
                                 step=max(1, plan.size[0] // 8))
    return [still, gif], plan

"""The centerline prior: extraction from a mask, crop centres, grid baseline, attention channel.

Crop convention (all functions): a crop of ``size`` voxels centred at ``c`` spans
``[c - size // 2, c - size // 2 + size)`` along the array axes ``(k, j, i)``.
"""

from coroseg.prior.attention import add_attention, attention_channel, attention_from_points, stack_attention
from coroseg.prior.crops import centres_from_centerline, covered, crop_centres, crop_centres_2d
from coroseg.prior.figures import crops_gif, crops_vs_grid_gif, plot_crops_vs_grid
from coroseg.prior.grid import crop_slices, extract_patch, grid_tiles, paste_patch
from coroseg.prior.perturb import (
    Perturbation,
    apply_perturbation,
    centerline_overlap,
    perturb_centerline,
    sample_perturbation,
)
from coroseg.prior.skeleton import centerline_from_mask

__all__ = [
    "centerline_from_mask",
    "crop_centres", "crop_centres_2d", "centres_from_centerline", "covered",
    "grid_tiles", "extract_patch", "crop_slices", "paste_patch",
    "attention_channel", "attention_from_points", "add_attention", "stack_attention",
    "perturb_centerline", "sample_perturbation", "apply_perturbation", "Perturbation",
    "centerline_overlap",
    "plot_crops_vs_grid", "crops_gif", "crops_vs_grid_gif",
]

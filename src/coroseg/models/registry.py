"""Model registry: a name maps to dimensionality, sampler, input channels, patch size and network.

The four configurations of the prior work:

============== ==== ======== =================================================
name           dims sampler  input channels
============== ==== ======== =================================================
unet2d_grid    2    grid     1 (CT)
unet2d_crop    2    crop     2 (CT + centerline attention), 1 with attention=False
unet3d_grid    3    grid     1 (CT)
unet3d_crop    3    crop     2 (CT + centerline attention), 1 with attention=False
============== ==== ======== =================================================

"grid" models tile the whole volume; "crop" models see crops centred on clusters of
centerline points (see :mod:`coroseg.prior`). 2D models work on axial slices; their
``patch_size`` is written ``[1, H, W]`` (one slice in z).

Networks are MONAI :class:`monai.networks.nets.UNet` built from a plain dict (``net_cfg``)
stored in the run's ``config.json``, so a run can always be rebuilt.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from coroseg.choices import MODEL_NAMES
from coroseg.errors import CorosegError

#: default patch sizes, array order (z, y, x) voxels at the model spacing
PATCH_3D = [64, 64, 64]
PATCH_2D = [1, 128, 128]
#: default U-Net widths (5 levels, 4 down-samplings). About 4.8 M parameters in 3D: a batch of
#: 2 patches of 128^3 trains in < 8 GB with bf16 autocast; 64^3 patches train on a CPU.
CHANNELS = (16, 32, 64, 128, 256)
STRIDES = (2, 2, 2, 2)


def model_spec(name: str, *, attention: bool = True) -> dict:
    """Describe model ``name``.

    Returns
    -------
    dict
        ``{"name", "dims": 2|3, "sampler": "grid"|"crop", "attention": bool, "in_channels": 1|2,
        "patch_size": [z, y, x]}``. ``attention`` is always ``False`` for grid models.
    """
    if name not in MODEL_NAMES:
        raise CorosegError(f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}")
    dims = 2 if name.startswith("unet2d") else 3
    sampler = "crop" if name.endswith("_crop") else "grid"
    att = bool(attention) and sampler == "crop"
    return {"name": name, "dims": dims, "sampler": sampler, "attention": att,
            "in_channels": 2 if att else 1, "patch_size": list(PATCH_2D if dims == 2 else PATCH_3D)}


#: what a network setting and a grid may be (``--set`` options, and a run's config.json): the
#: limits keep a typo from allocating terabytes or building a 0-mm grid
MAX_PATCH = 512
MAX_LEVELS = 8
MAX_CHANNELS = 1024
MAX_STRIDE = 4
NORMS = ("instance", "batch")
SPACING_RANGE_MM = (0.05, 20.0)


def _whole(v, lo: int, hi: int) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and float(v).is_integer() and lo <= v <= hi


def _real(v, lo: float, hi: float) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and lo <= v <= hi


def network_problem(net_cfg) -> str | None:
    """Why ``net_cfg`` cannot build a network (expected vs found), or None when it can."""
    if not isinstance(net_cfg, dict):
        return f"expected an object, found {type(net_cfg).__name__}"
    if net_cfg.get("arch", "unet") != "unet":
        return f"arch {net_cfg.get('arch')!r}: expected 'unet'"
    ch = net_cfg.get("channels")
    checks = [
        ("spatial_dims", lambda v: v in (2, 3), "2 or 3"),
        ("in_channels", lambda v: v in (1, 2), "1 or 2"),
        ("out_channels", lambda v: v == 2, "2"),
        ("channels", lambda v: isinstance(v, list) and 2 <= len(v) <= MAX_LEVELS
         and all(_whole(c, 1, MAX_CHANNELS) for c in v), f"2 to {MAX_LEVELS} whole numbers from 1 to {MAX_CHANNELS}"),
        ("strides", lambda v: isinstance(v, list) and isinstance(ch, list) and len(v) == len(ch) - 1
         and all(_whole(s, 1, MAX_STRIDE) for s in v),
         "one whole number from 1 to 4 per channel level after the first"),
        ("num_res_units", lambda v: _whole(v, 0, 8), "a whole number from 0 to 8"),
        ("norm", lambda v: v in NORMS, "one of " + ", ".join(NORMS)),
        ("dropout", lambda v: _real(v, 0.0, 1.0), "a number from 0 to 1"),
    ]
    defaults = {"out_channels": 2, "num_res_units": 2, "norm": "instance", "dropout": 0.0}
    for key, ok, expected in checks:
        if key not in net_cfg and key in defaults:
            continue
        if key not in net_cfg:
            return f"lacks key {key!r}"
        if not ok(net_cfg[key]):
            return f"{key}={net_cfg[key]!r:.60}: expected {expected}"
    return None


def grid_problem(patch_size, spacing, dims: int | None = None) -> str | None:
    """Why a patch size / spacing pair is unusable, or None."""
    if not (isinstance(patch_size, list) and len(patch_size) == 3 and all(_whole(p, 1, MAX_PATCH) for p in patch_size)):
        return f"patch_size={patch_size!r:.60}: expected three whole numbers from 1 to {MAX_PATCH}"
    if dims == 2 and patch_size[0] != 1:
        return f"patch_size={patch_size!r}: a 2D model's patches are [1, y, x]"
    lo, hi = SPACING_RANGE_MM
    if not (isinstance(spacing, list) and len(spacing) == 3 and all(_real(s, lo, hi) for s in spacing)):
        return f"spacing={spacing!r:.60}: expected three numbers from {lo:g} to {hi:g} mm"
    return None


def network_config(spec: dict, *, channels: Sequence[int] = CHANNELS, strides: Sequence[int] | None = None,
                   num_res_units: int = 2, norm: str = "instance", dropout: float = 0.0) -> dict:
    """The ``net_cfg`` dict for :func:`build_network` matching a :func:`model_spec` result.

    ``strides`` defaults to 2 between every pair of levels (``len(channels) - 1`` of them).
    The in-plane patch size must be divisible by the product of the strides.
    """
    channels = [int(c) for c in channels]
    strides = [2] * (len(channels) - 1) if strides is None else [int(s) for s in strides]
    if len(strides) != len(channels) - 1:
        raise CorosegError(f"need {len(channels) - 1} strides for {len(channels)} channel levels, found {len(strides)}")
    return {"arch": "unet", "spatial_dims": int(spec["dims"]), "in_channels": int(spec["in_channels"]),
            "out_channels": 2, "channels": channels, "strides": strides,
            "num_res_units": int(num_res_units), "norm": str(norm), "dropout": float(dropout)}


def build_network(net_cfg: dict) -> torch.nn.Module:
    """Build the MONAI U-Net described by ``net_cfg`` (see :func:`network_config`).

    Input ``(N, C, [D,] H, W)`` float; output logits ``(N, 2, [D,] H, W)`` (background, vessel).
    """
    from monai.networks.nets import UNet

    try:
        arch = net_cfg.get("arch", "unet")
        if arch != "unet":
            raise CorosegError(f"unknown network architecture {arch!r}; expected 'unet'")
        return UNet(
            spatial_dims=int(net_cfg["spatial_dims"]),
            in_channels=int(net_cfg["in_channels"]),
            out_channels=int(net_cfg.get("out_channels", 2)),
            channels=tuple(int(c) for c in net_cfg["channels"]),
            strides=tuple(int(s) for s in net_cfg["strides"]),
            num_res_units=int(net_cfg.get("num_res_units", 2)),
            norm=net_cfg.get("norm", "instance"),
            dropout=float(net_cfg.get("dropout", 0.0)),
        )
    except KeyError as exc:
        raise CorosegError(f"network settings lack key {exc.args[0]!r}; found keys {sorted(net_cfg)}") from None


def n_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["MODEL_NAMES", "model_spec", "network_config", "build_network", "n_parameters", "CHANNELS", "STRIDES",
           "network_problem", "grid_problem", "MAX_PATCH", "MAX_LEVELS", "MAX_CHANNELS", "MAX_STRIDE", "NORMS",
           "SPACING_RANGE_MM"]

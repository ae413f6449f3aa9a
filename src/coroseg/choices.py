"""The fixed choices of the command line and the library, one enum each (``--help`` lists them).

Kept free of heavy imports so ``coroseg --help`` stays instant; the library's tuples of valid
names (``MODEL_NAMES``, ``PRESETS``, ``COORDS``) are made from these.
"""

from __future__ import annotations

from enum import Enum


class Architecture(str, Enum):
    """The networks ``coroseg train --model`` builds: 2D/3D U-Net x grid/centerline-crop sampling."""

    unet2d_grid = "unet2d_grid"
    unet2d_crop = "unet2d_crop"
    unet3d_grid = "unet3d_grid"
    unet3d_crop = "unet3d_crop"


class Device(str, Enum):
    """Where networks run (``cuda`` under torchrun: this process's GPU; pick GPUs with CUDA_VISIBLE_DEVICES)."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Precision(str, Enum):
    """Network arithmetic at inference: ``auto`` = bf16 on CUDA, fp32 on CPU."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


class Split(str, Enum):
    train = "train"
    val = "val"
    test = "test"
    all = "all"  # every case (what an installed model, trained on other data, is scored on)


class TestCenterline(str, Enum):
    """The prior ``coroseg test`` gives a crop model: its locator's, the ground truth's (ORACLE), none."""

    __test__ = False  # not a pytest test class
    auto = "auto"
    gt = "gt"
    none = "none"


class Preset(str, Enum):
    """Phantom sizes: ``small`` (~0.9 mm, <= 160^3) or ``asoca`` (512 x 512, 0.33-0.45 mm)."""

    small = "small"
    asoca = "asoca"


class Coords(str, Enum):
    """The frame of a ``.vtp`` file's points (see :mod:`coroseg.io.vtp`)."""

    lps = "lps"
    ras = "ras"
    image = "image"
    auto = "auto"


class ExportFormat(str, Enum):
    nnunet = "nnunet"


MODEL_NAMES = tuple(a.value for a in Architecture)

__all__ = ["Architecture", "Device", "Precision", "Split", "TestCenterline", "Preset", "Coords", "ExportFormat",
           "MODEL_NAMES"]

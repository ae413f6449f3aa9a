"""Builders for the bad-input catalogue: tiny volumes, hand-written headers, run folders.

Everything here is small (<= 24^3 voxels, 2-level U-Nets with 4/8 channels) so the whole
catalogue runs in seconds. Hand-written NRRD / MHA headers give exact control over what is
wrong (a header/data size mismatch, a zero spacing, a sheared direction) without relying on
a writer that refuses to write it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from coroseg.io.volume import Volume, write_volume

REPO = Path(__file__).resolve().parents[2]
SHARED = (REPO / ".." / "shared" / "data").resolve()
DICOM = SHARED / "real-ct" / "dicom-series"

SHAPE = (12, 14, 16)  # (Z, Y, X)


def image_array(shape=SHAPE, seed: int = 0) -> np.ndarray:
    """int16 HU: background ~40, a bright tube along z (so a threshold finds something)."""
    rng = np.random.default_rng(seed)
    arr = rng.normal(40.0, 10.0, shape)
    z, y, x = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    arr[(y - shape[1] / 2) ** 2 + (x - shape[2] / 2) ** 2 <= 4.0] = 450.0
    return arr.round().astype(np.int16)


def label_array(shape=SHAPE) -> np.ndarray:
    z, y, x = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    return ((y - shape[1] / 2) ** 2 + (x - shape[2] / 2) ** 2 <= 4.0).astype(np.uint8)


def write_image(path: Path, array: np.ndarray | None = None, spacing=(1.0, 1.0, 1.0), is_label=False) -> Path:
    arr = image_array() if array is None else array
    return write_volume(Volume(arr, spacing, (0.0, 0.0, 0.0), is_label=is_label), path, compress=False)


def raw_nrrd(path: Path, *, sizes_xyz=(4, 4, 4), data: bytes | None = None, dtype="short",
             directions=((1, 0, 0), (0, 1, 0), (0, 0, 1)), dimension: int = 3) -> Path:
    """A hand-written raw NRRD; ``data`` defaults to the right number of zero bytes."""
    n = int(np.prod(sizes_xyz))
    itemsize = {"short": 2, "float": 4, "uchar": 1}[dtype]
    if data is None:
        data = bytes(n * itemsize)
    dirs = " ".join("(" + ",".join(repr(float(v)) for v in d) + ")" for d in directions)
    header = (f"NRRD0004\ntype: {dtype}\ndimension: {dimension}\nspace: left-posterior-superior\n"
              f"sizes: {' '.join(str(s) for s in sizes_xyz)}\nspace directions: {dirs}\n"
              f"kinds: domain domain domain\nendian: little\nencoding: raw\n"
              f"space origin: (0,0,0)\n\n")
    path.write_bytes(header.encode() + data)
    return path


def raw_mha(path: Path, *, spacing_xyz=(1.0, 1.0, 1.0), sizes_xyz=(4, 4, 4)) -> Path:
    """A hand-written MetaImage with any ``ElementSpacing`` (zero / negative allowed)."""
    n = int(np.prod(sizes_xyz))
    header = ("ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
              "TransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = 0 0 0\n"
              f"ElementSpacing = {' '.join(str(s) for s in spacing_xyz)}\n"
              f"DimSize = {' '.join(str(s) for s in sizes_xyz)}\nElementType = MET_SHORT\n"
              "ElementDataFile = LOCAL\n")
    path.write_bytes(header.encode() + bytes(2 * n))
    return path


def sitk_write(path: Path, array: np.ndarray) -> Path:
    """Write any-dimensional ``array`` with SimpleITK (for 2D / 4D files)."""
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=False), str(path))
    return path


def run_folder(root: Path, *, model: str = "unet3d_grid") -> Path:
    """A complete run folder for ``predict``: tiny random MONAI U-Net, safetensors, config.json.

    No locator (crop models then need ``--centerline FILE``), 16^3 patches at 1 mm:
    predictions take a fraction of a second.
    """
    import torch

    from coroseg.models.registry import build_network, model_spec, network_config
    from coroseg.models.run import save_weights

    torch.manual_seed(0)
    run = root / "run"
    run.mkdir(parents=True)
    spec = model_spec(model)
    net_cfg = network_config(spec, channels=(4, 8), num_res_units=0)
    crop = model.endswith("_crop")
    cfg = {"coroseg_version": "test", "model": model, "dims": 3, "sampler": "crop" if crop else "grid",
           "attention": crop, "in_channels": 2 if crop else 1, "patch_size": [16, 16, 16], "spacing": [1.0, 1.0, 1.0],
           "intensity": {"clip": [-100.0, 600.0], "mean": 100.0, "std": 200.0}, "network": net_cfg,
           "attention_cfg": {"mode": "gaussian", "dilation_mm": 1.0, "weight": 1.0}, "crop": {"method": "kmeans"},
           "seed": 0, "locator": None, "status": "complete"}
    save_weights(build_network(net_cfg), run / "model.safetensors")
    (run / "config.json").write_text(json.dumps(cfg))
    return run


def split_dataset(root: Path, *, n_train: int = 2, n_val: int = 1, shape=(16, 16, 16)) -> Path:
    """``root/{train,val}/Normal/{CTCA,Annotations}/case_<i>.nrrd``: tube images and labels."""
    n = 0
    for split, count in (("train", n_train), ("val", n_val)):
        for _ in range(count):
            base = root / split / "Normal"
            write_image(base / "CTCA" / f"case_{n}.nrrd", image_array(shape, seed=n))
            write_image(base / "Annotations" / f"case_{n}.nrrd", label_array(shape), is_label=True)
            n += 1
    return root


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def snapshot(folder: Path | None) -> set[str]:
    """Relative paths of every file and folder under ``folder`` (empty set when missing)."""
    if folder is None or not folder.exists():
        return set()
    if folder.is_file():
        return {folder.name}
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


#: tiny training options: every train case starts and fails (or trains) in about a second
TINY_TRAIN = ["--set", "channels=[4,8]", "--set", "num_res_units=0", "--set", "patch_size=[16,16,16]",
              "--set", "samples_per_case=2", "--set", "locator=false", "--set", "augment=0"]

"""nnU-Net v2 raw export."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from coroseg.errors import GeometryError, InputError
from coroseg.eval.export import export_nnunet
from coroseg.io.volume import Volume, read_volume, write_volume

SP, ORIGIN = (0.625, 0.4, 0.45), (-10.0, 20.0, 30.0)
DIRECTION = np.diag([1.0, -1.0, 1.0])


@dataclasses.dataclass
class C:  # duck-typed like coroseg.data.layouts.Case
    case_id: str
    image: Path
    label: Path | None
    split: str | None


def make(tmp_path, cid, split, *, label=True, label_spacing=SP, value=1):
    rng = np.random.default_rng(len(cid))
    img = Volume(rng.integers(-1000, 1000, (6, 8, 10)).astype(np.int16), SP, ORIGIN, DIRECTION)
    ip = write_volume(img, tmp_path / "src" / f"{cid}.nrrd")
    lp = None
    if label:
        lab = np.zeros((6, 8, 10), np.uint8)
        lab[2:4, 3:5, 4:7] = value
        lp = write_volume(Volume(lab, label_spacing, ORIGIN, DIRECTION, is_label=True),
                          tmp_path / "src" / f"{cid}_seg.nrrd")
    return C(cid, ip, lp, split)


def test_export_layout_and_dataset_json(tmp_path):
    cases = [make(tmp_path, "Normal_1", "train"), make(tmp_path, "Normal_2", "val"),
             make(tmp_path, "Normal_3", "test"), make(tmp_path, "Diseased_1", "test", label=False)]
    root = export_nnunet(cases, tmp_path / "raw", progress=False)
    assert root == tmp_path / "raw" / "Dataset501_Coronary"
    umask = os.umask(0)
    os.umask(umask)
    assert root.stat().st_mode & 0o777 == 0o777 & ~umask  # staged in a private temp folder, published as usual
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == ["dataset.json", "imagesTr/Normal_1_0000.nii.gz", "imagesTr/Normal_2_0000.nii.gz",
                     "imagesTs/Diseased_1_0000.nii.gz", "imagesTs/Normal_3_0000.nii.gz",
                     "labelsTr/Normal_1.nii.gz", "labelsTr/Normal_2.nii.gz", "labelsTs/Normal_3.nii.gz",
                     "splits_final.json"]
    ds = json.loads((root / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": "CT"}
    assert ds["labels"] == {"background": 0, "coronary": 1}
    assert ds["numTraining"] == 2 and ds["file_ending"] == ".nii.gz"
    assert json.loads((root / "splits_final.json").read_text()) == [{"train": ["Normal_1"], "val": ["Normal_2"]}]
    # voxels and geometry survive exactly
    src, out = read_volume(cases[0].image), read_volume(root / "imagesTr" / "Normal_1_0000.nii.gz")
    assert np.array_equal(src.array, out.array) and out.array.dtype == np.int16
    assert src.same_grid(out, atol=1e-5)
    lab = read_volume(root / "labelsTr" / "Normal_1.nii.gz", is_label=True)
    assert lab.array.dtype == np.uint8 and lab.array.sum() == 12


def test_export_refuses_bad_input(tmp_path):
    with pytest.raises(InputError, match="train case 'a' has no label"):
        export_nnunet([make(tmp_path, "a", "train", label=False)], tmp_path / "raw")
    with pytest.raises(GeometryError, match=r"b_seg\.nrrd: label grid does not match image b\.nrrd: spacing"):
        export_nnunet([make(tmp_path, "b", "train", label_spacing=(1.0, 0.4, 0.45))], tmp_path / "raw",
                      progress=False)
    with pytest.raises(InputError, match=r"label values \[2\] found"):
        export_nnunet([make(tmp_path, "c", "train", value=2)], tmp_path / "raw", progress=False)
    d = make(tmp_path, "d", "train")
    with pytest.raises(InputError, match="'d' appears twice"):
        export_nnunet([d, d], tmp_path / "raw")
    with pytest.raises(InputError, match="dataset id must be 1..999, not 1000"):
        export_nnunet([d], tmp_path / "raw", dataset_id=1000)
    with pytest.raises(InputError, match="not a safe file name"):
        export_nnunet([C("../x", d.image, d.label, "train")], tmp_path / "raw")


def test_export_failing_late_leaves_no_files(tmp_path):
    """Two good cases, then a bad label: none of the exported files stays behind."""
    cases = [make(tmp_path, "e1", "train"), make(tmp_path, "e2", "test"), make(tmp_path, "e3", "train", value=2)]
    with pytest.raises(InputError, match=r"e3_seg\.nrrd: label values \[2\] found"):
        export_nnunet(cases, tmp_path / "raw", progress=False)
    assert not [p for p in (tmp_path / "raw").rglob("*") if p.is_file()]


def test_label_values_beyond_uint8_are_refused(tmp_path):
    lab = np.zeros((4, 4, 4), np.int16)
    lab[1, 1, 1] = 257  # would wrap to 1 in uint8
    p = write_volume(Volume(lab, SP, ORIGIN, DIRECTION), tmp_path / "wide.nrrd")
    with pytest.raises(InputError, match=r"wide\.nrrd: label values outside 0\.\.255 found \(0\.\.257\)"):
        read_volume(p, is_label=True)

"""Dataset discovery in the four layouts users have, and seeded splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coroseg.data.layouts import assign_splits, discover_cases, load_dataset
from coroseg.errors import InputError


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_split_layout(tmp_path: Path) -> None:
    for split, group, cid in [("train", "Normal", "n1"), ("train", "Diseased", "d1"), ("val", "Normal", "n2"),
                              ("test", "Diseased", "d2")]:
        base = tmp_path / split / group
        _touch(base / "CTCA" / f"{cid}.nrrd")
        _touch(base / "Annotations" / f"{cid}.nrrd")
        _touch(base / "Centerlines" / f"{cid}.vtp")
        _touch(base / "Centerlines" / f"{cid}.gml")
    layout, cases = discover_cases(tmp_path)
    assert layout == "split"
    assert [(c.case_id, c.split, c.group) for c in cases] == [
        ("d1", "train", "Diseased"), ("n1", "train", "Normal"), ("n2", "val", "Normal"), ("d2", "test", "Diseased")]
    assert all(c.centerline.suffix == ".vtp" for c in cases)  # .vtp preferred over .gml


def test_asoca_layout(tmp_path: Path) -> None:
    for group in ("Normal", "Diseased"):
        for i in (1, 2, 10):
            _touch(tmp_path / group / "CTCA" / f"{group}_{i}.nrrd")
            _touch(tmp_path / group / "Annotations" / f"{group}_{i}.nrrd")
    _touch(tmp_path / "Normal" / "Centerlines" / "Normal_1.vtp")
    layout, cases = discover_cases(tmp_path)
    assert layout == "asoca"
    ids = [c.case_id for c in cases]
    assert ids == ["Diseased_1", "Diseased_2", "Diseased_10", "Normal_1", "Normal_2", "Normal_10"]
    assert sum(c.centerline is not None for c in cases) == 1
    assert all(c.split is None for c in cases)


def test_imagecas_layout(tmp_path: Path) -> None:
    for n in (1, 2, 3):
        _touch(tmp_path / "part1" / f"{n}.img.nii.gz")
        _touch(tmp_path / "part1" / f"{n}.label.nii.gz")
    layout, cases = discover_cases(tmp_path)
    assert layout == "imagecas"
    assert [c.case_id for c in cases] == ["1", "2", "3"]
    assert all(c.label.name.endswith(".label.nii.gz") for c in cases)


def test_nnunet_layout(tmp_path: Path) -> None:
    for cid in ("cor_001", "cor_002"):
        _touch(tmp_path / "imagesTr" / f"{cid}_0000.nii.gz")
        _touch(tmp_path / "labelsTr" / f"{cid}.nii.gz")
    _touch(tmp_path / "imagesTs" / "cor_009_0000.nii.gz")
    layout, cases = discover_cases(tmp_path)
    assert layout == "nnunet"
    assert sorted(c.case_id for c in cases) == ["cor_001", "cor_002", "cor_009"]
    by_id = {c.case_id: c for c in cases}
    assert by_id["cor_009"].split == "test" and by_id["cor_009"].label is None
    assert by_id["cor_001"].label.name == "cor_001.nii.gz"


def test_unknown_layout(tmp_path: Path) -> None:
    _touch(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="no cases found"):
        discover_cases(tmp_path)


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="dataset folder not found"):
        discover_cases(tmp_path / "nope")


def test_seeded_split_is_saved_and_replayed(tmp_path: Path) -> None:
    for n in range(10):
        _touch(tmp_path / "data" / f"{n}.img.nii.gz")
        _touch(tmp_path / "data" / f"{n}.label.nii.gz")
    splits_file = tmp_path / "run" / "splits.json"
    a = load_dataset(tmp_path / "data", seed=3, splits_file=splits_file)
    counts = {s: sum(c.split == s for c in a) for s in ("train", "val", "test")}
    assert counts == {"train": 6, "val": 2, "test": 2}
    saved = json.loads(splits_file.read_text())
    assert sorted(saved["train"] + saved["val"] + saved["test"]) == sorted(str(n) for n in range(10))
    # a different seed replays the saved file, not a new draw
    b = load_dataset(tmp_path / "data", seed=99, splits_file=splits_file)
    assert [c.split for c in a] == [c.split for c in b]
    # without a file, the same seed gives the same split
    c = assign_splits([x.__class__(x.case_id, x.image, x.label) for x in a], seed=3)
    assert [x.split for x in c] == [x.split for x in a]


def test_missing_label_is_reported(tmp_path: Path) -> None:
    _touch(tmp_path / "Normal" / "CTCA" / "Normal_1.nrrd")
    with pytest.raises(InputError, match="case Normal_1 has no label file"):
        load_dataset(tmp_path)


def test_real_asoca_annotations_folder(shared: Path) -> None:
    # the shared folder has Annotations + Centerlines but no CTCA: no cases, clear error
    with pytest.raises(InputError, match="no cases found"):
        discover_cases(shared / "asoca-anatomy")

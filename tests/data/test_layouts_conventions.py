"""Dataset conventions people already use: nnU-Net's dataset.json / splits_final.json, and the
prior work's HCATNetwork graphs in ``Centerlines_graphs/`` (any case of ``.GML``), with
``coroseg info`` saying where each case's centerline comes from."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from coroseg.data.cache import load_centerline
from coroseg.data.layouts import discover_cases, load_dataset, read_nnunet_dataset
from coroseg.errors import InputError
from coroseg.info import describe, format_description
from coroseg.io.volume import Volume, read_volume, write_volume


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


# ---- nnU-Net raw -------------------------------------------------------------------------------
def _nnunet(root: Path, dataset: dict | None, *, ids=("cor_001", "cor_002", "cor_003", "cor_004"), ending=".nrrd",
            channels=("0000",), splits: list | None = None) -> Path:
    for cid in ids:
        for ch in channels:
            _touch(root / "imagesTr" / f"{cid}_{ch}{ending}")
        _touch(root / "labelsTr" / f"{cid}{ending}")
    _touch(root / "imagesTs" / f"cor_009_{channels[0]}{ending}")
    if dataset is not None:
        (root / "dataset.json").write_text(json.dumps(dataset))
    if splits is not None:
        (root / "splits_final.json").write_text(json.dumps(splits))
    return root


DATASET = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "calcium": 1, "coronary_artery": 2},
           "numTraining": 4, "file_ending": ".nrrd"}
FOLDS = [{"train": ["cor_001", "cor_003", "cor_004"], "val": ["cor_002"]},
         {"train": ["cor_001", "cor_002", "cor_004"], "val": ["cor_003"]}]


def test_nnunet_dataset_json_and_fold_0(tmp_path: Path) -> None:
    root = _nnunet(tmp_path, DATASET, splits=FOLDS)
    _touch(root / "imagesTr" / "cor_005_0000.nii.gz")  # another file ending: not a case of this dataset
    _touch(root / "labelsTr" / "cor_005.nii.gz")
    layout, cases = discover_cases(root)
    assert layout == "nnunet"
    assert [(c.case_id, c.split) for c in cases] == [
        ("cor_001", "train"), ("cor_003", "train"), ("cor_004", "train"), ("cor_002", "val"), ("cor_009", "test")]
    assert {c.label_values for c in cases} == {(2,)}  # "coronary_artery" is 2; "calcium" (1) is background
    by_id = {c.case_id: c for c in cases}
    assert by_id["cor_003"].image.name == "cor_003_0000.nrrd" and by_id["cor_003"].label.name == "cor_003.nrrd"
    # the splits are fold 0's, so no seeded split is drawn or written
    assert [c.split for c in load_dataset(root, require_labels=False, splits_file=tmp_path / "s.json")] == \
        [c.split for c in cases]
    assert not (tmp_path / "s.json").exists()
    info = describe(root)
    assert info["vessel_labels"] == [2]
    assert info["by_split_group"] == {"train/-": 3, "val/-": 1, "test/-": 1}


def test_nnunet_ct_channel_and_v1_labels(tmp_path: Path) -> None:
    dataset = {"modality": {"0": "noNorm", "1": "CT"}, "labels": {"0": "background", "1": "vessel"}}
    root = _nnunet(tmp_path, dataset, ending=".nii.gz", channels=("0000", "0001"))
    _, cases = discover_cases(root)
    assert sorted(c.case_id for c in cases) == ["cor_001", "cor_002", "cor_003", "cor_004"]  # imagesTs: no _0001
    assert all(c.image.name.endswith("_0001.nii.gz") for c in cases)
    assert {c.label_values for c in cases} == {(1,)}
    assert all(c.split is None for c in cases)  # no splits_final.json: coroseg's seeded split follows


@pytest.mark.parametrize("labels, values", [
    ({"background": 0, "LAD": 1}, (1,)),  # the one foreground label, whatever its name
    ({"background": 0, "left_coronary": 1, "right_coronary": 2, "ignore": 3}, (1, 2)),
    ({"background": 0, "vessels": [1, 2], "stenosis": 2}, (1, 2)),  # a region
    ({"background": 0, "foreground": 1}, (1,)),
])
def test_nnunet_vessel_label_values(tmp_path: Path, labels: dict, values: tuple) -> None:
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": labels}))
    assert read_nnunet_dataset(tmp_path).label_values == values


def test_nnunet_without_dataset_json_is_a_binary_mask(tmp_path: Path) -> None:
    root = _nnunet(tmp_path, None)
    info = read_nnunet_dataset(root)
    assert (info.file_ending, info.channel, info.label_values) == (None, 0, None)
    assert {c.label_values for c in discover_cases(root)[1]} == {None}


@pytest.mark.parametrize("dataset, splits, problem", [
    ({"labels": {"background": 0, "aorta": 1, "heart": 2}}, None,
     r"dataset\.json: labels aorta, heart: none is named like coronary, vessel, artery or foreground"),
    ({"file_ending": ".png"}, None, r"dataset\.json: file_ending '\.png' is not a volume format coroseg reads"),
    ({"channel_names": {"0": "T1", "1": "T2"}}, None,
     r"dataset\.json: 2 channels \(0: T1, 1: T2\) and none named CT; coroseg segments single-channel CT"),
    ({"labels": {"background": 0, "vessel": 1.5}}, None, r"dataset\.json: label 'vessel' has value 1\.5"),
    (None, [{"train": ["cor_001", "cor_002", "cor_003"], "val": []}],
     r"splits_final\.json: case cor_004 of imagesTr is in neither train nor val of fold 0"),
    (None, [{"train": ["cor_001", "cor_002", "cor_003", "cor_004"], "val": ["cor_077"]}],
     r"splits_final\.json: fold 0 lists case cor_077, which imagesTr does not hold"),
    (None, {"train": []}, r"splits_final\.json: expected a list of folds"),
], ids=["no_vessel_label", "file_ending", "no_ct_channel", "label_value", "case_not_in_fold",
        "unknown_case", "not_folds"])
def test_nnunet_errors_name_the_file(tmp_path: Path, dataset, splits, problem: str) -> None:
    root = _nnunet(tmp_path, dataset, splits=splits)
    with pytest.raises(InputError, match=problem):
        discover_cases(root)


# ---- the prior work's Centerlines_graphs ----------------------------------------------------
ORIGIN = (-100.0, -120.0, 50.0)  # LPS mm; an ASOCA-like identity direction
SPACING = (1.0, 0.5, 0.5)  # (z, y, x)
IJK = np.array([[i, 8, 6] for i in range(2, 13)], dtype=float)  # (i, j, k) of the vessel's voxels


def _hcat_gml(path: Path, points: np.ndarray, radius: float = 0.75) -> None:
    """An HCATNetwork SimpleCenterlineGraph as its save_graph writes it: string attributes, no frame."""
    g = nx.Graph(image_id="Normal_1", are_left_right_disjointed="1")
    for n, p in enumerate(points):
        topo = "OSTIUM" if n == 0 else "ENDPOINT" if n == len(points) - 1 else "SEGMENT"
        g.add_node(str(n), x=str(p[0]), y=str(p[1]), z=str(p[2]), r=str(radius), t="0.0",
                   topology=f"ArteryNodeTopology.{topo}", side="ArteryNodeSide.LEFT")
    for n in range(len(points) - 1):
        g.add_edge(str(n), str(n + 1), weight=str(float(np.linalg.norm(points[n + 1] - points[n]))))
    path.parent.mkdir(parents=True, exist_ok=True)
    nx.write_gml(g, path)


def _prior_work_dataset(root: Path) -> Path:
    arr = np.zeros((12, 16, 20), np.uint8)
    arr[6, 8, 2:13] = 1
    mask = Volume(arr, SPACING, ORIGIN, is_label=True)
    group = root / "Normal"
    for cid in ("Normal_1", "Normal_2", "Normal_3"):
        write_volume(mask.with_array(arr.astype(np.int16), is_label=False), group / "CTCA" / f"{cid}.nrrd")
        write_volume(mask, group / "Annotations" / f"{cid}.nrrd")
    # ASOCA's centerline frame, by hand: (-o_x, -o_y, o_z) + (i s_x, j s_y, k s_z)
    image_frame = np.array([-ORIGIN[0], -ORIGIN[1], ORIGIN[2]]) + IJK * np.array(SPACING[::-1])
    _hcat_gml(group / "Centerlines_graphs" / "Normal_1.GML", image_frame)
    _hcat_gml(group / "Centerlines_graphs" / "Normal_1_0.5mm.GML", image_frame[::2])
    _hcat_gml(group / "Centerlines_graphs" / "Normal_2_0.5mm.gml", image_frame[::2])  # only the resampled one
    return root


def test_centerlines_graphs_are_the_cases_centerlines(tmp_path: Path) -> None:
    root = _prior_work_dataset(tmp_path / "ASOCA")
    layout, cases = discover_cases(root)
    assert layout == "asoca"
    by_id = {c.case_id: c for c in cases}
    assert by_id["Normal_1"].centerline.name == "Normal_1.GML"
    assert by_id["Normal_2"].centerline.name == "Normal_2_0.5mm.gml"
    assert by_id["Normal_3"].centerline is None
    # read into LPS with the label as reference: exactly the voxel centres of the vessel
    label = read_volume(by_id["Normal_1"].label, is_label=True)
    graph, source = load_centerline(by_id["Normal_1"], label)
    assert source == "file" and len(graph) == 11 and len(graph.ostia()) == 1
    lps = np.array(ORIGIN) + IJK * np.array(SPACING[::-1])
    np.testing.assert_allclose(graph.positions()[np.lexsort(graph.positions().T)], lps[np.lexsort(lps.T)],
                               atol=1e-9)
    assert np.all(graph.radii() == 0.75)
    graph, source = load_centerline(by_id["Normal_3"], label)
    assert source == "label" and len(graph) > 5


def test_a_centerline_in_a_frame_that_misses_the_image_is_refused(tmp_path: Path) -> None:
    root = _prior_work_dataset(tmp_path / "ASOCA")
    gml = root / "Normal" / "Centerlines_graphs" / "Normal_1.GML"
    _hcat_gml(gml, np.array(ORIGIN) + IJK * 0.5 + 500.0)  # in no frame of this image
    case = {c.case_id: c for c in discover_cases(root)[1]}["Normal_1"]
    with pytest.raises(InputError, match=r"Normal_1\.GML: 11 of 11 centerline points lie outside the image"):
        load_centerline(case, read_volume(case.label, is_label=True))


def test_info_says_where_each_centerline_comes_from(tmp_path: Path) -> None:
    root = _prior_work_dataset(tmp_path / "ASOCA")
    info = describe(root)
    assert info["case_centerline"] == {"Normal_1": "Normal/Centerlines_graphs/Normal_1.GML",
                                          "Normal_2": "Normal/Centerlines_graphs/Normal_2_0.5mm.gml",
                                          "Normal_3": "extracted from the mask"}
    assert info["centerline_from"] == {"Centerlines_graphs/*.GML": 1, "Centerlines_graphs/*.gml": 1,
                                          "extracted from the mask": 1}
    from typer.testing import CliRunner

    from coroseg.cli import app

    res = CliRunner().invoke(app, ["info", str(root)])
    assert res.exit_code == 0, res.output
    assert "Normal_1: Normal/Centerlines_graphs/Normal_1.GML" in res.output
    assert "Normal_3: extracted from the mask" in res.output
    assert res.output.rstrip("\n") == format_description(info)


def test_centerline_preference_in_centerlines_folder(tmp_path: Path) -> None:
    group = tmp_path / "Normal"
    for cid in ("n1", "n2", "n3", "n4", "n5", "n6"):
        _touch(group / "CTCA" / f"{cid}.nrrd")
        _touch(group / "Annotations" / f"{cid}.nrrd")
    _touch(group / "Centerlines" / "n1.GML")
    _touch(group / "Centerlines" / "n1.vtk")
    _touch(group / "Centerlines" / "n2.mrk.json")
    _touch(group / "Centerlines" / "n3" / "Curve_1.mrk.json")  # Slicer: one file per curve
    _touch(group / "Centerlines" / "n5.gml")
    _touch(group / "Centerlines_graphs" / "n4.GML")
    _touch(group / "Centerlines_graphs" / "n5.GML")
    _touch(group / "Centerlines" / "n6" / "notes.txt")  # a folder without curves is no centerline
    found = {c.case_id: c.centerline for c in discover_cases(tmp_path)[1]}
    assert {k: (None if v is None else v.relative_to(group).as_posix()) for k, v in found.items()} == {
        "n1": "Centerlines/n1.vtk", "n2": "Centerlines/n2.mrk.json", "n3": "Centerlines/n3",
        "n4": "Centerlines_graphs/n4.GML", "n5": "Centerlines/n5.gml", "n6": None}
    kinds = describe(tmp_path)["centerline_from"]
    assert kinds["Centerlines/<id>/*.mrk.json"] == 1 and kinds["extracted from the mask"] == 1

"""``predict --format``: the mask as a 3D Slicer segmentation (``<id>_seg.seg.nrrd``) or any volume
format, on the input's exact grid; the default keeps the input's extension."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from coroseg.errors import CorosegError
from coroseg.infer.files import complete_cases, predict
from coroseg.infer.outputs import OUTPUT_FORMATS, output_extensions
from coroseg.io.volume import Volume, read_volume, write_volume

OBLIQUE = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize("name, fmt, expected", [
    ("a.nii.gz", "input", (".nii.gz", ".nii.gz")),
    ("a.nhdr", "input", (".nrrd", ".nrrd")),
    ("a.seg.nrrd", "input", (".nrrd", ".nrrd")),  # a segmentation as input: plain outputs
    ("a.nii.gz", "seg.nrrd", (".seg.nrrd", ".nrrd")),  # a probability map is no segmentation
    ("a.mha", "nii.gz", (".nii.gz", ".nii.gz")),
    ("a.nrrd", "mha", (".mha", ".mha")),
    ("series", "dicom-seg", (".dcm", ".nii.gz")),  # a DICOM SEG of the series; the probability map as NIfTI
])
def test_output_extensions_known_answers(name: str, fmt: str, expected: tuple[str, str]) -> None:
    assert output_extensions(name, fmt) == expected


def test_unknown_format_is_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(CorosegError, match=r"--format must be one of input, nii\.gz, nii, nrrd, mha, seg\.nrrd, "
                                           r"dicom-seg, not 'stl'"):
        predict(tmp_path / "no-run", tmp_path / "no-scan.nrrd", tmp_path / "out", output_format="stl")
    assert not (tmp_path / "out").exists()
    assert OUTPUT_FORMATS[0] == "input"


def test_predict_writes_a_slicer_segmentation_on_the_input_grid(tmp_path: Path, fake_run, phantom) -> None:
    image, _, _ = phantom
    scan = Volume(image.array, (1.1, 0.9, 0.8), (-41.5, 17.25, 96.0), OBLIQUE)
    src = write_volume(scan, tmp_path / "in" / "case_3.nii.gz")
    ref = read_volume(src)
    out = tmp_path / "out"
    [summary] = predict(fake_run("unet3d_grid"), src, out, device="cpu", progress=False, save_prob=True,
                        output_format="seg.nrrd")
    assert summary["files"]["seg"] == "case_3_seg.seg.nrrd"
    assert summary["files"]["prob"] == "case_3_prob.nrrd"
    img = sitk.ReadImage(str(out / "case_3_seg.seg.nrrd"))
    assert img.GetMetaData("Segment0_Name") == "Coronary arteries"
    assert img.GetMetaData("Segment0_LabelValue") == "1"
    assert "SCT^41801008^Coronary artery" in img.GetMetaData("Segment0_Tags")
    seg = read_volume(out / "case_3_seg.seg.nrrd", is_label=True)
    assert seg.shape == ref.shape and seg.spacing == ref.spacing
    np.testing.assert_allclose(seg.origin, ref.origin, rtol=0, atol=1e-6)  # NIfTI stores float32
    np.testing.assert_allclose(seg.direction, ref.direction, rtol=0, atol=1e-6)
    assert set(np.unique(seg.array)) <= {0, 1} and seg.array.any()
    # Segment0_Extent is the mask's voxel box (ITK order i0 i1 j0 j1 k0 k1)
    k, j, i = np.nonzero(seg.array)
    assert img.GetMetaData("Segment0_Extent") == f"{i.min()} {i.max()} {j.min()} {j.max()} {k.min()} {k.max()}"
    prob = read_volume(out / "case_3_prob.nrrd")
    assert prob.array.dtype == np.float32 and prob.shape == ref.shape
    # the case is complete under its own name, and its files are what summary.json lists
    assert complete_cases(out)["case_3_seg.seg.nrrd"] == "case_3"
    listed = json.loads((out / "summary.json").read_text())["cases"][0]["files"]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".") and p.name != "summary.json") == \
        sorted(listed.values())


def test_default_format_keeps_the_input_extension(tmp_path: Path, fake_run, phantom) -> None:
    image, _, _ = phantom
    src = write_volume(image, tmp_path / "in" / "case_4.mha")
    [summary] = predict(fake_run("unet3d_grid"), src, tmp_path / "out", device="cpu", progress=False)
    assert summary["files"]["seg"] == "case_4_seg.mha"


def test_cli_offers_the_format_option() -> None:
    from typer.testing import CliRunner

    from coroseg.cli import app

    res = CliRunner().invoke(app, ["predict", "--help"], terminal_width=200)
    assert res.exit_code == 0
    assert "--format" in res.output and "seg.nrrd" in res.output and "dicom-seg" in res.output


# ---- --format dicom-seg: a DICOM SEG of a DICOM series input --------------------------------------
def _has_highdicom() -> bool:
    import importlib.util

    return importlib.util.find_spec("highdicom") is not None


def _series(phantom, tmp_path: Path, dicom_series, name: str = "case_5") -> Path:
    image, _, _ = phantom
    scan = Volume(image.array, (1.1, 0.9, 0.8), (-41.5, 17.25, 96.0), OBLIQUE)  # right-handed, as DICOM needs
    return dicom_series(scan, tmp_path / "in" / name)


@pytest.mark.skipif(not _has_highdicom(), reason="highdicom is not installed (pip install 'coroseg[dicom]')")
def test_predict_writes_a_dicom_seg_holding_the_prediction(tmp_path: Path, fake_run, phantom, dicom_series) -> None:
    import highdicom as hd
    import pydicom

    series = _series(phantom, tmp_path, dicom_series)
    run = fake_run("unet3d_grid")
    predict(run, series, tmp_path / "nifti", device="cpu", progress=False, output_format="nii.gz")
    [summary] = predict(run, series, tmp_path / "out", device="cpu", progress=False, save_prob=True,
                        output_format="dicom-seg")
    assert summary["files"]["seg"] == "case_5_seg.dcm" and summary["files"]["prob"] == "case_5_prob.nii.gz"
    assert complete_cases(tmp_path / "out")["case_5_seg.dcm"] == "case_5"
    mask = read_volume(tmp_path / "nifti" / "case_5_seg.nii.gz", is_label=True)
    assert mask.array.any()
    ct = read_volume(series)
    sources = sorted((pydicom.dcmread(f, stop_before_pixels=True) for f in series.iterdir()),
                     key=lambda ds: ct.world_to_index(np.array(ds.ImagePositionPatient, float))[0, 0])
    seg = hd.seg.segread(tmp_path / "out" / "case_5_seg.dcm")
    assert int(seg.NumberOfFrames) == ct.shape[0] and (seg.Rows, seg.Columns) == ct.shape[1:]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert seg.SegmentSequence[0].SegmentLabel == "Coronary arteries"
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "coroseg" and "model=unet3d_grid" in algorithm.AlgorithmParameters
    pixels = seg.get_pixels_by_source_instance([s.SOPInstanceUID for s in sources], segment_numbers=[1])
    np.testing.assert_array_equal(pixels[..., 0], mask.array)  # the SEG holds exactly the prediction


def test_dicom_seg_refuses_what_is_no_dicom_series_before_any_work(tmp_path: Path, phantom, dicom_series) -> None:
    image, _, _ = phantom
    src = write_volume(image, tmp_path / "in" / "case_6.nii.gz")
    with pytest.raises(CorosegError, match=r"case_6\.nii\.gz: --format dicom-seg needs a DICOM series folder as "
                                           r"input \(a DICOM SEG references its source images\); this is a volume"):
        predict(tmp_path / "no-run", src, tmp_path / "out", output_format="dicom-seg")
    series = _series(phantom, tmp_path, dicom_series)
    with pytest.raises(CorosegError, match=r"case_5: --format dicom-seg would add a second DICOM series to the "
                                           r"series folder; choose another --output"):
        predict(tmp_path / "no-run", series, series, output_format="dicom-seg")
    assert not (tmp_path / "out").exists() and len(list(series.iterdir())) == image.shape[0]


def test_dicom_seg_without_highdicom_is_one_line_saying_what_to_install(tmp_path: Path, phantom, dicom_series,
                                                                         monkeypatch, capfd) -> None:
    import sys

    from coroseg.cli import main

    series = _series(phantom, tmp_path, dicom_series)
    monkeypatch.setitem(sys.modules, "highdicom", None)  # import highdicom raises ImportError
    capfd.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "-i", str(series), "-o", str(tmp_path / "out"), "--format", "dicom-seg"])
    err = capfd.readouterr().err
    assert exit_.value.code == 2
    assert err.strip().splitlines() == [
        'coroseg: error: --format dicom-seg needs highdicom, which is not installed: pip install "coroseg[dicom]"']
    assert not (tmp_path / "out").exists()


def test_prior_centerline_from_a_slicer_folder_or_a_legacy_vtk(tmp_path: Path, fake_run, phantom) -> None:
    """Wherever a centerline file is accepted, a folder of Slicer curves (one per file) and a
    legacy .vtk give the same prior, so the same segmentation as the graph itself."""
    from coroseg.infer import predict_volume
    from coroseg.io.slicer import curves_document
    from coroseg.io.vtp import graph_polylines

    image, _, gt = phantom
    folder = tmp_path / "curves"
    folder.mkdir()
    doc = curves_document(gt)
    for n, curve in enumerate(doc["markups"]):
        (folder / f"Curve_{n}.mrk.json").write_text(json.dumps({**doc, "markups": [curve]}))
    paths, radii = graph_polylines(gt)
    pts = [gt.graph.nodes[i]["pos"] for p in paths for i in p]
    sizes = [len(p) for p in paths]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    cells = "\n".join(f"{k} " + " ".join(str(s + i) for i in range(k)) for s, k in zip(starts, sizes))
    (tmp_path / "cl.vtk").write_text(
        "# vtk DataFile Version 4.2\n3D Slicer output. SPACE=LPS\nASCII\nDATASET POLYDATA\n"
        f"POINTS {len(pts)} double\n" + "\n".join(" ".join(repr(float(v)) for v in p) for p in pts) + "\n"
        f"LINES {len(paths)} {sum(sizes) + len(paths)}\n{cells}\n"
        f"POINT_DATA {len(pts)}\nSCALARS Radius double\nLOOKUP_TABLE default\n"
        + " ".join(repr(float(r)) for r in np.concatenate(radii)) + "\n")
    run = fake_run("unet3d_crop")
    given = predict_volume(run, image, centerline=gt, centerline_source="oracle")
    for prior in (folder, tmp_path / "cl.vtk"):
        got = predict_volume(run, image, centerline=prior)
        assert got.info["centerline_source"] == "file"
        np.testing.assert_array_equal(got.seg.array, given.seg.array)

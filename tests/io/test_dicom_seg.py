"""DICOM SEG output (:mod:`coroseg.io.dicom_seg`): a series in, a binary SEG of it out, read back with
highdicom and pydicom. Skipped without highdicom (the ``coroseg[dicom]`` extra; ``.[dev]`` has it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from coroseg import __version__
from coroseg.errors import InputError
from coroseg.io.volume import Volume, read_volume

hd = pytest.importorskip("highdicom", reason="highdicom is not installed (pip install 'coroseg[dicom]')")
import pydicom  # noqa: E402  (comes with highdicom)

from coroseg.io.dicom_seg import ARTERY_CIELAB, write_dicom_seg  # noqa: E402

#: a quarter turn about z: rows run along -x, columns along +y (right-handed, as DICOM needs)
TURNED = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
SHAPE = (5, 12, 10)  # (Z, Y, X)
MODEL = {"model_name": "crop", "model_version": "1.2", "model_sha256": "ab" * 32}


@pytest.fixture
def series(tmp_path: Path, dicom_series) -> Path:
    image = Volume(np.random.default_rng(0).normal(40.0, 10.0, SHAPE), (1.25, 0.8, 0.7), (-20.5, 11.0, 40.0),
                   TURNED)
    return dicom_series(image, tmp_path / "ct")


def box(shape=SHAPE) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[1:4, 3:8, 2:6] = 1
    return mask


def sources_in_slice_order(folder: Path, ct: Volume) -> list:
    """The series' datasets ordered by their slice index on ``ct``'s grid (the files run backwards)."""
    dss = [pydicom.dcmread(p) for p in sorted(folder.iterdir())]
    return sorted(dss, key=lambda ds: ct.world_to_index(np.array(ds.ImagePositionPatient, float))[0, 0])


def code(item) -> tuple[str, str, str]:
    return item.CodingSchemeDesignator, item.CodeValue, item.CodeMeaning


def test_seg_of_a_series_names_what_and_who(series: Path, tmp_path: Path) -> None:
    ct = read_volume(series)
    path = write_dicom_seg(ct.with_array(box(), is_label=True), series, tmp_path / "out" / "ct_seg.dcm", model=MODEL)
    seg = hd.seg.segread(path)
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and seg.SegmentationType == "BINARY"
    [segment] = seg.SegmentSequence
    assert segment.SegmentNumber == 1 and segment.SegmentLabel == "Coronary arteries"
    assert segment.SegmentAlgorithmType == "AUTOMATIC"
    assert code(segment.SegmentedPropertyCategoryCodeSequence[0]) == ("SCT", "91723000", "Anatomical Structure")
    assert code(segment.SegmentedPropertyTypeCodeSequence[0]) == ("SCT", "41801008", "Coronary artery")
    assert list(segment.RecommendedDisplayCIELabValue) == list(ARTERY_CIELAB)
    if hasattr(hd.color.CIELabColor, "from_rgb"):  # the constant is Slicer's artery colour (216, 101, 79)
        assert tuple(hd.color.CIELabColor.from_rgb(216, 101, 79).value) == ARTERY_CIELAB
    [algorithm] = segment.SegmentationAlgorithmIdentificationSequence
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("coroseg", __version__)
    assert code(algorithm.AlgorithmFamilyCodeSequence[0]) == ("DCM", "123110", "Artificial Intelligence")
    for part in ("model=crop", "model_version=1.2", f"weights_sha256={'ab' * 32}"):
        assert part in algorithm.AlgorithmParameters
    assert (seg.Manufacturer, seg.ManufacturerModelName, seg.SoftwareVersions) == ("coroseg", "crop", __version__)


def test_seg_frames_lie_on_the_source_slices_and_hold_the_mask(series: Path, tmp_path: Path) -> None:
    ct = read_volume(series)
    mask = box()
    path = write_dicom_seg(ct.with_array(mask, is_label=True), series, tmp_path / "ct_seg.dcm", model=MODEL)
    sources = sources_in_slice_order(series, ct)
    seg = hd.seg.segread(path)
    # one new series in the source's study and frame of reference, referencing every source image
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert seg.SeriesInstanceUID != sources[0].SeriesInstanceUID
    [ref] = seg.ReferencedSeriesSequence
    assert ref.SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in ref.ReferencedInstanceSequence} == {s.SOPInstanceUID for s in sources}
    # every slice a frame (empty ones too), on the source's grid
    assert int(seg.NumberOfFrames) == SHAPE[0] and (seg.Rows, seg.Columns) == SHAPE[1:]
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    np.testing.assert_allclose([float(v) for v in measures.PixelSpacing], [0.8, 0.7])
    orientation = seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
    np.testing.assert_allclose([float(v) for v in orientation], [0, 1, 0, -1, 0, 0], atol=1e-6)
    by_uid = {s.SOPInstanceUID: s for s in sources}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        source = by_uid[frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        np.testing.assert_allclose([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient],
                                   [float(v) for v in source.ImagePositionPatient], atol=1e-4)
    # the voxels, slice by slice in the source's order, are the mask's
    pixels = seg.get_pixels_by_source_instance([s.SOPInstanceUID for s in sources], segment_numbers=[1])
    np.testing.assert_array_equal(pixels[..., 0], mask)


def test_an_empty_mask_is_still_a_seg_of_every_slice(series: Path, tmp_path: Path) -> None:
    ct = read_volume(series)
    path = write_dicom_seg(ct.with_array(np.zeros(SHAPE, np.uint8), is_label=True), series, tmp_path / "e.dcm")
    seg = pydicom.dcmread(path)
    assert int(seg.NumberOfFrames) == SHAPE[0]
    assert seg.ManufacturerModelName == "unknown"  # no model named: said so, not invented
    assert not hd.seg.segread(path).get_pixels_by_source_instance(
        [s.SOPInstanceUID for s in sources_in_slice_order(series, ct)], segment_numbers=[1]).any()


def test_a_mask_on_another_grid_is_refused(series: Path, tmp_path: Path) -> None:
    wrong = Volume(np.zeros((5, 10, 12), np.uint8), (1.25, 0.8, 0.7), (-20.5, 11.0, 40.0), TURNED, is_label=True)
    with pytest.raises(InputError, match=r"ct: DICOM file slice_\d+\.dcm is 12 x 10 pixels; the series was read as "
                                         r"10 x 12"):
        write_dicom_seg(wrong, series, tmp_path / "x.dcm")
    shifted = read_volume(series)
    shifted = Volume(box(), shifted.spacing, tuple(np.add(shifted.origin, (0.0, 0.0, 0.5))), shifted.direction)
    with pytest.raises(InputError, match=r"does not lie on the series' grid \(at index -0\.40"):
        write_dicom_seg(shifted, series, tmp_path / "x.dcm")
    assert not (tmp_path / "x.dcm").exists()


def test_a_series_without_frame_of_reference_is_one_clear_error(tmp_path: Path, dicom_series) -> None:
    image = Volume(np.zeros(SHAPE), (1.25, 0.8, 0.7), (0.0, 0.0, 0.0), TURNED)
    folder = dicom_series(image, tmp_path / "nofor", frame_of_reference=False)
    mask = read_volume(folder).with_array(box(), is_label=True)
    with pytest.raises(InputError, match=r"nofor: DICOM file slice_\d+\.dcm has no FrameOfReferenceUID \(0020,0052\) "
                                         r"\(emptied by an anonymiser\?\); a DICOM SEG must reference it"):
        write_dicom_seg(mask, folder, tmp_path / "x.dcm")
    assert list(tmp_path.glob("*.dcm")) == [] and list(tmp_path.glob(".x.dcm*")) == []


def test_the_anonymised_real_series_is_refused_in_one_line(shared: Path, tmp_path: Path) -> None:
    """The reference series' anonymiser emptied its SOP, study and series UIDs: nothing to reference."""
    folder = shared / "real-ct" / "dicom-series"
    mask = read_volume(folder).with_array(np.zeros((20, 512, 512), np.uint8), is_label=True)
    with pytest.raises(InputError, match=r"dicom-series: DICOM file .* has no SOPClassUID \(0008,0016\)"):
        write_dicom_seg(mask, folder, tmp_path / "x.dcm")


def test_seg_of_the_real_series(shared: Path, tmp_path: Path) -> None:
    """A scanner's series (20 axial 512 x 512 JPEG 2000 slices), not one GDCM wrote, its emptied UIDs
    filled in (from the file meta, or new): frames and voxels line up."""
    folder = tmp_path / "real"
    folder.mkdir()
    study, series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    for f in sorted((shared / "real-ct" / "dicom-series").iterdir()):
        ds = pydicom.dcmread(f)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.save_as(folder / f.name)
    ct = read_volume(folder)
    mask = np.zeros(ct.shape, np.uint8)
    mask[3:17, 200:260, 240:300] = 1
    mask[5, 100, 100] = 1  # one voxel: the row/column order must be the source's
    path = write_dicom_seg(ct.with_array(mask, is_label=True), folder, tmp_path / "real_seg.dcm", model=MODEL)
    seg = hd.seg.segread(path)
    assert int(seg.NumberOfFrames) == 20 and (seg.Rows, seg.Columns) == (512, 512)
    sources = sources_in_slice_order(folder, ct)
    pixels = seg.get_pixels_by_source_instance([s.SOPInstanceUID for s in sources], segment_numbers=[1])
    np.testing.assert_array_equal(pixels[..., 0], mask)

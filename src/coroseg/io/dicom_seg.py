"""DICOM Segmentation output (``predict --format dicom-seg``): the mask as a binary DICOM SEG of its series.

Why a DICOM SEG: a PACS or a DICOM viewer (OHIF, 3D Slicer's DICOM module, ...) places it on the
CT it was made from through its references (the source series, and the source image of every
frame), stores it in the same study, and knows what was segmented from its codes rather than
from a file name. It is built with highdicom, the optional extra ``coroseg[dicom]``, imported
only when this format is asked for.

What is written:

- one binary segment "Coronary arteries": category SCT 91723000 "Anatomical Structure"
  (DICOM CID 7150), type SCT 41801008 "Coronary artery" (CID 7151), algorithm type AUTOMATIC,
  and the colour of the ``.seg.nrrd`` output as CIELab (OHIF, for one, expects a colour);
- the algorithm identification: name ``coroseg``, its version, family DCM 123110 "Artificial
  Intelligence", parameters naming the model (name, version, SHA-256 of its weights); the
  model's name is also the Manufacturer's Model Name;
- one frame per source slice, empty ones included: the SEG has exactly the series' slices,
  each frame referencing its source image, and an empty prediction is still a valid SEG;
- a new series in the source's study and frame of reference (highdicom copies the patient and
  study attributes from the source images).

Slices are matched to the mask by position, not by file order: each slice's Image Position
(Patient) gives its index on the mask's grid (:meth:`~coroseg.io.volume.Volume.world_to_index`),
so the frames line up with the voxels whatever order the files are in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coroseg import __version__
from coroseg.errors import CorosegError, InputError
from coroseg.io.atomic import atomic_path
from coroseg.io.slicer_seg import CORONARY_ARTERIES
from coroseg.io.volume import Volume

#: the ``predict --format`` name, and the extension of the file it writes (``<id>_seg.dcm``)
DICOM_SEG = "dicom-seg"
DICOM_SEG_EXTENSION = ".dcm"
INSTALL_HINT = 'pip install "coroseg[dicom]"'
#: how far (in voxels) a slice's position may lie off the mask's grid (DS values are rounded text)
POSITION_TOLERANCE = 0.1
#: Slicer's artery colour (216, 101, 79), the ``.seg.nrrd`` segment's, in DICOM's scaled CIELab
#: (L* 0..100 and a*, b* -128..127 mapped onto 0..65535; D65 white, sRGB), as
#: ``highdicom.color.CIELabColor.from_rgb(216, 101, 79).value`` gives it (checked in the tests)
ARTERY_CIELAB = (37064, 44082, 41620)
#: what a SEG copies or points at in every source image (anonymisers sometimes empty them)
REFERENCED = {"SOPClassUID": "(0008,0016)", "SOPInstanceUID": "(0008,0018)", "StudyInstanceUID": "(0020,000D)",
              "SeriesInstanceUID": "(0020,000E)", "FrameOfReferenceUID": "(0020,0052)"}


def require_highdicom() -> Any:
    """The ``highdicom`` module; a one-line :class:`CorosegError` saying how to install it when missing."""
    try:
        import highdicom
    except ImportError:
        raise CorosegError(f"--format {DICOM_SEG} needs highdicom, which is not installed: {INSTALL_HINT}") from None
    return highdicom


def check_dicom_inputs(paths: list[Path], output_dir: str | Path) -> None:
    """Refuse, before any work, inputs that cannot get a DICOM SEG.

    In order: an input that is no DICOM series folder (a SEG must reference the images it
    segments), a series folder that is also the output folder (the SEG would become a second
    series in it, which no reader accepts), a missing highdicom, and slices without the UIDs a
    SEG references (headers only).
    """
    for path in map(Path, paths):
        if not path.is_dir():
            raise InputError(f"--format {DICOM_SEG} needs a DICOM series folder as input (a DICOM SEG references "
                             "its source images); this is a volume file", path)
        if path.resolve() == Path(output_dir).resolve():
            raise InputError(f"--format {DICOM_SEG} would add a second DICOM series to the series folder; "
                             "choose another --output", path)
    require_highdicom()
    for path in map(Path, paths):
        _check_series_references(path)


def _check_series_references(folder: Path) -> None:
    for name, ds in _headers(folder, tags=list(REFERENCED)):
        _check_references(ds, name, folder)


def _headers(folder: Path, *, tags: list[str] | None = None):
    """``(file name, header)`` of each slice of the series in ``folder``, in GDCM's order (no pixel data)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    from coroseg.io.dicom import series_files

    for name in series_files(folder):
        try:
            yield Path(name).name, pydicom.dcmread(name, stop_before_pixels=True, specific_tags=tags)
        except (OSError, InvalidDicomError) as exc:
            raise InputError(f"cannot read DICOM file {Path(name).name} ({exc})", folder) from None


def source_slices(folder: str | Path, mask: Volume) -> list:
    """The headers (no pixel data) of the series in ``folder``, in the order of ``mask``'s slices.

    Raises
    ------
    InputError
        A file cannot be read, lacks a UID the SEG references, its size differs from the mask's
        slices, or its position does not lie on the mask's grid (each slice of the grid must be
        there exactly once).
    """
    folder = Path(folder)
    slices: dict[int, Any] = {}
    for name, ds in _headers(folder):
        if (int(ds.get("Rows", 0)), int(ds.get("Columns", 0))) != mask.shape[1:]:
            raise InputError(f"DICOM file {name} is {ds.get('Rows')} x {ds.get('Columns')} pixels; "
                             f"the series was read as {mask.shape[1]} x {mask.shape[2]}", folder)
        _check_references(ds, name, folder)
        slices.setdefault(_slice_index(ds, mask, name, folder), ds)
    if sorted(slices) != list(range(mask.shape[0])):
        raise InputError(f"the series' slice positions cover {len(slices)} of the {mask.shape[0]} slices of "
                         "its grid", folder)
    return [slices[k] for k in range(mask.shape[0])]


def _check_references(ds, name: str, folder: Path) -> None:
    """Refuse a slice without the UIDs a SEG must reference (a SEG pointing at empty UIDs places nowhere)."""
    for keyword, tag in REFERENCED.items():
        if not str(ds.get(keyword) or "").strip():
            raise InputError(f"DICOM file {name} has no {keyword} {tag} (emptied by an anonymiser?); a DICOM SEG "
                             "must reference it", folder)


def _slice_index(ds, mask: Volume, name: str, folder: Path) -> int:
    """Index along the mask's slice axis of the slice ``ds`` (from its Image Position (Patient))."""
    try:
        position = np.array([float(v) for v in ds.ImagePositionPatient], dtype=float)
    except (AttributeError, TypeError, ValueError):
        position = np.zeros(0)
    if position.shape != (3,):
        raise InputError(f"DICOM file {name} has no usable Image Position (Patient) (0020,0032)", folder)
    k, j, i = mask.world_to_index(position)[0]
    if max(abs(j), abs(i), abs(k - round(k))) > POSITION_TOLERANCE or not 0 <= round(k) < mask.shape[0]:
        raise InputError(f"DICOM file {name} does not lie on the series' grid (at index {k:.2f}, {j:.2f}, "
                         f"{i:.2f})", folder)
    return int(round(k))


def segment_description(hd: Any, model: dict) -> Any:
    """highdicom's description of the one "Coronary arteries" segment, naming coroseg and ``model``."""
    from pydicom.sr.codedict import codes

    parameters = {"model": _model_name(model)}
    if model.get("model_version"):
        parameters["model_version"] = str(model["model_version"])
    if model.get("model_sha256"):
        parameters["weights_sha256"] = str(model["model_sha256"])
    algorithm = hd.AlgorithmIdentificationSequence(
        name="coroseg", version=__version__, family=codes.cid7162.ArtificialIntelligence, source="coroseg",
        parameters=parameters)
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label=CORONARY_ARTERIES.name,
        segmented_property_category=codes.cid7150.AnatomicalStructure,
        segmented_property_type=codes.cid7151.CoronaryArtery,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm)
    description.RecommendedDisplayCIELabValue = list(ARTERY_CIELAB)  # set directly: any highdicom version
    return description


def write_dicom_seg(mask: Volume, source: str | Path, path: str | Path, *, model: dict | None = None) -> Path:
    """Write ``mask`` as a binary DICOM SEG referencing the DICOM series in ``source``, atomically.

    Parameters
    ----------
    mask : Volume
        ``array`` (Z, Y, X) of {0, 1} on the series' own grid (what ``predict`` returns for it).
    source : path
        The DICOM series folder the mask was predicted from.
    path : path
        The file to write (``<id>_seg.dcm``).
    model : dict, optional
        The model that made the mask: ``model_name``, ``model_version``, ``model_sha256``
        (:func:`coroseg.models.store.model_provenance`), else its architecture ``model``.

    Raises
    ------
    CorosegError
        highdicom is missing, the series cannot be read or matched to the mask, or it lacks
        what a SEG must copy (e.g. a Frame of Reference UID).
    """
    hd = require_highdicom()
    source, path, model = Path(source), Path(path), model or {}
    slices = source_slices(source, mask)
    pixels = (np.asarray(mask.array) > 0).astype(np.uint8)
    try:
        seg = hd.seg.Segmentation(
            source_images=slices, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[segment_description(hd, model)], series_instance_uid=hd.UID(),
            series_number=_series_number(slices[0]), sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer="coroseg", manufacturer_model_name=_model_name(model)[:64],
            software_versions=__version__, device_serial_number=str(model.get("model_sha256") or "none")[:64],
            series_description="coroseg coronary arteries", content_label="CORONARIES", omit_empty_frames=False)
    except (ValueError, AttributeError) as exc:  # highdicom's checks of the source images
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot make a DICOM SEG of this series ({reason})", source) from None
    with atomic_path(path) as tmp:
        seg.save_as(tmp, enforce_file_format=True)
    return path


def _model_name(model: dict) -> str:
    """The model's name (an installed model's or run folder's), else its architecture."""
    return str(model.get("model_name") or model.get("model") or "unknown")


def _series_number(ref) -> int:
    """The SEG's series number: the source's plus 1000 (beside it in a viewer's list, never equal)."""
    try:
        return int(ref.get("SeriesNumber") or 0) + 1000
    except (TypeError, ValueError):
        return 1000


__all__ = ["DICOM_SEG", "DICOM_SEG_EXTENSION", "INSTALL_HINT", "require_highdicom", "check_dicom_inputs",
           "source_slices", "segment_description", "write_dicom_seg"]

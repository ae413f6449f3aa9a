"""Reading a DICOM series folder (GDCM through SimpleITK) with the checks a user needs.

One series per folder, no missing slice, GDCM's own warnings folded into the one-line error.
:func:`coroseg.io.volume.read_volume` calls this for a folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from coroseg.errors import InputError
from coroseg.io.volume import _itk_reason, _quiet_stderr


def read_dicom_series(folder: Path) -> sitk.Image:
    """The one DICOM series in ``folder`` as a SimpleITK image (slices in GDCM's position order).

    Raises :class:`~coroseg.errors.InputError` for a folder with no series, several series,
    a single slice, a missing slice or an unreadable file.
    """
    files = series_files(folder)
    _check_slice_positions(folder, files)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    with _quiet_stderr():
        try:
            return reader.Execute()
        except RuntimeError as exc:
            err = exc
    raise InputError(f"cannot read DICOM series ({_itk_reason(err)})", folder) from None


def series_files(folder: Path) -> tuple[str, ...]:
    """The slice files of the one DICOM series in ``folder``, in GDCM's order (what the reader stacks).

    Shared by the reader and the DICOM SEG writer, so both see the same series the same way.
    """
    try:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    except OSError as exc:
        raise InputError(f"cannot read folder ({exc.strerror})", folder) from None
    files = [p for p in entries if _is_plain_file(p)]
    if not files:
        raise InputError("folder holds no files; expected volume files (.nrrd, .nii(.gz), .mha/.mhd) "
                         "or one DICOM series", folder)
    with _quiet_stderr():  # GDCM prints a warning for every non-DICOM file it looks at
        try:
            ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
        except RuntimeError:
            ids = ()
    if not ids:
        raise InputError("folder holds no volume files (.nrrd, .nii(.gz), .mha/.mhd) and no DICOM series",
                         folder)
    if len(ids) > 1:
        raise InputError(f"folder holds {len(ids)} DICOM series; expected one (point at one series)", folder)
    with _quiet_stderr():
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), ids[0])
    if len(files) < 2:
        raise InputError(f"DICOM series has {len(files)} slice; expected a 3D series", folder)
    return tuple(files)


def _is_plain_file(p: Path) -> bool:
    try:
        return p.is_file()
    except OSError:  # a symlink loop, a vanished file
        return False


def _check_slice_positions(folder: Path, files: tuple[str, ...]) -> None:
    """Refuse a series with a missing slice: gaps between slice positions must be even."""
    positions = []
    reader = sitk.ImageFileReader()
    for f in files:
        reader.SetFileName(f)
        try:
            reader.ReadImageInformation()
            pos = reader.GetMetaData("0020|0032") if reader.HasMetaDataKey("0020|0032") else None
        except RuntimeError:
            raise InputError(f"cannot read DICOM file {Path(f).name}", folder) from None
        if pos is None:
            return
        try:
            xyz = [float(v) for v in pos.replace(" ", "").split("\\")]
        except ValueError:
            xyz = []
        if len(xyz) != 3:
            raise InputError(f"DICOM file {Path(f).name}: unreadable slice position (0020,0032) {pos!r}", folder)
        positions.append(xyz)
    p = np.array(positions)
    steps = np.linalg.norm(np.diff(p, axis=0), axis=1)
    if len(steps) and steps.min() > 0:
        med = float(np.median(steps))
        gaps = np.flatnonzero(steps > 1.5 * med)
        if len(gaps):
            raise InputError(
                f"DICOM series has a missing slice: gap of {steps[gaps[0]]:.3g} mm after slice "
                f"{gaps[0] + 1} of {len(files)} (expected {med:.3g} mm)", folder)


__all__ = ["read_dicom_series", "series_files"]

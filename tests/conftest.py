"""Shared test fixtures. ``SHARED`` is the real reference data beside the repo (may be absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared" / "data").resolve()
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is absent (real reference data)")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def shared() -> Path:
    if not SHARED.exists():
        pytest.skip("../shared/data is absent (real reference data)")
    return SHARED


def write_dicom_series(volume, folder: Path, *, frame_of_reference: bool = True) -> Path:
    """Write ``volume`` (a :class:`coroseg.io.volume.Volume` with a right-handed direction) as a CT
    DICOM series, one file per slice (GDCM through SimpleITK), and return the folder.

    File names run against the slice order (``slice_000.dcm`` is the last slice), so nothing may
    rely on the order of the files. The UIDs are ``2.25.<uuid>`` (DICOM's UUID-derived form).
    """
    import uuid

    import SimpleITK as sitk

    def uid() -> str:
        return f"2.25.{uuid.uuid4().int}"

    img = volume.with_array(np.round(volume.array).astype(np.int16)).to_sitk()
    d = img.GetDirection()
    orientation = "\\".join(f"{v:.6f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    common = {"0008|0016": "1.2.840.10008.5.1.4.1.1.2", "0008|0060": "CT", "0010|0010": "Phantom^Coroseg",
              "0010|0020": "PHANTOM", "0020|000d": uid(), "0020|000e": uid(), "0020|0011": "7",
              "0020|0037": orientation, "0018|0050": f"{img.GetSpacing()[2]:.6f}"}
    if frame_of_reference:
        common["0020|0052"] = uid()
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    depth = img.GetDepth()
    for k in range(depth):
        piece = img[:, :, k]
        position = "\\".join(f"{v:.6f}" for v in img.TransformIndexToPhysicalPoint((0, 0, k)))
        for tag, value in {**common, "0008|0018": uid(), "0020|0013": str(k + 1), "0020|0032": position}.items():
            piece.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice_{depth - 1 - k:03d}.dcm"))
        writer.Execute(piece)
    return folder


@pytest.fixture
def dicom_series():
    """:func:`write_dicom_series`; GDCM's writer switches the C locale to "C", restored afterwards
    (or later tests' subprocess pipes decode as ASCII)."""
    import locale

    saved = locale.setlocale(locale.LC_ALL)
    yield write_dicom_series
    if locale.setlocale(locale.LC_ALL) != saved:
        locale.setlocale(locale.LC_ALL, saved)

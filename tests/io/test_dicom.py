"""DICOM series input, on the real series in ../shared (skipped when absent)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from coroseg.errors import InputError
from coroseg.io.volume import read_volume


def test_real_dicom_series(shared: Path) -> None:
    vol = read_volume(shared / "real-ct" / "dicom-series")
    assert vol.shape == (20, 512, 512)
    assert vol.spacing[0] == pytest.approx(2.0)
    assert vol.spacing[1] == pytest.approx(0.977, abs=1e-3)


def test_dicom_missing_slice(shared: Path, tmp_path: Path) -> None:
    files = sorted((shared / "real-ct" / "dicom-series").iterdir())
    for f in files[:8] + files[9:]:
        shutil.copy(f, tmp_path / f.name)
    with pytest.raises(InputError, match="missing slice"):
        read_volume(tmp_path)


def test_folder_without_dicom(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(InputError, match="no DICOM series"):
        read_volume(tmp_path)

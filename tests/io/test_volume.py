"""Volume I/O: round trips in every format, geometry helpers, and the error catalogue."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from coroseg.errors import InputError
from coroseg.io.volume import (
    Volume,
    grid_mismatch,
    orient_lps,
    read_volume,
    resample,
    resample_to_grid,
    strip_extension,
    write_volume,
)

OBLIQUE = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def _volume(dtype=np.int16, direction=None) -> Volume:
    arr = (np.arange(3 * 4 * 5) - 30).reshape(3, 4, 5).astype(dtype)
    return Volume(arr, spacing=(2.5, 0.75, 0.5), origin=(-10.0, 20.5, 33.0),
                  direction=np.eye(3) if direction is None else direction)


@pytest.mark.parametrize("ext", [".nrrd", ".nii.gz", ".nii", ".mha", ".mhd"])
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32])
def test_round_trip_every_format(tmp_path: Path, ext: str, dtype) -> None:
    vol = _volume(dtype, OBLIQUE)
    path = write_volume(vol, tmp_path / f"case{ext}")
    back = read_volume(path)
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.array.dtype == vol.array.dtype
    # NIfTI stores geometry in float32
    np.testing.assert_allclose(back.spacing, vol.spacing, rtol=1e-6)
    np.testing.assert_allclose(back.origin, vol.origin, atol=1e-4)
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-6)
    # nothing but the output (and .mhd's data file) is left behind
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == (["case.mhd", "case.zraw"] if ext == ".mhd" else [f"case{ext}"])


def test_affine_maps_index_to_world() -> None:
    vol = _volume(direction=OBLIQUE)
    # index (k, j, i) = (1, 2, 3): ITK ijk = (3, 2, 1); world = o + D @ (sp_itk * ijk)
    expected = np.array(vol.origin) + OBLIQUE @ (np.array([0.5, 0.75, 2.5]) * np.array([3, 2, 1]))
    np.testing.assert_allclose(vol.index_to_world([[1, 2, 3]])[0], expected)
    np.testing.assert_allclose(vol.world_to_index(expected[None])[0], [1, 2, 3])


def test_index_to_world_agrees_with_simpleitk() -> None:
    vol = _volume(direction=OBLIQUE)
    img = vol.to_sitk()
    for k, j, i in [(0, 0, 0), (2, 3, 4), (1, 0, 3)]:
        np.testing.assert_allclose(vol.index_to_world([[k, j, i]])[0], img.TransformIndexToPhysicalPoint((i, j, k)))


def test_strip_extension() -> None:
    assert strip_extension("a/b/case_1.nii.gz") == "case_1"
    assert strip_extension("x.nrrd") == "x"
    assert strip_extension("x.mha") == "x"


def test_resample_keeps_extent_and_centre() -> None:
    vol = Volume(np.ones((10, 20, 20), np.float32), spacing=(1.0, 0.5, 0.5), origin=(0, 0, 0))
    out = resample(vol, (2.0, 1.0, 1.0))
    assert out.shape == (5, 10, 10)
    # the volume's physical centre is unchanged
    c_in = vol.index_to_world((np.array(vol.shape) - 1)[None] / 2)[0]
    c_out = out.index_to_world((np.array(out.shape) - 1)[None] / 2)[0]
    np.testing.assert_allclose(c_in, c_out, atol=1e-6)
    np.testing.assert_allclose(out.array, 1.0)


def test_resample_label_is_nearest() -> None:
    lab = Volume(np.zeros((8, 8, 8), np.uint8), is_label=True)
    lab.array[2:6, 2:6, 2:6] = 1
    out = resample_to_grid(resample(lab, (0.5, 0.5, 0.5)), lab)
    assert set(np.unique(out.array)) == {0, 1}
    np.testing.assert_array_equal(out.array, lab.array)


def test_orient_lps_from_ras_flips_axes() -> None:
    ras = np.diag([-1.0, -1.0, 1.0])
    vol = _volume(direction=ras)
    lps = orient_lps(vol)
    np.testing.assert_allclose(lps.direction, np.eye(3))
    # the same world point has the same value
    w = vol.index_to_world([[1, 2, 3]])[0]
    idx = np.round(lps.world_to_index(w[None])[0]).astype(int)
    assert lps.array[tuple(idx)] == vol.array[1, 2, 3]


def test_grid_mismatch_says_what_differs() -> None:
    a = _volume()
    b = _volume()
    assert grid_mismatch(a, b) is None
    b.origin = (0.0, 0.0, 0.0)
    assert "origin" in grid_mismatch(a, b)
    c = Volume(np.zeros((3, 4, 6)), a.spacing, a.origin)
    assert "shape" in grid_mismatch(a, c)


# ---- error catalogue ----------------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.nrrd: no such file"):
        read_volume(tmp_path / "nope.nrrd")


def test_unsupported_extension(tmp_path: Path) -> None:
    p = tmp_path / "scan.png"
    p.write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match=r"scan.png: unsupported file type \.png"):
        read_volume(p)


def test_corrupt_nifti(tmp_path: Path) -> None:
    p = tmp_path / "bad.nii.gz"
    p.write_bytes(gzip.compress(b"not a nifti header at all" * 3))
    with pytest.raises(InputError, match="bad.nii.gz: cannot read image"):
        read_volume(p)


def test_truncated_nrrd(tmp_path: Path) -> None:
    p = write_volume(Volume(np.ones((20, 20, 20), np.int16)), tmp_path / "t.nrrd", compress=False)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 4000])
    with pytest.raises(InputError, match="t.nrrd: cannot read image"):
        read_volume(p)


def test_nan_voxels(tmp_path: Path) -> None:
    arr = np.zeros((4, 4, 4), np.float32)
    arr[1, 1, 1] = np.nan
    arr[2, 2, 2] = np.inf
    p = write_volume(Volume(arr), tmp_path / "nan.nrrd")
    with pytest.raises(InputError, match="nan.nrrd: 2 voxels are NaN or infinite"):
        read_volume(p)


@pytest.mark.parametrize("shape, found", [((5, 6), "2D"), ((2, 3, 4, 5), "4D")])
def test_not_3d(tmp_path: Path, shape, found) -> None:
    import SimpleITK as sitk

    p = tmp_path / "x.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros(shape, np.int16), isVector=False), str(p))
    with pytest.raises(InputError, match=f"x.nrrd: expected a 3D single-channel image, found {found}"):
        read_volume(p)


def test_non_orthogonal_direction(tmp_path: Path) -> None:
    p = tmp_path / "shear.nrrd"
    p.write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 2 2 2\n"
                  b"space directions: (1,0,0) (0.5,1,0) (0,0,1)\nkinds: domain domain domain\n"
                  b"endian: little\nencoding: raw\nspace origin: (0,0,0)\n\n" + bytes(16))
    with pytest.raises(InputError, match="shear.nrrd: direction matrix is not orthonormal"):
        read_volume(p)


def test_label_with_fraction_values_refused(tmp_path: Path) -> None:
    p = write_volume(Volume(np.full((3, 3, 3), 0.5, np.float32)), tmp_path / "lab.nrrd")
    with pytest.raises(InputError, match="lab.nrrd: label has non-integer values"):
        read_volume(p, is_label=True)


def test_unwritable_output_leaves_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    from coroseg.errors import CorosegError

    with pytest.raises(CorosegError, match="cannot write"):
        write_volume(_volume(), blocker / "sub" / "out.nrrd")


def test_failed_write_keeps_old_file(tmp_path: Path, monkeypatch) -> None:
    import SimpleITK as sitk

    target = write_volume(_volume(), tmp_path / "keep.nrrd")
    before = target.read_bytes()

    def disk_full(img, path, **kw):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("No space left on device")

    monkeypatch.setattr(sitk, "WriteImage", disk_full)
    from coroseg.errors import CorosegError

    with pytest.raises(CorosegError, match="keep.nrrd: cannot write image"):
        write_volume(_volume(np.uint8), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.nrrd"]

"""The ``Volume`` type: a 3D array with its scanner geometry, and its SimpleITK I/O.

Axis order (the one thing to remember)
--------------------------------------
``Volume.array`` is indexed ``[k, j, i]`` = ``[z, y, x]`` (slice, row, column), exactly as
``SimpleITK.GetArrayFromImage`` returns it. ``spacing`` follows the *array* axes
(``(sz, sy, sx)`` mm), so ``array.shape`` and ``spacing`` always line up. ``origin`` and
world points are LPS millimetres ``(x, y, z)`` (the DICOM/ITK patient frame, what 3D Slicer
calls "LPS"). ``direction`` is ITK's 3x3 matrix: column ``c`` is the world direction of
ITK index axis ``c`` (i, j, k) — the reverse of the array axes. This module owns that
reversal; nothing else in coroseg calls ``GetArrayFromImage`` or ``GetSpacing``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import os
import shutil
import struct
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from coroseg.errors import CorosegError, GeometryError, InputError
from coroseg.io.atomic import atomic_path

#: longest first where one ends another: ``x.seg.nrrd`` (a 3D Slicer segmentation) is case ``x``
VOLUME_EXTENSIONS = (".seg.nrrd", ".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


@dataclasses.dataclass
class Volume:
    """A 3D image or label with geometry.

    Parameters
    ----------
    array : (Z, Y, X) ndarray
        Voxel values, slice-row-column order.
    spacing : tuple of 3 float, mm
        Voxel size along the array axes ``(sz, sy, sx)``.
    origin : tuple of 3 float, mm
        LPS world position ``(x, y, z)`` of voxel ``[0, 0, 0]``'s centre.
    direction : (3, 3) ndarray
        ITK direction cosines; column ``c`` is the world direction of index axis i, j, k.
    is_label : bool
        Labels are resampled with nearest neighbour and stored as uint8.
    """

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = dataclasses.field(default_factory=lambda: np.eye(3))
    is_label: bool = False

    def __post_init__(self) -> None:
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        self.origin = tuple(float(o) for o in self.origin)  # type: ignore[assignment]
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)

    # ---- geometry -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix mapping homogeneous array index ``(k, j, i, 1)`` to LPS ``(x, y, z, 1)``."""
        a = np.eye(4)
        # index (k, j, i) -> itk index (i, j, k): reverse; world = o + D @ diag(sp_itk) @ ijk
        sp_itk = np.array(self.spacing[::-1])
        m = self.direction @ np.diag(sp_itk)  # columns for i, j, k
        a[:3, :3] = m[:, ::-1]  # columns for k, j, i
        a[:3, 3] = self.origin
        return a

    def index_to_world(self, index: np.ndarray) -> np.ndarray:
        """Map array indices ``(N, 3)`` in ``(k, j, i)`` order (may be fractional) to LPS mm."""
        index = np.asarray(index, dtype=float).reshape(-1, 3)
        a = self.affine
        return index @ a[:3, :3].T + a[:3, 3]

    def world_to_index(self, points: np.ndarray) -> np.ndarray:
        """Map LPS mm points ``(N, 3)`` to fractional array indices ``(k, j, i)``."""
        points = np.asarray(points, dtype=float).reshape(-1, 3)
        a = self.affine
        return np.linalg.solve(a[:3, :3], (points - a[:3, 3]).T).T

    def with_array(self, array: np.ndarray, *, is_label: bool | None = None) -> Volume:
        """A new volume on the same grid holding ``array``."""
        if array.shape[-3:] != self.array.shape:
            raise ValueError(f"array shape must be {self.array.shape}, not {array.shape}")
        return Volume(array, self.spacing, self.origin, self.direction.copy(),
                      self.is_label if is_label is None else is_label)

    def same_grid(self, other: Volume, *, atol: float = 1e-3) -> bool:
        """True when shape, spacing, origin and direction agree (within ``atol``)."""
        return grid_mismatch(self, other, atol=atol) is None

    # ---- SimpleITK conversion (the only place that reverses axes) --------------------------
    def to_sitk(self) -> sitk.Image:
        arr = self.array
        if arr.dtype == np.bool_:
            arr = arr.astype(np.uint8)
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
        img.SetSpacing(tuple(float(s) for s in self.spacing[::-1]))
        img.SetOrigin(tuple(float(o) for o in self.origin))
        img.SetDirection(tuple(float(d) for d in self.direction.ravel()))
        return img

    @classmethod
    def from_sitk(cls, img: sitk.Image, *, is_label: bool = False) -> Volume:
        return cls(
            sitk.GetArrayFromImage(img),
            tuple(img.GetSpacing())[::-1],
            tuple(img.GetOrigin()),
            np.array(img.GetDirection()).reshape(3, 3),
            is_label,
        )


def grid_mismatch(a: Volume, b: Volume, *, atol: float = 1e-3) -> str | None:
    """Describe how two grids differ (expected vs found), or ``None`` when they match."""
    if a.shape != b.shape:
        return f"shape {b.shape} does not match {a.shape}"
    if not np.allclose(a.spacing, b.spacing, atol=atol):
        return f"spacing {_fmt(b.spacing)} does not match {_fmt(a.spacing)}"
    if not np.allclose(a.origin, b.origin, atol=max(atol, 1e-2 * min(a.spacing))):
        return f"origin {_fmt(b.origin)} does not match {_fmt(a.origin)}"
    if not np.allclose(a.direction, b.direction, atol=1e-4):
        return "direction does not match"
    return None


def _fmt(t: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in t) + ")"


def volume_extension(path: str | Path) -> str | None:
    """The supported extension of ``path`` (``.nii.gz``, ``.seg.nrrd`` count as one), else ``None``."""
    name = Path(path).name.lower()
    for ext in VOLUME_EXTENSIONS:
        if name.endswith(ext):
            return ext
    return None


def strip_extension(path: str | Path) -> str:
    """File name without its volume extension: ``case_1.nii.gz`` -> ``case_1``."""
    name = Path(path).name
    ext = volume_extension(name)
    return name[: -len(ext)] if ext else Path(name).stem


# ---- reading ------------------------------------------------------------------------------
def read_volume(path: str | Path, *, is_label: bool = False, check_finite: bool = True) -> Volume:
    """Read a 3D NRRD, NIfTI, MHA/MHD file or a DICOM series folder.

    Raises :class:`~coroseg.errors.InputError` (one line naming the file) when the path is
    missing, the format unsupported, the file corrupt, the image not 3D, the geometry
    invalid, or voxels are NaN/inf.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("no such file or folder", path)
    if path.is_dir():
        from coroseg.io.dicom import read_dicom_series

        img = read_dicom_series(path)
    else:
        check_regular_file(path)
        if volume_extension(path) is None:
            raise InputError(
                f"unsupported file type {''.join(path.suffixes) or '(none)'}; "
                f"expected one of {', '.join(VOLUME_EXTENSIONS)} or a DICOM folder", path)
        if path.name.lower().endswith(".nrrd"):
            _check_nrrd_header(path)
        img = _sitk_read(path)
    return _checked(img, path, is_label=is_label, check_finite=check_finite)


def check_regular_file(path: Path) -> None:
    """Refuse what is not a plain file (a named pipe or device would block the reader forever)."""
    import stat

    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", path) from None
    if not stat.S_ISREG(mode):
        kind = "a named pipe" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) \
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        raise InputError(f"is {kind}; expected a volume file", path)


#: NRRD header fields with numbers that ITK would silently replace when they are not finite
_NRRD_GEOMETRY_FIELDS = ("spacings", "space directions", "space origin")


def _check_nrrd_header(path: Path) -> None:
    """Refuse NaN/inf in an NRRD header's geometry (ITK reads ``spacings: 1 nan 1`` as 1 mm)."""
    import re

    try:
        with path.open("rb") as fh:
            head = fh.read(16384)
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", path) from None
    if not head.startswith(b"NRRD"):
        return
    text = head.split(b"\n\n", 1)[0].decode("latin-1")
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in _NRRD_GEOMETRY_FIELDS and re.search(r"(?i)\b(nan|[+-]?inf(inity)?)\b", value):
            raise InputError(f"NRRD header field '{key.strip()}: {value.strip()[:60]}' is not finite; "
                             "expected finite numbers", path)


def _sitk_read(path: Path) -> sitk.Image:
    if path.name.lower().endswith((".nii", ".nii.gz")):
        _check_nifti_size(path)  # ITK reads a truncated NIfTI without complaint (missing voxels = 0)
    with _quiet_stderr() as said:
        try:
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            return reader.Execute()
        except RuntimeError as exc:
            err = exc
    extra = " ".join(ln.strip() for ln in said[0].splitlines() if ln.strip())[:200]
    raise InputError(f"cannot read image ({_itk_reason(err)}{'; ' + extra if extra else ''})", path) from None


@contextlib.contextmanager
def _quiet_stderr():
    """Capture what C++ code (MetaIO, GDCM) prints on file descriptor 2 while reading.

    Yields a one-element list that holds the captured text after the block, so a reader's
    complaint ends up inside the one-line error instead of as stray lines on the terminal.
    """
    said = [""]
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2 (embedded interpreter): nothing to capture
        yield said
        return
    with tempfile.TemporaryFile() as tmp:
        try:
            sys.stderr.flush()
            os.dup2(tmp.fileno(), 2)
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            said[0] = tmp.read().decode("utf-8", "replace")


def _nifti_expected_bytes(head: bytes) -> int | None:
    """``vox_offset + voxels * bitpix / 8`` from a NIfTI-1 header, or None when it is not one."""
    if len(head) < 348:
        return None
    for endian in "<>":
        (sizeof_hdr,) = struct.unpack(endian + "i", head[:4])
        if sizeof_hdr == 348:
            break
    else:
        return None
    dim = struct.unpack(endian + "8h", head[40:56])
    (bitpix,) = struct.unpack(endian + "h", head[72:74])
    (vox_offset,) = struct.unpack(endian + "f", head[108:112])
    if not 1 <= dim[0] <= 7 or bitpix <= 0 or not np.isfinite(vox_offset) or min(dim[1:dim[0] + 1]) < 1:
        return None
    return int(max(vox_offset, 352)) + int(np.prod([int(d) for d in dim[1:dim[0] + 1]])) * bitpix // 8


def _check_nifti_size(path: Path) -> None:
    """Raise InputError when a NIfTI-1 file holds fewer voxel bytes than its header promises."""
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                head = fh.read(352)
            expected = _nifti_expected_bytes(head)
            if expected is None:
                return
            with path.open("rb") as raw:
                raw.seek(-4, os.SEEK_END)
                (isize,) = struct.unpack("<I", raw.read(4))
            if isize == expected % 2**32:
                return
            found = 0  # trailer disagrees (truncated, or a multi-member gzip): count for certain
            with gzip.open(path, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    found += len(chunk)
        else:
            with path.open("rb") as fh:
                head = fh.read(352)
            expected = _nifti_expected_bytes(head)
            if expected is None:
                return
            found = path.stat().st_size
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"cannot read image (truncated or corrupt gzip data: {exc})", path) from None
    if found < expected:
        raise InputError(f"truncated NIfTI file: header promises {expected} bytes, found {found}", path)


def _itk_reason(exc: Exception) -> str:
    # ITK messages are multi-line with source locations; keep the most telling line
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        low = ln.lower()
        if "description:" in low:
            return ln.split(":", 1)[1].strip()[:200]
    for ln in reversed(lines):
        if not ln.lower().startswith(("exception", "sitk::error", "file:", "line:", "location")):
            return ln[:200]
    return "corrupt or unsupported file"


def _checked(img: sitk.Image, path: Path, *, is_label: bool, check_finite: bool) -> Volume:
    if "complex" in img.GetPixelIDTypeAsString():
        raise InputError(f"complex-valued voxels ({img.GetPixelIDTypeAsString()}); expected real CT "
                         "intensities (HU)", path)
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        size = "x".join(str(s) for s in img.GetSize())
        comps = img.GetNumberOfComponentsPerPixel()
        extra = f" with {comps} components" if comps != 1 else ""
        raise InputError(f"expected a 3D single-channel image, found {img.GetDimension()}D ({size}){extra}", path)
    if min(img.GetSize()) < 1:
        raise InputError("image is empty", path)
    vol = Volume.from_sitk(img, is_label=is_label)
    problem = geometry_problem(vol)
    if problem:
        raise InputError(problem, path)
    if check_finite and vol.array.dtype.kind == "f" and not np.isfinite(vol.array).all():
        n = int((~np.isfinite(vol.array)).sum())
        raise InputError(f"{n} voxels are NaN or infinite", path)
    if is_label:
        vol.array = _as_label(vol.array, path)
    return vol


def geometry_problem(vol: Volume) -> str | None:
    """Why a volume's geometry is unusable (non-positive spacing, non-orthogonal direction)."""
    sp = np.array(vol.spacing)
    if not np.isfinite(sp).all() or (sp <= 0).any():
        return f"spacing must be positive, found {_fmt(vol.spacing)}"
    if not np.isfinite(vol.origin).all():
        return "origin is not finite"
    d = vol.direction
    if not np.isfinite(d).all() or not np.allclose(d.T @ d, np.eye(3), atol=1e-3):
        return "direction matrix is not orthonormal (sheared or degenerate geometry)"
    return None


def _as_label(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise InputError("label has non-integer values; expected 0/1", path)
    if array.dtype != np.uint8 and array.size and (array.min() < 0 or array.max() > 255):
        # uint8 would wrap these (257 -> 1, -1 -> 255) and silently change the mask
        raise InputError(f"label values outside 0..255 found ({array.min():g}..{array.max():g}); "
                         "expected a 0/1 mask", path)
    return array.astype(np.uint8) if array.dtype != np.uint8 else array


# ---- writing ------------------------------------------------------------------------------
def write_volume(vol: Volume, path: str | Path, *, compress: bool = True) -> Path:
    """Write ``vol`` to ``path`` (format from the extension), atomically, geometry exact.

    ``.seg.nrrd``: a 3D Slicer segmentation of the coronary arteries (label value 1), see
    :func:`coroseg.io.slicer_seg.write_segmentation`.
    """
    path = Path(path)
    ext = volume_extension(path)
    if ext is None:
        raise InputError(f"unsupported output type; expected one of {', '.join(VOLUME_EXTENSIONS)}", path)
    if ext == ".seg.nrrd":
        from coroseg.io.slicer_seg import write_segmentation

        return write_segmentation(vol, path, compress=compress)
    img = vol.to_sitk()
    if ext == ".mhd":
        _write_mhd(img, path, compress)
        return path
    return write_image(img, path, compress=compress)


def write_image(img: sitk.Image, path: Path, *, compress: bool = True) -> Path:
    """Write a SimpleITK image (metadata included) to ``path`` atomically; ITK's failure as one line."""
    with atomic_path(path) as tmp:
        try:
            sitk.WriteImage(img, str(tmp), useCompression=compress)
        except RuntimeError as exc:
            raise CorosegError(f"cannot write image ({_itk_reason(exc)})", path) from None
    return path


def _write_mhd(img: sitk.Image, path: Path, compress: bool) -> None:
    # header + data file: write both into a temp folder, move data first, header last
    path.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=".mhd-", dir=path.parent))
    try:
        sitk.WriteImage(img, str(tmpdir / path.name), useCompression=compress)
        for f in sorted(tmpdir.iterdir(), key=lambda p: p.suffix == ".mhd"):
            shutil.move(str(f), str(path.parent / f.name))
    except (RuntimeError, OSError) as exc:
        raise CorosegError(f"cannot write image ({exc})", path) from None
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


# resampling and orientation live in coroseg.io.resample; imported here so that
# ``from coroseg.io.volume import resample_to_grid`` keeps working
from coroseg.io.resample import orient_lps, resample, resample_to_grid, resampled_grid, sub_grid  # noqa: E402

__all__ = [
    "Volume", "read_volume", "check_regular_file", "write_volume", "resample", "resample_to_grid", "orient_lps",
    "sub_grid", "resampled_grid",
    "grid_mismatch", "geometry_problem", "volume_extension", "strip_extension", "VOLUME_EXTENSIONS",
    "CorosegError", "GeometryError",
]

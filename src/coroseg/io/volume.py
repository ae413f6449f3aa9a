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
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from coroseg.errors import CorosegError, GeometryError, InputError
from coroseg.io.atomic import atomic_path

VOLUME_EXTENSIONS = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


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
    """The supported extension of ``path`` (``.nii.gz`` counts as one), else ``None``."""
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
        img = _read_dicom_series(path)
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


def _read_dicom_series(folder: Path) -> sitk.Image:
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
    _check_slice_positions(folder, files)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    with _quiet_stderr():
        try:
            return reader.Execute()
        except RuntimeError as exc:
            err = exc
    raise InputError(f"cannot read DICOM series ({_itk_reason(err)})", folder) from None


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
    """Write ``vol`` to ``path`` (format from the extension), atomically, geometry exact."""
    path = Path(path)
    ext = volume_extension(path)
    if ext is None:
        raise InputError(f"unsupported output type; expected one of {', '.join(VOLUME_EXTENSIONS)}", path)
    img = vol.to_sitk()
    if ext == ".mhd":
        _write_mhd(img, path, compress)
        return path
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


# ---- resampling ---------------------------------------------------------------------------
def resample(vol: Volume, spacing: tuple[float, float, float], *, order: int | None = None) -> Volume:
    """Resample to ``spacing`` (array order, mm), same physical extent, same direction.

    ``order`` 0 = nearest (default for labels), 1 = linear (default for images), 3 = B-spline.
    """
    spacing = tuple(float(s) for s in spacing)
    if np.allclose(spacing, vol.spacing, rtol=1e-4):
        return vol
    ref = resampled_grid(vol, spacing)
    return resample_to_grid(vol, ref, order=order)


def resampled_grid(vol: Volume, spacing: Sequence[float]) -> Volume:
    """The grid :func:`resample` puts ``vol`` on, geometry only (a read-only all-zero view, no memory).

    Same physical extent and direction; the footprint of the first voxel keeps its corner.
    """
    spacing = tuple(float(s) for s in spacing)
    extent = np.array(vol.shape) * np.array(vol.spacing)
    shape = tuple(max(1, int(round(e / s))) for e, s in zip(extent, spacing))
    # keep the physical centre of the first voxel's footprint aligned
    first_corner = np.array(vol.spacing) / 2.0
    new_first = np.array(spacing) / 2.0
    shift_index = (new_first - first_corner) / np.array(vol.spacing)
    origin = vol.index_to_world(shift_index[None])[0]
    return Volume(np.broadcast_to(np.zeros((), np.uint8), shape), spacing, tuple(origin), vol.direction.copy())


def resample_to_grid(vol: Volume, reference: Volume, *, shape: tuple[int, int, int] | None = None,
                     order: int | None = None, default: float | None = None) -> Volume:
    """Resample ``vol`` onto ``reference``'s grid (or its spacing/origin/direction with ``shape``)."""
    if order is None:
        order = 0 if vol.is_label else 1
    interp = {0: sitk.sitkNearestNeighbor, 1: sitk.sitkLinear, 3: sitk.sitkBSpline}[order]
    shape = shape or reference.shape
    rs = sitk.ResampleImageFilter()
    rs.SetSize([int(s) for s in shape[::-1]])
    rs.SetOutputSpacing(tuple(float(s) for s in reference.spacing[::-1]))
    rs.SetOutputOrigin(tuple(float(o) for o in reference.origin))
    rs.SetOutputDirection(tuple(float(d) for d in reference.direction.ravel()))
    rs.SetInterpolator(interp)
    if default is None:
        default = 0.0 if vol.is_label else float(np.min(vol.array)) if vol.array.size else 0.0
    rs.SetDefaultPixelValue(float(default))
    if order != 0 and vol.array.dtype.kind in "iu":
        # interpolate integer HU in floating point; the output type avoids a float copy of the input
        rs.SetOutputPixelType(sitk.sitkFloat32)
    out = Volume.from_sitk(rs.Execute(vol.to_sitk()), is_label=vol.is_label)
    return out


def sub_grid(vol: Volume, box: tuple[slice, ...]) -> Volume:
    """``vol[box]`` as a Volume: a view of the array, same spacing and direction, shifted origin."""
    box = tuple(slice(*b.indices(n)[:2]) for b, n in zip(box, vol.shape))
    start = np.array([b.start for b in box], float)
    origin = vol.index_to_world(start[None])[0]
    return Volume(vol.array[box], vol.spacing, tuple(origin), vol.direction.copy(), vol.is_label)


def orient_lps(vol: Volume) -> Volume:
    """Reorient to the closest axis-aligned LPS frame (flip/permute only, no interpolation)."""
    if np.array_equal(vol.direction, np.eye(3)):
        return vol  # already LPS: nothing to flip or permute
    img = sitk.DICOMOrient(vol.to_sitk(), "LPS")
    return Volume.from_sitk(img, is_label=vol.is_label)


__all__ = [
    "Volume", "read_volume", "write_volume", "resample", "resample_to_grid", "orient_lps", "sub_grid", "resampled_grid",
    "grid_mismatch", "geometry_problem", "volume_extension", "strip_extension", "VOLUME_EXTENSIONS",
    "CorosegError", "GeometryError",
]

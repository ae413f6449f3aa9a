"""VTK XML PolyData (``.vtp``) centerlines without a VTK dependency: the format, its coordinate
conventions and the reader (the writer is :mod:`coroseg.io.vtp_write`, re-exported here).

Format
------
Handles what VMTK and VTK write for centerlines: ``<VTKFile type="PolyData">`` with one or
more ``<Piece>``, ``<Points>`` (``NumberOfComponents="3"``), ``<Lines>`` (``connectivity`` /
``offsets``) and the point array ``MaximumInscribedSphereRadius`` (mm). ``DataArray``
elements may be ``format="ascii"`` or ``format="binary"`` (base64), with or without
``compressor="vtkZLibDataCompressor"``; headers are ``UInt32`` or ``UInt64``
(``header_type``); data types ``Float32/64``, ``Int8..64``, ``UInt8..64``; either byte order.
``format="appended"`` is not supported (VMTK does not write it) and raises ``InputError``.

Coordinate convention
---------------------
:class:`~coroseg.io.centerline.CenterlineGraph` holds LPS mm. ``.vtp`` files carry no
frame, and three conventions occur (``coords=``):

- ``"lps"``: points are LPS mm (3D Slicer >= 4.11 model files; what :func:`write_vtp`
  writes, marked by the XML comment ``<!-- coroseg coordinates: LPS -->``).
- ``"ras"``: points are RAS mm, ``x_ras = -x_lps``, ``y_ras = -y_lps`` (classic VTK/Slicer).
- ``"image"``: points live in the frame of a ``vtkImageData`` made from the reference image
  the centerline was extracted from: the image origin converted to RAS (x, y negated) but
  the axes *not* flipped and the direction matrix dropped, i.e.
  ``p = (-o_x, -o_y, o_z) + (i s_x, j s_y, k s_z)``. This is what the **ASOCA** centerlines
  use: mapped this way, 99.9-100 % of the points of all 12 cases fall inside their lumen
  mask (``benchmarks/centerline_hit_rate.py``); read as LPS or RAS, 0 % even fall inside the
  image grid. It needs the reference :class:`~coroseg.io.volume.Volume`.
- ``"auto"`` (default), decided deterministically: (1) a coroseg marker in the file -> that;
  (2) else, with a ``reference``, the convention that puts the most points inside the
  reference grid (within half a voxel), ties broken in the order ``lps``, ``image``, ``ras``;
  (3) else ``"lps"``.

Topology
--------
Each polyline runs ostium -> end point (VMTK); shared proximal points are merged into one
tree by :meth:`CenterlineGraph.from_polylines` with ``merge_tol`` (default
:data:`MERGE_TOL_MM` = 1e-6 mm). VMTK copies shared points bit for bit (checked on all 12
ASOCA files), while distinct consecutive points can be as close as 7.6e-6 mm (float32
resolution) and sibling branches stay within 1e-3 mm of each other just after a bifurcation:
a tolerance of 1e-3 mm already adds 1-2 spurious intersections in 4 of the 12 ASOCA trees.
So the tolerance only absorbs float64 noise.
"""

from __future__ import annotations

import base64
import binascii
import struct
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from coroseg.choices import Coords
from coroseg.errors import InputError
from coroseg.io.centerline import CenterlineGraph

if TYPE_CHECKING:
    from coroseg.io.volume import Volume

RADIUS_ARRAY = "MaximumInscribedSphereRadius"
MERGE_TOL_MM = 1e-6
COORDS = tuple(c.value for c in Coords)  # lps, ras, image, auto
MARKER = "<!-- coroseg coordinates: LPS -->"
_RAS_FLIP = np.array([-1.0, -1.0, 1.0])

_VTK_DTYPES = {
    "Int8": "i1", "UInt8": "u1", "Int16": "i2", "UInt16": "u2", "Int32": "i4", "UInt32": "u4",
    "Int64": "i8", "UInt64": "u8", "Float32": "f4", "Float64": "f8",
    # legacy names some writers use
    "Char": "i1", "UChar": "u1", "Short": "i2", "UShort": "u2", "Int": "i4", "UInt": "u4",
    "Long": "i8", "ULong": "u8", "Float": "f4", "Double": "f8", "vtkIdType": "i8",
}


# ---- low level: polylines -----------------------------------------------------------------
def read_vtp_polylines(path: str | Path) -> tuple[np.ndarray, list[np.ndarray], np.ndarray | None]:
    """Read the raw points and lines of a ``.vtp`` file, coordinates as stored.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    points : (N, 3) ndarray of float64
        Point coordinates exactly as in the file (no convention change).
    lines : list of (L_i,) ndarray of int64
        Point indices of each polyline, in file order.
    radius : (N,) ndarray of float64 or None
        ``MaximumInscribedSphereRadius`` if present.

    Raises
    ------
    InputError
        Missing or unreadable file, not a PolyData file, corrupt or truncated arrays,
        indices out of range.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InputError(f"not a valid VTK XML file ({exc})", path) from None
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", path) from None
    if root.tag != "VTKFile" or root.get("type") != "PolyData":
        raise InputError(f"expected a VTK XML PolyData file, found <{root.tag} type="
                         f"{root.get('type')!r}>", path)
    ctx = _Ctx(path, root)
    pieces = root.findall("./PolyData/Piece")
    if not pieces:
        raise InputError("VTK file has no <PolyData><Piece>", path)
    all_pts, all_lines, all_rad = [], [], []
    base = 0
    have_rad = True
    for piece in pieces:
        n_pts = _count(piece, "NumberOfPoints", path)
        n_lines = _count(piece, "NumberOfLines", path)
        pts_el = piece.find("./Points/DataArray")
        if n_pts == 0:
            continue
        if pts_el is None:
            raise InputError("piece has points but no <Points><DataArray>", path)
        pts = ctx.array(pts_el).astype(float)
        if pts.size != 3 * n_pts:
            raise InputError(f"Points array holds {pts.size} values; expected 3 x {n_pts}", path)
        pts = pts.reshape(n_pts, 3)
        rad_el = next((el for el in piece.findall("./PointData/DataArray")
                       if el.get("Name") == RADIUS_ARRAY), None)
        if rad_el is None:
            have_rad = False
            rad = np.full(n_pts, np.nan)
        else:
            rad = ctx.array(rad_el).astype(float)
            if rad.size != n_pts:
                raise InputError(f"{RADIUS_ARRAY} holds {rad.size} values; expected {n_pts}", path)
        lines = []
        if n_lines:
            conn_el = piece.find("./Lines/DataArray[@Name='connectivity']")
            off_el = piece.find("./Lines/DataArray[@Name='offsets']")
            if conn_el is None or off_el is None:
                raise InputError("<Lines> lacks its connectivity or offsets array", path)
            conn = ctx.array(conn_el).astype(np.int64)
            offs = ctx.array(off_el).astype(np.int64)
            if offs.size != n_lines:
                raise InputError(f"Lines offsets hold {offs.size} values; expected {n_lines}", path)
            starts = np.concatenate([[0], offs[:-1]])
            if np.any(np.diff(offs) < 0) or offs[-1] != conn.size or starts[0] < 0:
                raise InputError(f"Lines offsets are inconsistent with {conn.size} connectivity "
                                 "entries", path)
            if conn.size and (conn.min() < 0 or conn.max() >= n_pts):
                raise InputError(f"Lines connectivity refers to point {int(conn.max())}; file "
                                 f"has {n_pts} points", path)
            lines = [conn[s:e] + base for s, e in zip(starts, offs)]
        all_pts.append(pts)
        all_rad.append(rad)
        all_lines.extend(lines)
        base += n_pts
    points = np.concatenate(all_pts) if all_pts else np.zeros((0, 3))
    radius = np.concatenate(all_rad) if (all_rad and have_rad) else None
    return points, all_lines, radius


def _count(piece: ET.Element, name: str, path: Path) -> int:
    """A ``<Piece>`` count attribute as a whole number >= 0 (0 when absent)."""
    text = piece.get(name, "0")
    try:
        n = int(text)
    except ValueError:
        raise InputError(f"<Piece {name}={text!r:.40}>: expected a whole number", path) from None
    if n < 0:
        raise InputError(f"<Piece {name}={n}>: expected a whole number >= 0", path)
    return n


class _Ctx:
    """Decoding settings of one file (byte order, header type, compressor)."""

    def __init__(self, path: Path, root: ET.Element):
        self.path = path
        self.endian = ">" if root.get("byte_order", "LittleEndian") == "BigEndian" else "<"
        header = root.get("header_type", "UInt32")
        if header not in ("UInt32", "UInt64"):
            raise InputError(f"header_type must be UInt32 or UInt64, not {header!r}", path)
        self.hsize = 4 if header == "UInt32" else 8
        comp = root.get("compressor")
        if comp not in (None, "", "vtkZLibDataCompressor"):
            raise InputError(f"unsupported compressor {comp!r}; expected vtkZLibDataCompressor "
                             "or none", path)
        self.zlib = comp == "vtkZLibDataCompressor"

    def array(self, el: ET.Element) -> np.ndarray:
        name = el.get("Name", "Points")  # VTK leaves the points array unnamed at times
        vtype = el.get("type")
        if vtype not in _VTK_DTYPES:
            raise InputError(f"DataArray {name!r} has unsupported type {vtype!r}", self.path)
        dtype = np.dtype(self.endian + _VTK_DTYPES[vtype])
        fmt = el.get("format", "ascii")
        text = el.text or ""
        if fmt == "ascii":
            try:
                return np.array(text.split(), dtype=float).astype(dtype) if dtype.kind != "f" \
                    else np.array(text.split(), dtype=dtype)
            except ValueError:
                raise InputError(f"DataArray {name!r}: non-numeric ASCII value", self.path) from None
        if fmt == "binary":
            try:
                raw = self._binary("".join(text.split()))
            except (binascii.Error, ValueError, zlib.error, struct.error) as exc:
                raise InputError(f"DataArray {name!r}: corrupt or truncated binary data ({exc})",
                                 self.path) from None
            if len(raw) % dtype.itemsize:
                raise InputError(f"DataArray {name!r}: {len(raw)} bytes is not a whole number of "
                                 f"{vtype} values", self.path)
            return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
        raise InputError(f"DataArray {name!r}: format {fmt!r} is not supported (expected ascii "
                         "or binary)", self.path)

    def _binary(self, b64: str) -> bytes:
        hfmt = self.endian + ("I" if self.hsize == 4 else "Q")
        if not self.zlib:
            # header: one integer (byte count), then data; VTK encodes them together, some
            # writers separately -> try one block first, then the header on its own.
            try:
                blob = _b64(b64)
            except binascii.Error:  # '=' padding inside: header encoded on its own
                blob = b""
            if len(blob) >= self.hsize:
                n = struct.unpack(hfmt, blob[: self.hsize])[0]
                if len(blob) - self.hsize >= n:
                    return blob[self.hsize: self.hsize + n]
            hlen = _b64_len(self.hsize)
            n = struct.unpack(hfmt, _b64(b64[:hlen])[: self.hsize])[0]
            data = _b64(b64[hlen:])
            if len(data) < n:
                raise ValueError(f"expected {n} bytes, found {len(data)}")
            return data[:n]
        # compressed: [nblocks, blocksize, lastblocksize, csize_1..csize_n] then the blocks.
        first = _b64(b64[: _b64_len(3 * self.hsize)])
        nblocks = struct.unpack(hfmt, first[: self.hsize])[0]
        if nblocks == 0:
            return b""
        if nblocks > len(b64):
            raise ValueError(f"implausible block count {nblocks}")
        hbytes = (3 + nblocks) * self.hsize
        hlen = _b64_len(hbytes)
        header = _b64(b64[:hlen])[:hbytes]
        vals = struct.unpack(self.endian + ("I" if self.hsize == 4 else "Q") * (3 + nblocks), header)
        blocksize, last = vals[1], vals[2]
        csizes = vals[3:]
        total = sum(csizes)
        # VTK base64-encodes header and data separately (header padded with '='); if the
        # header's encoding ends exactly on a 3-byte boundary both readings coincide.
        sep = _b64(b64[hlen:])
        if len(sep) >= total:
            data = sep
        else:
            joint = _b64(b64)[hbytes:]
            if len(joint) < total:
                raise ValueError(f"expected {total} compressed bytes, found {max(len(sep), len(joint))}")
            data = joint
        out = []
        pos = 0
        for i, cs in enumerate(csizes):
            block = zlib.decompress(data[pos: pos + cs])
            want = last if (i == nblocks - 1 and last) else blocksize
            if len(block) != want:
                raise ValueError(f"block {i} inflates to {len(block)} bytes; expected {want}")
            out.append(block)
            pos += cs
        return b"".join(out)


def _b64(s: str) -> bytes:
    return base64.b64decode(s, validate=True)


def _b64_len(nbytes: int) -> int:
    return 4 * ((nbytes + 2) // 3)


# ---- graph level ------------------------------------------------------------------------
def read_vtp(path: str | Path, *, coords: str = "auto", reference: Volume | None = None,
             merge_tol: float = MERGE_TOL_MM) -> CenterlineGraph:
    """Read a VMTK centerline ``.vtp`` into a :class:`CenterlineGraph` in LPS mm.

    Parameters
    ----------
    path : str or Path
    coords : {"auto", "lps", "ras", "image"}
        Convention of the file's coordinates (see the module docstring).
    reference : Volume, optional
        The image the centerline belongs to; required by ``coords="image"``, used by
        ``"auto"`` to pick the convention.
    merge_tol : float, mm
        Points of different polylines closer than this become one node.

    Returns
    -------
    CenterlineGraph
        One ``OSTIUM`` per tree root (first point of the polylines), ``radius`` from
        ``MaximumInscribedSphereRadius`` (NaN when absent).

    Raises
    ------
    InputError
        File missing/corrupt, no lines, NaN/inf coordinates, ``"image"`` without reference.
    """
    path = Path(path)
    if coords not in COORDS:
        raise ValueError(f"coords must be one of {COORDS}, not {coords!r}")
    points, lines, radius = read_vtp_polylines(path)
    lines = [ln for ln in lines if len(ln) > 0]
    if not lines:
        raise InputError("centerline file holds no polylines", path)
    if not np.all(np.isfinite(points)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(points), axis=1))[0])
        raise InputError(f"point {bad} has a NaN or infinite coordinate", path)
    if coords == "auto":
        coords = "lps" if _has_marker(path) else choose_convention(points, reference)
    if coords == "image" and reference is None:
        raise InputError('coords="image" needs the reference image the centerline belongs to',
                         path)
    points = to_lps(points, coords, reference)
    polylines = [points[ln] for ln in lines]
    radii = None if radius is None else [radius[ln] for ln in lines]
    return CenterlineGraph.from_polylines(polylines, radii, merge_tol=merge_tol)


def _has_marker(path: Path) -> bool:
    with open(path, "rb") as f:
        return MARKER.encode() in f.read(512)


def to_lps(points: np.ndarray, coords: str, reference: Volume | None = None) -> np.ndarray:
    """Map file points ``(N, 3)`` in convention ``coords`` to LPS mm (see module docstring)."""
    points = np.asarray(points, dtype=float).reshape(-1, 3)
    if coords == "lps":
        return points.copy()
    if coords == "ras":
        return points * _RAS_FLIP
    if coords == "image":
        if reference is None:
            raise ValueError('coords="image" needs a reference volume')
        o_vtk = np.asarray(reference.origin) * _RAS_FLIP
        ijk = (points - o_vtk) / np.asarray(reference.spacing[::-1])
        return reference.index_to_world(ijk[:, ::-1])
    raise ValueError(f"coords must be 'lps', 'ras' or 'image', not {coords!r}")


def from_lps(points: np.ndarray, coords: str, reference: Volume | None = None) -> np.ndarray:
    """Inverse of :func:`to_lps`."""
    points = np.asarray(points, dtype=float).reshape(-1, 3)
    if coords == "lps":
        return points.copy()
    if coords == "ras":
        return points * _RAS_FLIP
    if coords == "image":
        if reference is None:
            raise ValueError('coords="image" needs a reference volume')
        ijk = reference.world_to_index(points)[:, ::-1]
        return np.asarray(reference.origin) * _RAS_FLIP + ijk * np.asarray(reference.spacing[::-1])
    raise ValueError(f"coords must be 'lps', 'ras' or 'image', not {coords!r}")


def choose_convention(points: np.ndarray, reference: Volume | None) -> str:
    """``"lps"``, ``"image"`` or ``"ras"``: which reading of ``points`` (N, 3) puts most
    points inside ``reference``'s grid; ties in that order; ``"lps"`` without a reference."""
    if reference is None or len(points) == 0:
        return "lps"
    counts = {c: _n_inside(to_lps(points, c, reference), reference) for c in ("lps", "image", "ras")}
    return max(counts, key=lambda c: counts[c])  # max keeps the first of equal counts


def _n_inside(points_lps: np.ndarray, ref: Volume) -> int:
    idx = ref.world_to_index(points_lps)
    shape = np.array(ref.shape)
    return int(np.sum(np.all((idx >= -0.5) & (idx <= shape - 0.5), axis=1)))


# the writer lives in its own module; its names stay importable from here
from coroseg.io.vtp_write import graph_polylines, polylines_to_vtp_text, write_vtp  # noqa: E402, F401

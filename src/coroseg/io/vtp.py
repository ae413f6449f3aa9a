"""VTK XML PolyData (``.vtp``) centerlines without a VTK dependency: the format, its coordinate
conventions and the reader (the writer is :mod:`coroseg.io.vtp_write`, re-exported here).

Format
------
Handles what VMTK, VTK, ParaView and 3D Slicer write for centerlines: ``<VTKFile
type="PolyData">`` with one or more ``<Piece>``, ``<Points>`` (``NumberOfComponents="3"``),
``<Lines>`` (``connectivity`` / ``offsets``) and a radius point array (mm) named
``MaximumInscribedSphereRadius`` (VMTK) or ``Radius`` (Slicer's Extract Centerline).
``DataArray`` elements may be ``format="ascii"``, ``"binary"`` (base64) or ``"appended"``
(``<AppendedData encoding="raw">`` or ``"base64"``), with or without
``compressor="vtkZLibDataCompressor"``; the decoding is :mod:`coroseg.io.vtk_xml`.

Coordinate convention
---------------------
:class:`~coroseg.io.centerline.CenterlineGraph` holds LPS mm. Three conventions occur
(``coords=``):

- ``"lps"``: points are LPS mm (3D Slicer >= 4.11 model files; what :func:`write_vtp`
  writes by default).
- ``"ras"``: points are RAS mm, ``x_ras = -x_lps``, ``y_ras = -y_lps`` (classic VTK/Slicer).
- ``"image"``: points live in the frame of a ``vtkImageData`` made from the reference image
  the centerline was extracted from: the image origin converted to RAS (x, y negated) but
  the axes *not* flipped and the direction matrix dropped, i.e.
  ``p = (-o_x, -o_y, o_z) + (i s_x, j s_y, k s_z)``. This is what the **ASOCA** centerlines
  use: mapped this way, 99.9-100 % of the points of all 12 cases fall inside their lumen
  mask (``benchmarks/centerline_hit_rate.py``); read as LPS or RAS, 0 % even fall inside the
  image grid. It needs the reference :class:`~coroseg.io.volume.Volume`.
- ``"auto"`` (default), decided deterministically: (1) the frame the file states: a
  ``FieldData`` string array ``SPACE`` with ``LPS`` or ``RAS`` (what 3D Slicer writes and
  reads), else the coroseg marker comment ``<!-- coroseg coordinates: LPS -->`` of files
  written before the ``SPACE`` field; (2) else, with a ``reference``, the convention that puts
  the most points inside the reference grid (within half a voxel), ties broken in the order
  ``lps``, ``image``, ``ras``; (3) else ``"lps"``.

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

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from coroseg.choices import Coords
from coroseg.errors import InputError
from coroseg.io.centerline import CenterlineGraph
from coroseg.io.vtk_xml import XmlArrays, read_vtk_xml

if TYPE_CHECKING:
    from coroseg.io.volume import Volume

RADIUS_ARRAY = "MaximumInscribedSphereRadius"
#: point arrays read as the radius (mm), first found wins: VMTK's, then Slicer's Extract Centerline's
RADIUS_ARRAYS = (RADIUS_ARRAY, "Radius")
MERGE_TOL_MM = 1e-6
COORDS = tuple(c.value for c in Coords)  # lps, ras, image, auto
MARKER = "<!-- coroseg coordinates: LPS -->"
#: name of the FieldData string array holding the frame (``LPS`` or ``RAS``), as 3D Slicer writes it
SPACE_FIELD = "SPACE"
FILE_SPACES = ("LPS", "RAS")
_RAS_FLIP = np.array([-1.0, -1.0, 1.0])


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
        The radius point array (:data:`RADIUS_ARRAYS`) if present.

    Raises
    ------
    InputError
        Missing or unreadable file, not a PolyData file, corrupt or truncated arrays,
        indices out of range.
    """
    points, lines, radius, _ = read_vtp_data(path)
    return points, lines, radius


def read_vtp_data(path: str | Path) -> tuple[np.ndarray, list[np.ndarray], np.ndarray | None, str | None]:
    """:func:`read_vtp_polylines` and the frame the file states: ``"LPS"``, ``"RAS"`` or ``None``
    (the ``SPACE`` field, else ``"LPS"`` for the coroseg marker comment)."""
    path = Path(path)
    root, arrays = read_vtk_xml(path)
    if root.tag != "VTKFile" or root.get("type") != "PolyData":
        raise InputError(f"expected a VTK XML PolyData file, found <{root.tag} type="
                         f"{root.get('type')!r}>", path)
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
        pts = arrays.array(pts_el).astype(float)
        if pts.size != 3 * n_pts:
            raise InputError(f"Points array holds {pts.size} values; expected 3 x {n_pts}", path)
        pts = pts.reshape(n_pts, 3)
        named = {el.get("Name"): el for el in piece.findall("./PointData/DataArray")}
        rad_name = next((n for n in RADIUS_ARRAYS if n in named), None)
        if rad_name is None:
            have_rad = False
            rad = np.full(n_pts, np.nan)
        else:
            rad = arrays.array(named[rad_name]).astype(float)
            if rad.size != n_pts:
                raise InputError(f"{rad_name} holds {rad.size} values; expected {n_pts}", path)
        lines = _piece_lines(piece, arrays, n_lines, n_pts, path)
        all_pts.append(pts)
        all_rad.append(rad)
        all_lines.extend(ln + base for ln in lines)
        base += n_pts
    points = np.concatenate(all_pts) if all_pts else np.zeros((0, 3))
    radius = np.concatenate(all_rad) if (all_rad and have_rad) else None
    space = _field_space(root, arrays, path)
    if space is None and _has_marker(path):
        space = "LPS"
    return points, all_lines, radius, space


def _piece_lines(piece: ET.Element, arrays: XmlArrays, n_lines: int, n_pts: int, path: Path) -> list[np.ndarray]:
    if not n_lines:
        return []
    conn_el = piece.find("./Lines/DataArray[@Name='connectivity']")
    off_el = piece.find("./Lines/DataArray[@Name='offsets']")
    if conn_el is None or off_el is None:
        raise InputError("<Lines> lacks its connectivity or offsets array", path)
    conn = arrays.array(conn_el).astype(np.int64)
    offs = arrays.array(off_el).astype(np.int64)
    if offs.size != n_lines:
        raise InputError(f"Lines offsets hold {offs.size} values; expected {n_lines}", path)
    return split_cells(conn, np.concatenate([[0], offs]), n_pts, path, what="Lines")


def split_cells(conn: np.ndarray, offsets: np.ndarray, n_pts: int, path: Path, *, what: str) -> list[np.ndarray]:
    """Cells from ``connectivity`` and ``offsets`` (``n_cells + 1`` values, the first 0).

    Raises :class:`InputError` for offsets that decrease or do not end at the connectivity's
    length, and for point indices outside ``0 .. n_pts - 1``.
    """
    if offsets.size == 0 or offsets[0] != 0 or np.any(np.diff(offsets) < 0) or offsets[-1] != conn.size:
        raise InputError(f"{what} offsets are inconsistent with {conn.size} connectivity entries", path)
    if conn.size and (conn.min() < 0 or conn.max() >= n_pts):
        bad = int(conn.max()) if conn.max() >= n_pts else int(conn.min())
        raise InputError(f"{what} connectivity refers to point {bad}; file has {n_pts} points", path)
    return [conn[s:e] for s, e in zip(offsets[:-1], offsets[1:])]


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


def _field_space(root: ET.Element, arrays: XmlArrays, path: Path) -> str | None:
    """The ``SPACE`` FieldData value (``"LPS"``/``"RAS"``), ``None`` when the file has none."""
    for el in root.iterfind(".//FieldData/*"):
        if el.get("Name") != SPACE_FIELD:
            continue
        values = arrays.strings(el)
        space = values[0].strip().upper() if values else ""
        if space not in FILE_SPACES:
            shown = values[0][:20] if values else ""
            raise InputError(f"FieldData {SPACE_FIELD} is {shown!r}; expected LPS or RAS", path)
        return space
    return None


def _has_marker(path: Path) -> bool:
    with open(path, "rb") as f:
        return MARKER.encode() in f.read(512)


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
        ``"auto"`` to pick the convention when the file does not state it.
    merge_tol : float, mm
        Points of different polylines closer than this become one node.

    Returns
    -------
    CenterlineGraph
        One ``OSTIUM`` per tree root (first point of the polylines), ``radius`` from the
        radius array (NaN when absent).

    Raises
    ------
    InputError
        File missing/corrupt, no lines, NaN/inf coordinates, ``"image"`` without reference.
    """
    path = Path(path)
    if coords not in COORDS:
        raise ValueError(f"coords must be one of {COORDS}, not {coords!r}")
    points, lines, radius, space = read_vtp_data(path)
    return graph_from_lines(points, lines, radius, path, coords=coords, reference=reference, file_space=space,
                            merge_tol=merge_tol)


def graph_from_lines(points: np.ndarray, lines: list[np.ndarray], radius: np.ndarray | None, path: Path, *,
                     coords: str, reference: Volume | None, file_space: str | None,
                     merge_tol: float = MERGE_TOL_MM) -> CenterlineGraph:
    """Polylines as stored in a file -> :class:`CenterlineGraph` in LPS mm.

    ``coords="auto"`` takes ``file_space`` (``"LPS"``/``"RAS"``, what the file states) when
    given, else :func:`choose_convention`. Shared by the ``.vtp`` and legacy ``.vtk`` readers.
    """
    lines = [ln for ln in lines if len(ln) > 0]
    if not lines:
        raise InputError("centerline file holds no polylines", path)
    if not np.all(np.isfinite(points)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(points), axis=1))[0])
        raise InputError(f"point {bad} has a NaN or infinite coordinate", path)
    if coords == "auto":
        coords = file_space.lower() if file_space else choose_convention(points, reference)
    if coords == "image" and reference is None:
        raise InputError('coords="image" needs the reference image the centerline belongs to',
                         path)
    points = to_lps(points, coords, reference)
    polylines = [points[ln] for ln in lines]
    radii = None if radius is None else [radius[ln] for ln in lines]
    return CenterlineGraph.from_polylines(polylines, radii, merge_tol=merge_tol)


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

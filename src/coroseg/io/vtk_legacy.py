"""Legacy VTK (``.vtk``) POLYDATA centerlines without a VTK dependency.

The format (VTK's "simple legacy format"): a ``# vtk DataFile Version X.Y`` line, a title
line, ``ASCII`` or ``BINARY`` (big-endian), ``DATASET POLYDATA``, then sections:

- ``POINTS n type`` and ``3 n`` values;
- ``LINES n size`` with ``size`` integers ``[k, id_1 .. id_k]`` per line (file versions < 5),
  or ``LINES n_offsets n_conn`` + ``OFFSETS type`` + ``CONNECTIVITY type`` (version 5.x,
  what VTK >= 9 writes); ``VERTICES`` / ``POLYGONS`` / ``TRIANGLE_STRIPS`` are skipped;
- ``POINT_DATA n`` with ``SCALARS name type [ncomp]`` (+ ``LOOKUP_TABLE``) or
  ``FIELD name k`` arrays; the radius (mm) is the array named ``MaximumInscribedSphereRadius``
  or ``Radius`` (:data:`coroseg.io.vtp.RADIUS_ARRAYS`). Other attributes (``VECTORS``,
  ``NORMALS``, ``TEXTURE_COORDINATES``, ``TENSORS``, ``COLOR_SCALARS``, ``CELL_DATA``, ...)
  and VTK 9's ``METADATA`` blocks are skipped.

Frame: 3D Slicer writes ``SPACE=LPS`` or ``SPACE=RAS`` in the title line (``3D Slicer output.
SPACE=RAS``); with ``coords="auto"`` that is used, otherwise the convention is resolved as
for ``.vtp`` (:mod:`coroseg.io.vtp`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from coroseg.errors import InputError
from coroseg.io.centerline import CenterlineGraph
from coroseg.io.vtk_xml import read_bytes
from coroseg.io.vtp import COORDS, MERGE_TOL_MM, RADIUS_ARRAYS, graph_from_lines, split_cells

if TYPE_CHECKING:
    from coroseg.io.volume import Volume

#: legacy type names -> numpy (binary data is big-endian); VTK writes vtkIdType as 32-bit int
LEGACY_DTYPES = {
    "char": "i1", "unsigned_char": "u1", "short": "i2", "unsigned_short": "u2", "int": "i4",
    "unsigned_int": "u4", "long": "i8", "unsigned_long": "u8", "float": "f4", "double": "f8",
    "vtkidtype": "i4", "vtktypeint8": "i1", "vtktypeuint8": "u1", "vtktypeint16": "i2",
    "vtktypeuint16": "u2", "vtktypeint32": "i4", "vtktypeuint32": "u4", "vtktypeint64": "i8",
    "vtktypeuint64": "u8", "vtktypefloat32": "f4", "vtktypefloat64": "f8",
}
_CELL_SECTIONS = ("VERTICES", "LINES", "POLYGONS", "TRIANGLE_STRIPS")
_SPACE_RE = re.compile(r"\bSPACE=(LPS|RAS)\b", re.IGNORECASE)


class _Stream:
    """Reads keyword lines and value blocks of a legacy file held in memory."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.pos = data, path, 0
        self.binary = False

    def raw_line(self) -> str | None:
        """The next line as it is (``None`` at the end)."""
        if self.pos >= len(self.data):
            return None
        end = self.data.find(b"\n", self.pos)
        end = len(self.data) if end < 0 else end
        line, self.pos = self.data[self.pos: end], end + 1
        return line.decode("latin-1").rstrip("\r")

    def line(self) -> list[str] | None:
        """The words of the next non-empty line (``None`` at the end)."""
        while True:
            start = self.pos
            text = self.raw_line()
            if text is None:
                return None
            if text.strip():
                if any(ord(c) < 9 or 13 < ord(c) < 32 or ord(c) > 126 for c in text):
                    raise InputError(f"expected a keyword at byte {start}, found binary data", self.path)
                return text.split()

    def peek(self) -> list[str] | None:
        """The words of the next keyword line without reading it; ``None`` at the end or before binary data."""
        pos = self.pos
        try:
            return self.line()
        except InputError:
            return None
        finally:
            self.pos = pos

    def values(self, count: int, vtype: str, what: str) -> np.ndarray:
        """``count`` values of legacy type ``vtype``, flat: binary as stored (native byte order),
        ASCII as float64 (float types) or int64."""
        key = vtype.lower()
        if key not in LEGACY_DTYPES:
            raise InputError(f"{what}: unsupported data type {vtype!r}", self.path)
        dtype = np.dtype(">" + LEGACY_DTYPES[key])
        if count * (dtype.itemsize if self.binary else 2) > len(self.data) - self.pos + 1:
            raise InputError(f"{what}: {count} values do not fit in the rest of the file (truncated?)", self.path)
        if self.binary:
            nbytes = count * dtype.itemsize
            raw = self.data[self.pos: self.pos + nbytes]
            self.pos += nbytes
            return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
        words = self.data[self.pos:].split(None, count)
        if len(words) < count:
            raise InputError(f"{what}: expected {count} values, found {len(words)} (truncated?)", self.path)
        self.pos = len(self.data) - len(words[count]) if len(words) > count else len(self.data)
        try:  # text keeps its own precision: float64 / int64 whatever the declared type
            return np.array(words[:count], dtype=np.float64 if dtype.kind == "f" else np.int64)
        except (ValueError, OverflowError):
            raise InputError(f"{what}: non-numeric value", self.path) from None

    def skip_metadata(self) -> None:
        """Skip a VTK 9 ``METADATA`` block if one comes next (it ends at an empty line)."""
        words = self.peek()
        if not words or words[0].upper() != "METADATA":
            return
        self.line()
        while True:
            text = self.raw_line()
            if text is None or not text.strip():
                return


def _int(word: str, what: str, path: Path) -> int:
    try:
        n = int(word)
    except ValueError:
        raise InputError(f"{what}: {word!r:.40} is not a whole number", path) from None
    if n < 0:
        raise InputError(f"{what}: {n} is negative", path)
    return n


def _need(words: list[str], n: int, path: Path) -> None:
    if len(words) < n:
        raise InputError(f"'{' '.join(words)[:60]}': expected {n} words on this line", path)


def read_vtk_polylines(path: str | Path) -> tuple[np.ndarray, list[np.ndarray], np.ndarray | None, str | None]:
    """Read the points, lines and radius of a legacy POLYDATA file, coordinates as stored.

    Returns
    -------
    points : (N, 3) ndarray of float64
    lines : list of (L_i,) ndarray of int64
    radius : (N,) ndarray of float64 or None
    space : "LPS", "RAS" or None
        The frame named in the title line (``SPACE=...``), ``None`` when it names none.

    Raises
    ------
    InputError
        Missing file, not a legacy POLYDATA file, truncated or non-numeric data, indices out
        of range, counts that do not agree.
    """
    path = Path(path)
    s = _Stream(read_bytes(path), path)
    first = s.raw_line() or ""
    if not first.lower().startswith("# vtk datafile version"):
        raise InputError(f"not a legacy VTK file (first line {first[:40]!r}; expected '# vtk DataFile Version')",
                         path)
    title = s.raw_line() or ""
    mode = (s.line() or [""])[0].upper()
    if mode not in ("ASCII", "BINARY"):
        raise InputError(f"expected ASCII or BINARY on line 3, found {mode[:20]!r}", path)
    s.binary = mode == "BINARY"
    dataset = s.line() or []
    if len(dataset) < 2 or dataset[0].upper() != "DATASET" or dataset[1].upper() != "POLYDATA":
        raise InputError(f"expected DATASET POLYDATA, found {' '.join(dataset)[:40]!r}", path)
    points = None
    lines: list[np.ndarray] = []
    radius = None
    while (words := s.line()) is not None:
        key = words[0].upper()
        if key == "POINTS":
            _need(words, 3, path)
            n = _int(words[1], "POINTS", path)
            points = s.values(3 * n, words[2], "POINTS").astype(float).reshape(n, 3)
            s.skip_metadata()
        elif key in _CELL_SECTIONS:
            _need(words, 3, path)
            cells = _cells(s, words, path)
            if key == "LINES":
                lines = cells
        elif key in ("POINT_DATA", "CELL_DATA"):
            _need(words, 2, path)
            found = _attributes(s, _int(words[1], key, path), path)
            if key == "POINT_DATA":
                radius = found
        elif key == "FIELD":  # dataset-level field data
            _need(words, 3, path)
            _field(s, words, None, path)
        else:
            raise InputError(f"unexpected section {words[0][:30]!r}", path)
    if points is None:
        raise InputError("file has no POINTS", path)
    n_pts = len(points)
    if lines and max(int(ln.max()) if ln.size else -1 for ln in lines) >= n_pts:
        bad = max(int(ln.max()) for ln in lines if ln.size)
        raise InputError(f"LINES refer to point {bad}; file has {n_pts} points", path)
    if radius is not None and radius.size != n_pts:
        raise InputError(f"the radius array holds {radius.size} values; expected {n_pts}", path)
    match = _SPACE_RE.search(title)
    return points, lines, radius, match.group(1).upper() if match else None


def _cells(s: _Stream, words: list[str], path: Path) -> list[np.ndarray]:
    key = words[0].upper()
    n, size = _int(words[1], key, path), _int(words[2], key, path)
    nxt = s.peek()
    if nxt and nxt[0].upper() == "OFFSETS":  # file version 5: offsets + connectivity
        _need(nxt, 2, path)
        s.line()
        offsets = s.values(n, nxt[1], f"{key} OFFSETS").astype(np.int64)
        s.skip_metadata()
        conn_words = s.line() or [""]
        if conn_words[0].upper() != "CONNECTIVITY" or len(conn_words) < 2:
            raise InputError(f"{key}: expected CONNECTIVITY after OFFSETS, found {' '.join(conn_words)[:40]!r}", path)
        conn = s.values(size, conn_words[1], f"{key} CONNECTIVITY").astype(np.int64)
        s.skip_metadata()
        return split_cells(conn, offsets, np.iinfo(np.int64).max, path, what=key)
    flat = s.values(size, "int", key).astype(np.int64)
    cells, pos = [], 0
    for _ in range(n):
        if pos >= size or flat[pos] < 0 or pos + 1 + flat[pos] > size:
            raise InputError(f"{key}: {n} cells do not fit in {size} values", path)
        k = int(flat[pos])
        cells.append(flat[pos + 1: pos + 1 + k])
        pos += 1 + k
    if pos != size:
        raise InputError(f"{key}: {n} cells use {pos} of {size} values", path)
    if any(c.size and c.min() < 0 for c in cells):
        raise InputError(f"{key} refer to a negative point index", path)
    return cells


#: attributes ``KEY name type`` that are skipped -> values per tuple
_SKIPPED = {"VECTORS": 3, "NORMALS": 3, "TENSORS": 9, "TENSORS6": 6, "GLOBAL_IDS": 1, "PEDIGREE_IDS": 1}


def _attributes(s: _Stream, n: int, path: Path) -> np.ndarray | None:
    """Read a POINT_DATA / CELL_DATA block of ``n`` tuples; return the radius array if there is one."""
    radius = None
    while (words := s.peek()) is not None:
        key = words[0].upper()
        if key in ("POINT_DATA", "CELL_DATA", "POINTS") or key in _CELL_SECTIONS:
            return radius
        s.line()
        if key == "SCALARS":
            _need(words, 3, path)
            ncomp = _int(words[3], "SCALARS", path) if len(words) > 3 else 1
            table = s.peek()
            if table and table[0].upper() == "LOOKUP_TABLE":
                s.line()
            values = s.values(n * ncomp, words[2], f"SCALARS {words[1]}").astype(float)
            if words[1] in RADIUS_ARRAYS and ncomp == 1 and radius is None:
                radius = values
        elif key == "FIELD":
            _need(words, 3, path)
            radius = _field(s, words, n, path, radius)
        elif key == "LOOKUP_TABLE":
            _need(words, 3, path)
            size = _int(words[2], "LOOKUP_TABLE", path)
            s.values(4 * size, "unsigned_char" if s.binary else "float", "LOOKUP_TABLE")
        elif key == "COLOR_SCALARS":
            _need(words, 3, path)
            m = _int(words[2], "COLOR_SCALARS", path)
            s.values(n * m, "unsigned_char" if s.binary else "float", "COLOR_SCALARS")
        elif key == "TEXTURE_COORDINATES":
            _need(words, 4, path)
            s.values(n * _int(words[2], key, path), words[3], key)
        elif key in _SKIPPED:
            _need(words, 3, path)
            s.values(n * _SKIPPED[key], words[2], key)
        elif key == "METADATA":  # its keyword line is read: skip to the empty line that ends it
            while (text := s.raw_line()) is not None and text.strip():
                pass
            continue
        else:
            raise InputError(f"unexpected attribute {words[0][:30]!r} in point or cell data", path)
        s.skip_metadata()
    return radius


def _field(s: _Stream, words: list[str], n: int | None, path: Path, radius: np.ndarray | None = None):
    """Read ``FIELD name k``'s arrays (``name ncomp ntuples type`` + values); keep a radius array."""
    for _ in range(_int(words[2], "FIELD", path)):
        head = s.line()
        if head is None:
            raise InputError("FIELD: file ends before its arrays", path)
        if head[0].upper() == "NULL_ARRAY":
            continue
        _need(head, 4, path)
        ncomp, ntup = _int(head[1], f"FIELD array {head[0]}", path), _int(head[2], f"FIELD array {head[0]}", path)
        if head[3].lower() == "string":
            raise InputError(f"FIELD array {head[0][:30]!r}: string arrays are not supported", path)
        values = s.values(ncomp * ntup, head[3], f"FIELD array {head[0]}").astype(float)
        s.skip_metadata()
        if head[0] in RADIUS_ARRAYS and ncomp == 1 and radius is None and (n is None or ntup == n):
            radius = values
    return radius


def read_vtk(path: str | Path, *, coords: str = "auto", reference: Volume | None = None,
             merge_tol: float = MERGE_TOL_MM) -> CenterlineGraph:
    """Read a legacy ``.vtk`` POLYDATA centerline into a :class:`CenterlineGraph` in LPS mm.

    ``coords`` and ``reference`` as for :func:`coroseg.io.vtp.read_vtp`; ``"auto"`` takes the
    ``SPACE=`` of the title line first. Lines become polylines (ostium = first point).
    """
    path = Path(path)
    if coords not in COORDS:
        raise ValueError(f"coords must be one of {COORDS}, not {coords!r}")
    points, lines, radius, space = read_vtk_polylines(path)
    return graph_from_lines(points, lines, radius, path, coords=coords, reference=reference, file_space=space,
                            merge_tol=merge_tol)


__all__ = ["read_vtk", "read_vtk_polylines", "LEGACY_DTYPES"]

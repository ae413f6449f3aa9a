"""Writing VTK XML PolyData (``.vtp``) centerlines: VMTK-style polylines, LPS by default.

The format, the coordinate conventions and the reader are in :mod:`coroseg.io.vtp`. Files in
LPS or RAS state their frame as 3D Slicer does, in a ``FieldData`` string array ``SPACE``
(Slicer then places them without asking); LPS files also keep the marker comment older coroseg
versions look for. ``coords="image"`` files state nothing (the frame is not one Slicer knows).
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from coroseg.io.atomic import atomic_path
from coroseg.io.centerline import CenterlineGraph
from coroseg.io.vtp import MARKER, RADIUS_ARRAY, SPACE_FIELD, from_lps

if TYPE_CHECKING:
    from coroseg.io.volume import Volume


def graph_polylines(graph: CenterlineGraph) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One ostium -> end point path per end point (node ids), and the matching radii.

    Trees without an ``OSTIUM`` node are rooted at their lowest node id. Paths are listed by
    ostium, then end point node id, so the output is deterministic.
    """
    import networkx as nx

    g = graph.graph
    paths: list[np.ndarray] = []
    for comp in sorted(nx.connected_components(g), key=min):
        ostia = sorted(n for n in comp if g.nodes[n].get("topology") == "OSTIUM")
        root = ostia[0] if ostia else min(comp)
        if len(comp) == 1:
            paths.append(np.array([root]))
            continue
        pred = nx.predecessor(g, root)
        ends = sorted(n for n in comp if g.degree(n) == 1 and n != root)
        for e in ends:
            p = [e]
            while p[-1] != root:
                p.append(pred[p[-1]][0])
            paths.append(np.array(p[::-1]))
    return paths, [np.array([g.nodes[n]["radius"] for n in p], dtype=float) for p in paths]


def write_vtp(graph: CenterlineGraph, path: str | Path, *, binary: bool = True,
              coords: str = "lps", reference: Volume | None = None) -> None:
    """Write ``graph`` as VMTK-style polylines (one per ostium -> end point path).

    Parameters
    ----------
    graph : CenterlineGraph
        Positions in LPS mm.
    path : str or Path
        Written atomically.
    binary : bool
        zlib-compressed base64 arrays (``True``) or ASCII (``False``).
    coords : {"lps", "ras", "image"}
        Convention written to the file. ``"lps"`` (default) and ``"ras"`` are stated in the
        ``SPACE`` field (``"lps"`` also by the marker comment), so ``read_vtp(coords="auto")``
        and 3D Slicer read them back exactly; for ``"image"`` pass the same ``coords`` and
        ``reference`` to :func:`read_vtp`.
    reference : Volume, optional
        Needed by ``coords="image"``.

    Notes
    -----
    Points shared by several paths are written once per path (as VMTK does); the reader merges
    them back. Positions are stored as Float64 so a round trip is exact.
    """
    if coords not in ("lps", "ras", "image"):
        raise ValueError(f"coords must be 'lps', 'ras' or 'image', not {coords!r}")
    paths, radii = graph_polylines(graph)
    g = graph.graph
    pts = [np.array([g.nodes[n]["pos"] for n in p], dtype=float).reshape(-1, 3) for p in paths]
    points = np.concatenate(pts) if pts else np.zeros((0, 3))
    points = from_lps(points, coords, reference)
    radius = np.concatenate(radii) if radii else np.zeros(0)
    offsets = np.cumsum([len(p) for p in paths]).astype(np.int64)
    conn = np.arange(len(points), dtype=np.int64)
    space = {"lps": "LPS", "ras": "RAS"}.get(coords)
    text = _polydata_xml(points, radius, conn, offsets, binary=binary, marker=coords == "lps", space=space)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="ascii")


def _polydata_xml(points: np.ndarray, radius: np.ndarray, conn: np.ndarray, offsets: np.ndarray,
                  *, binary: bool, marker: bool = False, space: str | None = None) -> str:
    comp = ' compressor="vtkZLibDataCompressor"' if binary else ""
    fmt = "binary" if binary else "ascii"

    def da(arr: np.ndarray, vtype: str, name: str, ncomp: int = 1) -> str:
        nc = f' NumberOfComponents="{ncomp}"' if ncomp > 1 else ""
        body = _encode(arr, binary=binary)
        return (f'        <DataArray type="{vtype}" Name="{name}"{nc} format="{fmt}">\n'
                f"          {body}\n        </DataArray>\n")

    return (
        '<?xml version="1.0"?>\n'
        + (MARKER + "\n" if marker else "")
        + f'<VTKFile type="PolyData" version="0.1" byte_order="LittleEndian" header_type="UInt64"{comp}>\n'
        "  <PolyData>\n"
        + _space_field(space)
        + f'    <Piece NumberOfPoints="{len(points)}" NumberOfVerts="0" NumberOfLines="{len(offsets)}"'
        ' NumberOfStrips="0" NumberOfPolys="0">\n'
        f'      <PointData Scalars="{RADIUS_ARRAY}">\n'
        + da(radius.astype("<f8"), "Float64", RADIUS_ARRAY)
        + "      </PointData>\n      <Points>\n"
        + da(points.astype("<f8"), "Float64", "Points", 3)
        + "      </Points>\n      <Lines>\n"
        + da(conn.astype("<i8"), "Int64", "connectivity")
        + da(offsets.astype("<i8"), "Int64", "offsets")
        + "      </Lines>\n    </Piece>\n  </PolyData>\n</VTKFile>\n"
    )


def _space_field(space: str | None) -> str:
    """The ``SPACE`` FieldData string array (ASCII: the character codes, then 0), or nothing."""
    if space is None:
        return ""
    codes = " ".join(str(b) for b in space.encode("ascii") + b"\0")
    return ("    <FieldData>\n"
            f'      <Array type="String" Name="{SPACE_FIELD}" NumberOfTuples="1" format="ascii">\n'
            f"        {codes}\n      </Array>\n    </FieldData>\n")


def _encode(arr: np.ndarray, *, binary: bool, blocksize: int = 32768) -> str:
    flat = np.ascontiguousarray(arr).ravel()
    if not binary:
        if flat.dtype.kind == "f":
            return " ".join(repr(float(v)) for v in flat)
        return " ".join(str(int(v)) for v in flat)
    raw = flat.tobytes()
    blocks = [raw[i: i + blocksize] for i in range(0, len(raw), blocksize)] or []
    comp = [zlib.compress(b) for b in blocks]
    last = len(blocks[-1]) if blocks and len(blocks[-1]) != blocksize else 0
    header = struct.pack("<" + "Q" * (3 + len(comp)), len(comp), blocksize, last,
                         *[len(c) for c in comp])
    return base64.b64encode(header).decode() + base64.b64encode(b"".join(comp)).decode()


def polylines_to_vtp_text(polylines: Sequence[np.ndarray], radii: Sequence[np.ndarray], *,
                          binary: bool = True) -> str:
    """XML text for raw polylines (coordinates written as given); used by tests and tools."""
    points = np.concatenate([np.asarray(p, float).reshape(-1, 3) for p in polylines])
    radius = np.concatenate([np.asarray(r, float) for r in radii])
    offsets = np.cumsum([len(p) for p in polylines]).astype(np.int64)
    return _polydata_xml(points, radius, np.arange(len(points), dtype=np.int64), offsets,
                         binary=binary)


__all__ = ["write_vtp", "graph_polylines", "polylines_to_vtp_text"]

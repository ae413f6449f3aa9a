"""Centerline graphs as GML in the HCATNetwork ``SimpleCenterlineGraph`` convention.

HCATNetwork (https://github.com/AAMIASoftwares-research/HCATNetwork) stores a coronary
centerline as a GML graph whose attributes are all strings:

- node: ``x``, ``y``, ``z`` (mm), ``r`` (radius, mm), ``topology`` (``OSTIUM``, ``SEGMENT``,
  ``INTERSECTION``, ``ENDPOINT``), ``side`` (``LEFT``, ``RIGHT``; coroseg writes ``NONE``
  when the side is unknown);
- edge: ``weight`` (segment length, mm).

coroseg writes positions in **LPS** mm and says so in the graph attribute
``coordinates = "LPS"``; floats are written with ``repr`` so a round trip is exact.

HCATNetwork itself records no frame. The prior work's graphs (``Centerlines_graphs/<id>.GML``
beside ASOCA's ``CTCA/``) were built from the ASOCA ``.vtp`` centerlines and keep their
coordinates, the ``"image"`` convention of :mod:`coroseg.io.vtp`. So a file without a
``coordinates`` attribute is resolved as a ``.vtp`` without a ``SPACE`` field is
(``coords="auto"``: with a ``reference``, the convention that puts the most points inside it;
without one, LPS).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np

from coroseg.errors import InputError
from coroseg.io.atomic import atomic_path
from coroseg.io.centerline import SIDES, TOPOLOGIES, CenterlineGraph

if TYPE_CHECKING:
    from coroseg.io.volume import Volume

NODE_ATTRS = ("x", "y", "z", "r", "topology", "side")


def write_gml(graph: CenterlineGraph, path: str | Path) -> None:
    """Write ``graph`` (LPS mm) as HCATNetwork-style GML, atomically.

    Node ids become the strings ``"0"``, ``"1"``, ... in ``graph.nodes`` order.
    """
    g = graph.graph
    ids = {n: str(i) for i, n in enumerate(g.nodes)}
    out = nx.Graph(coordinates="LPS", units="mm")
    for n, d in g.nodes(data=True):
        x, y, z = (float(v) for v in d["pos"])
        side = d.get("side")
        out.add_node(ids[n], x=repr(x), y=repr(y), z=repr(z), r=repr(float(d.get("radius", math.nan))),
                     topology=str(d.get("topology", "SEGMENT")), side=side if side in SIDES else "NONE")
    for a, b, d in g.edges(data=True):
        w = d.get("length")
        if w is None:
            w = float(np.linalg.norm(np.asarray(g.nodes[a]["pos"]) - np.asarray(g.nodes[b]["pos"])))
        out.add_edge(ids[a], ids[b], weight=repr(float(w)))
    with atomic_path(path) as tmp:
        nx.write_gml(out, tmp)


def read_gml(path: str | Path, *, coords: str = "auto", reference: Volume | None = None) -> CenterlineGraph:
    """Read an HCATNetwork-style GML centerline graph into LPS mm.

    Parameters
    ----------
    path : str or Path
    coords : {"auto", "lps", "ras", "image"}
        Frame of the file's positions (:mod:`coroseg.io.vtp`); ``"auto"`` takes the graph's
        ``coordinates`` attribute (``LPS``/``RAS``), else decides with ``reference``.
    reference : Volume, optional
        The image the centerline belongs to (needed by ``"image"``).

    Raises
    ------
    InputError
        Missing or unparsable file, a node or edge lacking an attribute, a non-numeric or
        NaN/inf value, an unknown topology or side, or an empty graph. The message names the
        file, the node (or edge) and the attribute.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", path)
    try:
        src = nx.read_gml(path, label="label")
    except (nx.NetworkXError, ValueError, UnicodeDecodeError, IndexError) as exc:  # IndexError: an open string
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise InputError(f"not a valid GML graph ({reason})", path) from None
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", path) from None
    if src.number_of_nodes() == 0:
        raise InputError("centerline graph has no nodes", path)
    if src.is_directed():
        src = src.to_undirected()
    g = nx.Graph()
    index = {}
    ostia = []
    for i, (n, d) in enumerate(src.nodes(data=True)):
        for key in NODE_ATTRS:
            if key not in d:
                raise InputError(f"node {n!r} lacks attribute {key!r} (expected {', '.join(NODE_ATTRS)})",
                                 path)
        pos = np.array([_float(d[k], path, f"node {n!r} attribute {k!r}") for k in "xyz"])
        if not np.all(np.isfinite(pos)):
            raise InputError(f"node {n!r} has a NaN or infinite position", path)
        r = _float(d["r"], path, f"node {n!r} attribute 'r'")
        topo = str(d["topology"]).upper().split(".")[-1]  # accept "ArteryNodeTopology.OSTIUM"
        if topo not in TOPOLOGIES:
            raise InputError(f"node {n!r} has topology {d['topology']!r}; expected one of "
                             f"{', '.join(TOPOLOGIES)}", path)
        side = str(d["side"]).upper().split(".")[-1]
        if side not in SIDES + ("NONE", ""):
            raise InputError(f"node {n!r} has side {d['side']!r}; expected LEFT, RIGHT or NONE", path)
        index[n] = i
        g.add_node(i, pos=pos, radius=r, topology=topo, side=side if side in SIDES else None)
        if topo == "OSTIUM":
            ostia.append(i)
    for a, b, d in src.edges(data=True):
        if "weight" not in d:
            raise InputError(f"edge ({a!r}, {b!r}) lacks attribute 'weight'", path)
        _float(d["weight"], path, f"edge ({a!r}, {b!r}) attribute 'weight'")
        ia, ib = index[a], index[b]
        if ia != ib:
            g.add_edge(ia, ib, length=float(np.linalg.norm(g.nodes[ia]["pos"] - g.nodes[ib]["pos"])))
    return _to_lps(g, src.graph.get("coordinates"), coords, reference, path)


def _to_lps(g: nx.Graph, stated: object, coords: str, reference: Volume | None, path: Path) -> CenterlineGraph:
    """Move the node positions of ``g`` from the file's frame to LPS (edge lengths follow)."""
    from coroseg.io.vtp import COORDS, choose_convention, to_lps

    if coords not in COORDS:
        raise ValueError(f"coords must be one of {COORDS}, not {coords!r}")
    nodes = list(g.nodes)
    pos = np.array([g.nodes[n]["pos"] for n in nodes], dtype=float).reshape(-1, 3)
    if coords == "auto":
        space = str(stated).upper() if stated is not None else ""
        coords = space.lower() if space in ("LPS", "RAS") else choose_convention(pos, reference)
    if coords == "image" and reference is None:
        raise InputError('coords="image" needs the reference image the centerline belongs to', path)
    if coords != "lps":
        for n, p in zip(nodes, to_lps(pos, coords, reference)):
            g.nodes[n]["pos"] = p
        for a, b in g.edges:
            g.edges[a, b]["length"] = float(np.linalg.norm(g.nodes[a]["pos"] - g.nodes[b]["pos"]))
    return CenterlineGraph(g)


def _float(value: object, path: Path, what: str) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"{what} is {value!r}, not a number", path) from None

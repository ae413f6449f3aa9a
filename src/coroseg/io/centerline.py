"""``CenterlineGraph``: a coronary centerline tree in world coordinates.

A thin wrapper over :class:`networkx.Graph`. Each node carries

- ``pos``: ``(3,)`` float ndarray, LPS world mm ``(x, y, z)``;
- ``radius``: float, mm (maximum inscribed sphere radius);
- ``topology``: one of ``OSTIUM``, ``SEGMENT``, ``INTERSECTION``, ``ENDPOINT``
  (the HCATNetwork ``SimpleCenterlineGraph`` vocabulary);
- ``side``: ``LEFT``, ``RIGHT`` or ``None`` (left or right coronary tree).

Edges join consecutive points along a vessel and carry ``length`` (mm). Topology is derived
from node degree, except that ostia are marked explicitly (a tree root has degree 1 like an
end point).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import networkx as nx
import numpy as np

TOPOLOGIES = ("OSTIUM", "SEGMENT", "INTERSECTION", "ENDPOINT")
SIDES = ("LEFT", "RIGHT")


class CenterlineGraph:
    """A forest of coronary trees (usually two: left and right), positions in LPS mm."""

    def __init__(self, graph: nx.Graph | None = None):
        self.graph = graph if graph is not None else nx.Graph()

    # ---- construction -----------------------------------------------------------------
    @classmethod
    def from_polylines(
        cls,
        polylines: Sequence[np.ndarray],
        radii: Sequence[np.ndarray] | None = None,
        *,
        merge_tol: float = 1e-3,
        sides: Sequence[str | None] | None = None,
    ) -> CenterlineGraph:
        """Build a tree from ostium-to-end polylines, merging points they share.

        Parameters
        ----------
        polylines : list of (N_i, 3) ndarray, mm
            Each runs from an ostium to an end point (VMTK convention). A point closer than
            ``merge_tol`` mm to a point of an *earlier* polyline (or to the point just before
            it) becomes that node, so the shared proximal parts of several polylines collapse
            into one trunk. Points of the same polyline are never fused with each other
            otherwise (closely sampled VMTK lines would form spurious loops).
        radii : list of (N_i,) ndarray, mm, optional
        sides : list of "LEFT"/"RIGHT"/None, optional
        """
        from scipy.spatial import cKDTree

        g = nx.Graph()
        pts_all: list[np.ndarray] = []
        ids_all: list[int] = []
        starts: set[int] = set()
        for li, line in enumerate(polylines):
            line = np.asarray(line, dtype=float).reshape(-1, 3)
            r = np.full(len(line), np.nan) if radii is None else np.asarray(radii[li], dtype=float)
            side = None if sides is None else sides[li]
            # match against earlier polylines only (one KD-tree query per polyline): matching
            # a polyline against itself would fuse its own closely spaced points into loops
            match = np.full(len(line), -1, dtype=np.int64)
            if pts_all and len(line):
                d, i = cKDTree(np.concatenate(pts_all)).query(line)
                ids = np.asarray(ids_all, dtype=np.int64)
                ok = d <= merge_tol
                match[ok] = ids[i[ok]]
            prev = None
            new_pts: list[np.ndarray] = []
            new_ids: list[int] = []
            for pi, (p, rad) in enumerate(zip(line, r)):
                if match[pi] >= 0:
                    nid = int(match[pi])
                elif prev is not None and np.linalg.norm(g.nodes[prev]["pos"] - p) <= merge_tol:
                    nid = prev  # repeated point
                else:
                    nid = g.number_of_nodes()
                    g.add_node(nid, pos=p.copy(), radius=float(rad), side=side, topology="SEGMENT")
                    new_pts.append(p)
                    new_ids.append(nid)
                if pi == 0:
                    starts.add(nid)
                if prev is not None and prev != nid:
                    g.add_edge(prev, nid, length=float(np.linalg.norm(g.nodes[prev]["pos"] - p)))
                prev = nid
            if new_pts:
                pts_all.append(np.asarray(new_pts))
                ids_all.extend(new_ids)
        out = cls(g)
        out.update_topology(ostia=[s for s in starts if g.degree(s) <= 1])
        return out

    @classmethod
    def from_points(cls, points: np.ndarray, radii: np.ndarray, edges: Iterable[tuple[int, int]],
                    *, ostia: Iterable[int] = (), sides: Sequence[str | None] | None = None) -> CenterlineGraph:
        """Build from arrays: ``points`` (N, 3) mm, ``radii`` (N,) mm, ``edges`` index pairs."""
        g = nx.Graph()
        points = np.asarray(points, dtype=float).reshape(-1, 3)
        for i, (p, r) in enumerate(zip(points, np.asarray(radii, dtype=float))):
            g.add_node(i, pos=p.copy(), radius=float(r), side=None if sides is None else sides[i],
                       topology="SEGMENT")
        for a, b in edges:
            g.add_edge(int(a), int(b), length=float(np.linalg.norm(points[a] - points[b])))
        out = cls(g)
        out.update_topology(ostia=ostia)
        return out

    def update_topology(self, ostia: Iterable[int] | None = None) -> None:
        """Recompute ``topology`` from degree; ``ostia`` (node ids) are kept as OSTIUM."""
        g = self.graph
        keep = set(self.ostia()) if ostia is None else set(ostia)
        for n in g.nodes:
            deg = g.degree(n)
            if n in keep:
                topo = "OSTIUM"
            elif deg >= 3:
                topo = "INTERSECTION"
            elif deg <= 1:
                topo = "ENDPOINT"
            else:
                topo = "SEGMENT"
            g.nodes[n]["topology"] = topo

    # ---- queries ------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    @property
    def nodes(self) -> list[int]:
        return list(self.graph.nodes)

    def positions(self) -> np.ndarray:
        """(N, 3) LPS mm, in ``self.nodes`` order."""
        if len(self) == 0:
            return np.zeros((0, 3))
        return np.array([self.graph.nodes[n]["pos"] for n in self.graph.nodes], dtype=float)

    def radii(self) -> np.ndarray:
        """(N,) mm, in ``self.nodes`` order."""
        return np.array([self.graph.nodes[n]["radius"] for n in self.graph.nodes], dtype=float)

    def ostia(self) -> list[int]:
        return [n for n, t in self.graph.nodes(data="topology") if t == "OSTIUM"]

    def endpoints(self) -> list[int]:
        return [n for n, t in self.graph.nodes(data="topology") if t == "ENDPOINT"]

    def intersections(self) -> list[int]:
        return [n for n, t in self.graph.nodes(data="topology") if t == "INTERSECTION"]

    def length_mm(self) -> float:
        return float(sum(d.get("length", 0.0) for _, _, d in self.graph.edges(data=True)))

    def n_branches(self) -> int:
        """Number of vessel segments between ostia, intersections and end points."""
        return len(self.branches())

    def branches(self) -> list[list[int]]:
        """Node paths between key nodes (ostium/intersection/end point), each listed once."""
        g = self.graph
        key = {n for n in g.nodes if g.degree(n) != 2 or g.nodes[n]["topology"] == "OSTIUM"}
        seen: set[tuple[int, int]] = set()
        out: list[list[int]] = []
        for k in key:
            for nb in g.neighbors(k):
                if (k, nb) in seen:
                    continue
                path = [k, nb]
                while path[-1] not in key:
                    nxt = [m for m in g.neighbors(path[-1]) if m != path[-2]]
                    if not nxt:
                        break
                    path.append(nxt[0])
                seen.add((path[0], path[1]))
                seen.add((path[-1], path[-2]))
                out.append(path)
        # closed loops without key nodes are ignored: coronary trees have none
        return out

    def copy(self) -> CenterlineGraph:
        g = self.graph.copy()
        for n in g.nodes:
            g.nodes[n]["pos"] = np.array(g.nodes[n]["pos"], dtype=float)
        return CenterlineGraph(g)

    def dense_points(self, step_mm: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
        """Points every ``step_mm`` along all edges, with linearly interpolated radii.

        Returns ``(points (M, 3) mm, radii (M,) mm)``; node points are included.
        """
        pts = [self.positions()]
        rad = [self.radii()]
        for a, b in self.graph.edges:
            pa, pb = self.graph.nodes[a]["pos"], self.graph.nodes[b]["pos"]
            ra, rb = self.graph.nodes[a]["radius"], self.graph.nodes[b]["radius"]
            n = int(np.ceil(np.linalg.norm(pb - pa) / step_mm))
            if n > 1:
                t = np.linspace(0, 1, n + 1)[1:-1, None]
                pts.append(pa + t * (pb - pa))
                rad.append((ra + t[:, 0] * (rb - ra)))
        return np.concatenate(pts), np.concatenate(rad)

    def transformed(self, fn) -> CenterlineGraph:
        """A copy with every position mapped through ``fn((N,3)) -> (N,3)``."""
        out = self.copy()
        nodes = out.nodes
        new = fn(out.positions())
        for n, p in zip(nodes, new):
            out.graph.nodes[n]["pos"] = np.asarray(p, dtype=float)
        for a, b in out.graph.edges:
            out.graph.edges[a, b]["length"] = float(np.linalg.norm(out.graph.nodes[a]["pos"]
                                                                   - out.graph.nodes[b]["pos"]))
        return out

    def __repr__(self) -> str:
        return (f"CenterlineGraph(nodes={len(self)}, ostia={len(self.ostia())}, "
                f"endpoints={len(self.endpoints())}, length={self.length_mm():.1f} mm)")

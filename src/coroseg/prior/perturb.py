"""Training-time centerline degradation, and the overlap score between two centerlines.

:func:`perturb_centerline` first draws a :class:`Perturbation` (every random choice, JSON-able)
from the generator, then applies it deterministically (:func:`apply_perturbation`), so a
degradation can be logged and replayed.
"""

from __future__ import annotations

import dataclasses

import networkx as nx
import numpy as np
from scipy.spatial import cKDTree

from coroseg.io.centerline import CenterlineGraph


@dataclasses.dataclass
class Perturbation:
    """Recorded random choices of one degradation.

    Attributes
    ----------
    dropped : list of int
        End node ids whose whole terminal branch is removed.
    truncate : dict of int -> float
        End node id -> length (mm) cut from that end (never past its branch's start).
    gaps : list of (int, int, float, float)
        ``(branch end node, its neighbour on the branch, position fraction along the branch,
        gap length mm)`` holes; the neighbour says which branch when the end is a junction.
    jitter : dict of int -> list of 3 float
        Node id -> displacement (mm, LPS), smooth along the tree.
    """

    dropped: list[int] = dataclasses.field(default_factory=list)
    truncate: dict[int, float] = dataclasses.field(default_factory=dict)
    gaps: list[tuple[int, float, float]] = dataclasses.field(default_factory=list)
    jitter: dict[int, list[float]] = dataclasses.field(default_factory=dict)


def _terminal_branches(graph: CenterlineGraph) -> dict[int, list[int]]:
    """End node -> path from it to its first key node (exclusive of nothing: both included)."""
    g = graph.graph
    ostia = set(graph.ostia())
    out = {}
    for n in sorted(g.nodes):
        if g.degree(n) != 1 or n in ostia:
            continue
        path = [n]
        prev = None
        cur = n
        while True:
            nbs = [m for m in g.neighbors(cur) if m != prev]
            if not nbs:
                break
            prev, cur = cur, nbs[0]
            path.append(cur)
            if g.degree(cur) != 2 or cur in ostia:
                break
        out[n] = path
    return out


def sample_perturbation(
    graph: CenterlineGraph,
    rng: np.random.Generator,
    *,
    drop_branch_p: float = 0.15,
    jitter_mm: float = 0.5,
    truncate_mm: tuple[float, float] = (0.0, 10.0),
    gap_p: float = 0.1,
    gap_mm: tuple[float, float] = (1.0, 4.0),
    smooth_iters: int = 5,
) -> Perturbation:
    """Draw every random choice of a degradation (:func:`perturb_centerline` = this + apply).

    Parameters
    ----------
    graph : CenterlineGraph
        Not modified.
    rng : numpy.random.Generator
        Source of every random choice (same seed -> same result).
    drop_branch_p : float
        Probability of removing each terminal (leaf) branch up to its junction.
    jitter_mm : float, mm
        Standard deviation of a smooth displacement of every point.
    truncate_mm : (float, float), mm
        Each remaining end is shortened by a length drawn uniformly in this range (never past
        its junction).
    gap_p : float
        Probability per branch of cutting a hole of ``gap_mm`` (uniform range) in it.
    smooth_iters : int
        Rounds of neighbour averaging that make the jitter a smooth wobble.
    """
    g = graph.graph
    branches = _terminal_branches(graph)
    ends = sorted(branches)
    drop = rng.random(len(ends)) < drop_branch_p
    # a branch hanging from an ostium is the whole tree: never drop it
    dropped = [e for e, d in zip(ends, drop) if d and branches[e][-1] not in set(graph.ostia())
               and g.degree(branches[e][-1]) >= 3]
    lo, hi = truncate_mm
    cut = rng.uniform(lo, hi, size=len(ends)) if hi > lo else np.full(len(ends), float(lo))
    truncate = {e: float(c) for e, c in zip(ends, cut) if e not in dropped and c > 0}
    gaps = []
    all_branches = sorted(graph.branches(), key=lambda p: (min(p[0], p[-1]), max(p[0], p[-1])))
    for path in all_branches:
        if rng.random() < gap_p:
            end, first = (path[-1], path[-2]) if g.degree(path[-1]) == 1 else (path[0], path[1])
            gaps.append((int(end), int(first), float(rng.uniform(0.2, 0.8)), float(rng.uniform(*gap_mm))))
    nodes = sorted(g.nodes)
    jitter: dict[int, list[float]] = {}
    if jitter_mm > 0 and nodes:
        from scipy.sparse import coo_matrix

        noise = rng.normal(0.0, 1.0, size=(len(nodes), 3))
        pos = {n: i for i, n in enumerate(nodes)}
        ij = np.array([(pos[a], pos[b]) for a, b in g.edges], np.int64).reshape(-1, 2)
        rows, cols = np.concatenate([ij[:, 0], ij[:, 1]]), np.concatenate([ij[:, 1], ij[:, 0]])
        adj = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(nodes), len(nodes))).tocsr()
        deg = np.asarray(adj.sum(axis=1)).reshape(-1, 1)
        for _ in range(smooth_iters):  # low-pass along the tree: a wobble, not a zigzag
            noise = (noise + adj @ noise) / (1.0 + deg)  # each node: mean of itself and its neighbours
        std = noise.std()
        if std > 0:
            noise *= jitter_mm / std
        jitter = {n: noise[i].tolist() for i, n in enumerate(nodes)}
    return Perturbation(dropped=dropped, truncate=truncate, gaps=gaps, jitter=jitter)


def apply_perturbation(graph: CenterlineGraph, p: Perturbation) -> CenterlineGraph:
    """Apply recorded choices (deterministic). Ostia are kept; topology is recomputed."""
    out = graph.copy()
    g = out.graph
    ostia = set(graph.ostia())
    branches = _terminal_branches(graph)
    for e in p.dropped:
        g.remove_nodes_from(branches[e][:-1])
    for e, mm in p.truncate.items():
        if e not in branches or not g.has_node(e):
            continue
        path = branches[e]
        acc = 0.0
        for a, b in zip(path[:-2], path[1:-1]):  # never remove the junction, keep >= 1 edge
            acc += float(np.linalg.norm(g.nodes[a]["pos"] - g.nodes[b]["pos"]))
            if acc > mm:
                break
            g.remove_node(a)
    for end, first, frac, mm in p.gaps:
        if not g.has_edge(end, first):  # that branch was dropped or truncated away
            continue
        path = _path_from(g, end, ostia, first=first)
        if len(path) < 4:
            continue
        cum = np.concatenate([[0.0], np.cumsum([np.linalg.norm(g.nodes[a]["pos"] - g.nodes[b]["pos"])
                                                  for a, b in zip(path[:-1], path[1:])])])
        mid = frac * cum[-1]
        hole = [n for n, c in zip(path[1:-1], cum[1:-1]) if abs(c - mid) <= mm / 2 and n not in ostia]
        g.remove_nodes_from(hole)
    moved = [n for n in p.jitter if g.has_node(n)]
    if moved:
        new_pos = np.array([g.nodes[n]["pos"] for n in moved], float) + np.array([p.jitter[n] for n in moved], float)
        nx.set_node_attributes(g, dict(zip(moved, new_pos)), "pos")
    edges = list(g.edges)
    if edges:
        ends = np.array([[g.nodes[a]["pos"], g.nodes[b]["pos"]] for a, b in edges], float)
        nx.set_edge_attributes(g, dict(zip(edges, np.linalg.norm(ends[:, 0] - ends[:, 1], axis=1).tolist())),
                               "length")
    g.remove_nodes_from([n for n in list(g.nodes) if g.degree(n) == 0 and n not in ostia])
    out.update_topology(ostia=[o for o in ostia if g.has_node(o)])
    return out


def _path_from(g: nx.Graph, start: int, ostia: set[int], *, first: int | None = None) -> list[int]:
    """Nodes from ``start`` (through ``first`` when given) along degree-2 nodes to the next key node."""
    path, prev, cur = [start], None, start
    if first is not None:
        path.append(first)
        prev, cur = start, first
        if g.degree(cur) != 2 or cur in ostia:
            return path
    while True:
        nbs = [m for m in g.neighbors(cur) if m != prev]
        if not nbs:
            return path
        prev, cur = cur, nbs[0]
        path.append(cur)
        if g.degree(cur) != 2 or cur in ostia:
            return path


def perturb_centerline(graph: CenterlineGraph, rng: np.random.Generator, **params) -> CenterlineGraph:
    """Degrade a (ground-truth) centerline like an automatic one would be.

    ``params`` are those of :func:`sample_perturbation` (branch drops, truncation, gaps,
    smooth jitter); the drawn choices are applied by :func:`apply_perturbation`.

    Returns
    -------
    CenterlineGraph
        A new graph (``graph`` is not modified); ostia kept, topology recomputed.
    """
    return apply_perturbation(graph, sample_perturbation(graph, rng, **params))


def centerline_overlap(
    ours: CenterlineGraph,
    ref: CenterlineGraph,
    *,
    step_mm: float = 0.5,
    tolerance_mm: float | None = None,
    min_radius_mm: float = 0.5,
) -> dict:
    """Overlap of two centerlines (a point-wise version of the OV score of Schaap et al. 2009).

    Both are sampled every ``step_mm``. A reference point counts as found when our centerline
    passes within its radius; one of our points counts as correct when the reference passes
    within the radius of the nearest reference point. Radii below ``min_radius_mm`` (or NaN)
    are raised to it; ``tolerance_mm`` replaces radii by a fixed distance.

    Returns
    -------
    dict
        ``recall`` (fraction of reference points found), ``precision`` (fraction of ours
        correct), ``f1``, ``mean_dist_ref_mm`` / ``mean_dist_ours_mm`` (mean distance to the
        other centerline), ``n_ref``, ``n_ours``, ``length_ref_mm``, ``length_ours_mm``.
    """
    pr, rr = ref.dense_points(step_mm) if len(ref) else (np.zeros((0, 3)), np.zeros(0))
    po, _ = ours.dense_points(step_mm) if len(ours) else (np.zeros((0, 3)), np.zeros(0))
    rr = np.where(np.isfinite(rr), np.maximum(rr, min_radius_mm), min_radius_mm)
    if tolerance_mm is not None:
        rr = np.full(len(pr), float(tolerance_mm))
    res = {"n_ref": len(pr), "n_ours": len(po), "length_ref_mm": ref.length_mm(), "length_ours_mm": ours.length_mm()}
    if len(pr) == 0 or len(po) == 0:
        res.update(recall=0.0, precision=0.0, f1=0.0, mean_dist_ref_mm=float("nan"), mean_dist_ours_mm=float("nan"))
        return res
    d_ref, _ = cKDTree(po).query(pr)
    d_ours, j = cKDTree(pr).query(po)
    recall = float(np.mean(d_ref <= rr))
    precision = float(np.mean(d_ours <= rr[j]))
    f1 = 0.0 if recall + precision == 0 else 2 * recall * precision / (recall + precision)
    res.update(recall=recall, precision=precision, f1=float(f1), mean_dist_ref_mm=float(d_ref.mean()),
               mean_dist_ours_mm=float(d_ours.mean()))
    return res


__all__ = ["Perturbation", "sample_perturbation", "apply_perturbation", "perturb_centerline", "centerline_overlap"]

"""Radius profiles along a coronary tree's main branches: the prediction against the reference.

A Dice of 0.85 can hide a vessel drawn uniformly too thin, or a stenosis the prediction smooths
over; the radius plotted against the distance from the ostium shows both, as stenosis-grading
tools plot it. At each reference centerline point the radius of a mask is its distance from
that point to the mask's nearest background voxel (:func:`coroseg.prior.skeleton.radii_at`, the
measure the centerline radii use), for the reference mask and for the prediction at the same
points: where the prediction misses the vessel its profile drops to 0, where it is displaced
from the lumen it reads thinner. Both read up to one voxel above the true radius (the nearest
background voxel centre lies just outside the wall), the same for both masks.

Main branches (:func:`main_branches`) are the longest ostium-to-end paths of each tree, without
anatomical names (LAD, LCX, RCA would be a guess on an unlabelled tree).
"""

from __future__ import annotations

import dataclasses

import networkx as nx
import numpy as np
from scipy.ndimage import median_filter

from coroseg.io.centerline import CenterlineGraph
from coroseg.io.volume import Volume

__all__ = ["BranchProfile", "main_branches", "branch_profiles"]


@dataclasses.dataclass(frozen=True)
class BranchProfile:
    """One branch: ``name``, and per sample ``distance_mm`` from the ostium, ``ref_mm``, ``pred_mm`` radii."""

    name: str
    distance_mm: np.ndarray
    ref_mm: np.ndarray
    pred_mm: np.ndarray


def _roots(g: nx.Graph) -> list[int]:
    """One root per tree: its ostium, else its end node with the largest radius (the proximal trunk)."""
    roots = []
    for comp in nx.connected_components(g):
        ostia = [n for n in comp if g.nodes[n].get("topology") == "OSTIUM"]
        ends = [n for n in comp if g.degree(n) <= 1] or list(comp)
        radius = lambda n: np.nan_to_num(float(g.nodes[n].get("radius", np.nan)), nan=-np.inf)  # noqa: E731
        roots.append(min(ostia) if ostia else max(sorted(ends), key=radius))
    return roots


def _shared_mm(a: list[int], b: list[int], dist: dict[int, float]) -> float:
    """Length of the common start of two paths from the same root (a tree: one common prefix)."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return dist[a[n - 1]] if n else 0.0


def main_branches(graph: CenterlineGraph, *, max_branches: int = 3,
                  max_shared: float = 0.5) -> list[tuple[str, list[int]]]:
    """The longest ostium-to-end paths, each tree's longest first, then the next longest of any tree.

    A path is taken when at most ``max_shared`` of its length runs along a path already taken
    (so the second branch of the left tree is its other main vessel, not a twig off the first).

    Returns
    -------
    list of (name, node path)
        Names like ``"left tree, branch 1 (112 mm)"`` (side from the root's ``side``), at most
        ``max_branches`` of them, ordered tree by tree.
    """
    g = graph.graph
    roots = _roots(g)
    cands = []  # (length, tree, path, distances)
    for tree, root in enumerate(roots):
        dist, paths = nx.single_source_dijkstra(g, root, weight="length")
        for end in sorted(n for n in dist if g.degree(n) <= 1 and n != root):
            cands.append((dist[end], tree, paths[end], dist))
    cands.sort(key=lambda c: -c[0])
    chosen: list[int] = []
    for first_pass in (True, False):  # each tree's longest path first, then the longest of the rest
        for i, (length, tree, path, dist) in enumerate(cands):
            if len(chosen) >= max_branches or i in chosen:
                continue
            same = [cands[j][2] for j in chosen if cands[j][1] == tree]
            if first_pass and same:
                continue
            if all(_shared_mm(path, other, dist) <= max_shared * length for other in same):
                chosen.append(i)
    names = _tree_names(g, roots)
    out: list[tuple[str, list[int]]] = []
    ranks: dict[int, int] = {}
    for length, tree, path, _ in sorted((cands[i] for i in chosen), key=lambda c: (c[1], -c[0])):
        ranks[tree] = ranks.get(tree, 0) + 1
        out.append((f"{names[tree]}, branch {ranks[tree]} ({length:.0f} mm)", path))
    return out


def _tree_names(g: nx.Graph, roots: list[int]) -> list[str]:
    """``left tree`` / ``right tree`` from the roots' ``side``; for two unlabelled trees, the one whose
    ostium lies further to the patient's left (larger LPS x) is the left one (as
    :func:`coroseg.prior.skeleton.centerline_from_mask` assigns sides); else ``tree 1``, ``tree 2``."""
    sides = [g.nodes[r].get("side") for r in roots]
    if not all(sides) and len(roots) == 2:
        x = [float(g.nodes[r]["pos"][0]) for r in roots]
        sides = ["LEFT", "RIGHT"] if x[0] > x[1] else ["RIGHT", "LEFT"]
    return [f"{s.lower()} tree" if s else f"tree {i + 1}" for i, s in enumerate(sides)]


def _resample(points: np.ndarray, step_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Points every ``step_mm`` along a polyline, and their distance from its first point."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    dist = np.concatenate([[0.0], np.cumsum(seg)])
    at = np.arange(0.0, dist[-1] + 1e-9, step_mm) if dist[-1] > 0 else np.zeros(1)
    return np.stack([np.interp(at, dist, points[:, a]) for a in range(3)], axis=1), at


def branch_profiles(pred: np.ndarray, ref: np.ndarray, grid: Volume, *, graph: CenterlineGraph | None = None,
                    step_mm: float = 0.5, smooth_mm: float = 2.0, max_branches: int = 3) -> list[BranchProfile]:
    """Reference and predicted radius along each main branch of the reference centerline.

    Parameters
    ----------
    pred, ref : (Z, Y, X) ndarray of bool
        Prediction and reference masks on ``grid``.
    grid : Volume
        Their geometry (spacing, origin, direction): centerline points (LPS mm) are mapped to
        voxels with ``grid.world_to_index``.
    graph : CenterlineGraph, optional
        The reference centerline (e.g. the dataset's file); default: skeletonised from ``ref``
        (:func:`coroseg.prior.skeleton.centerline_from_mask`).
    step_mm : float
        Sampling step along each branch.
    smooth_mm : float
        Running median over this length (0: none). Distances to voxel centres come in steps
        of the voxel size (a 1 mm radius at 0.8 mm voxels reads 0.8, 1.1 or 1.6); the median
        removes that flicker and keeps steps longer than ``smooth_mm / 2`` (a stenosis, a miss).
    max_branches : int

    Returns
    -------
    list of BranchProfile (empty when the reference has no centerline)
    """
    from coroseg.prior.skeleton import centerline_from_mask, radii_at

    ref = np.asarray(ref, dtype=bool)
    if graph is None:
        graph = centerline_from_mask(grid.with_array(ref.astype(np.uint8), is_label=True))
    out = []
    for name, path in main_branches(graph, max_branches=max_branches):
        pts, dist = _resample(np.array([graph.graph.nodes[n]["pos"] for n in path], dtype=float), step_mm)
        idx = np.round(grid.world_to_index(pts)).astype(np.int64)
        size = 1 + 2 * int(round(smooth_mm / step_mm / 2))
        out.append(BranchProfile(name, dist, median_filter(radii_at(ref, idx, grid.spacing), size, mode="nearest"),
                                 median_filter(radii_at(np.asarray(pred, dtype=bool), idx, grid.spacing), size,
                                               mode="nearest")))
    return out

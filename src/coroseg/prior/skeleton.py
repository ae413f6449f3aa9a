"""Centerline extraction from a binary vessel mask: skeleton -> pruned tree graph with radii.

Pipeline (:func:`centerline_from_mask`):

1. crop the mask to its bounding box (plus a one-voxel zero border);
2. thin it to a one-voxel skeleton (:func:`skimage.morphology.skeletonize`, Lee et al. 1994
   in 3D);
3. one node per skeleton voxel, edges between 26-neighbours weighted by their length in mm,
   reduced to a minimum spanning forest (removes the little triangles of 26-connectivity at
   junctions and any loop);
4. radii: the Euclidean distance (mm, anisotropy-aware) from each skeleton voxel to the
   nearest background voxel — exactly ``scipy.ndimage.distance_transform_edt(mask,
   sampling=spacing)`` at that voxel, but computed with a KD-tree on the mask's outer shell
   (the nearest background voxel of a foreground voxel always has a foreground 6-neighbour),
   which is ~20x faster on a coronary bounding box;
5. prune spurs (end branches shorter than ``spur_factor`` times the radius at their junction,
   or ``min_spur_mm``), shortest first, so a forked vessel end loses one prong, not both;
6. merge junction nodes closer than their radius (one bifurcation = one intersection node);
7. bridge gaps <= ``bridge_gap_mm`` between an end point and another component; drop
   components shorter than ``min_component_mm``;
8. one ostium per tree: the end node whose terminal branch has the largest median radius
   (the proximal trunk is the widest part of a coronary tree), or the end node nearest
   ``aorta_point``; the other degree-1 nodes are end points.

References: T.-C. Lee, R. L. Kashyap, C.-N. Chu, "Building skeleton models via 3-D medial
surface/axis thinning algorithms", CVGIP 56(6), 1994; kimimaro (TEASAR) for the idea of
a skeleton graph with radii in physical units.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial import cKDTree

from coroseg.errors import InputError
from coroseg.io.centerline import CenterlineGraph
from coroseg.io.volume import Volume

# the 13 "forward" offsets of the 26-neighbourhood (each undirected pair once)
_OFFSETS = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)
                     if (a, b, c) > (0, 0, 0)], dtype=np.int64)


def centerline_from_mask(
    label: Volume,
    *,
    min_spur_mm: float | None = None,
    bridge_gap_mm: float = 2.0,
    min_component_mm: float = 5.0,
    aorta_point: np.ndarray | None = None,
    spur_factor: float = 2.0,
    assign_sides: bool = True,
) -> CenterlineGraph:
    """Extract a coronary centerline tree from a binary vessel mask.

    Parameters
    ----------
    label : Volume
        ``array`` (Z, Y, X); voxels > 0 are vessel. Any spacing (anisotropic is fine) and any
        orthonormal direction; the graph is in LPS world mm via ``label.index_to_world``.
    min_spur_mm : float, optional
        End branches shorter than this (mm) are removed. Default: ``spur_factor`` times the
        radius at the junction they leave (a skeleton spur reaches from the centre to the
        wall, about one radius long).
    bridge_gap_mm : float
        An end point closer than this (mm) to a node of another component is joined to it.
        0 disables bridging.
    min_component_mm : float
        Components with a total centerline length below this (mm) are dropped.
    aorta_point : (3,) array, LPS mm, optional
        When given, each tree's ostium is its end node nearest this point.
    spur_factor : float
        Multiplier of the junction radius for the default spur threshold.
    assign_sides : bool
        With exactly two trees, mark the one whose ostium lies further to the patient's left
        (larger LPS x) ``LEFT`` and the other ``RIGHT``; otherwise sides stay ``None``.

    Returns
    -------
    CenterlineGraph
        One node per kept skeleton voxel: ``pos`` (LPS mm), ``radius`` (mm, distance from the
        voxel centre to the nearest background voxel centre), ``topology``, ``side``; edges
        carry ``length`` (mm). An empty mask gives an empty graph.

    Raises
    ------
    InputError
        When ``label.array`` is not 3D.
    """
    arr = np.asarray(label.array)
    if arr.ndim != 3:
        raise InputError(f"expected a 3D label array (Z, Y, X), found shape {arr.shape}")
    fg = arr > 0
    if not fg.any():
        return CenterlineGraph()
    spacing = np.asarray(label.spacing, dtype=float)
    sub, offset = _crop_padded(fg)
    skel_idx = _skeleton_voxels(sub)
    if len(skel_idx) == 0:
        return CenterlineGraph()
    radii = _radii_at(sub, skel_idx, spacing)
    g = _voxel_graph(skel_idx, sub.shape, spacing)
    nx.set_node_attributes(g, dict(enumerate(radii)), "radius")
    nx.set_node_attributes(g, {n: skel_idx[n] * spacing for n in g.nodes}, "mm")

    protect = None
    if aorta_point is not None:
        world = label.index_to_world(skel_idx + offset)
        protect = int(np.argmin(np.linalg.norm(world - np.asarray(aorta_point, float), axis=1)))
    _prune_spurs(g, min_spur_mm=min_spur_mm, spur_factor=spur_factor, protect=protect)
    _merge_junctions(g)
    if bridge_gap_mm > 0:
        _bridge_gaps(g, bridge_gap_mm)
    _drop_small_components(g, min_component_mm)
    return _to_centerline(g, skel_idx + offset, label, aorta_point=aorta_point, assign_sides=assign_sides)


# ---- steps ----------------------------------------------------------------------------------
def _crop_padded(fg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mask's bounding box with a one-voxel zero border, and the index of its [0,0,0]."""
    lo, hi = [], []
    for ax in range(3):
        other = tuple(a for a in range(3) if a != ax)
        nz = np.flatnonzero(fg.any(axis=other))
        lo.append(nz[0])
        hi.append(nz[-1] + 1)
    sub = np.zeros(tuple(h - low + 2 for low, h in zip(lo, hi)), dtype=bool)
    sub[1:-1, 1:-1, 1:-1] = fg[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    return sub, np.array(lo) - 1


def _skeleton_voxels(sub: np.ndarray) -> np.ndarray:
    from skimage.morphology import skeletonize

    skel = skeletonize(sub)
    return np.argwhere(skel).astype(np.int64)


def radii_at(mask: np.ndarray, idx: np.ndarray, spacing) -> np.ndarray:
    """Distance (mm) from voxels ``idx`` of ``mask`` to the mask's nearest background voxel; 0 outside it.

    The same number as the centerline radii (step 4 of the module docstring):
    ``scipy.ndimage.distance_transform_edt(mask, sampling=spacing)[idx]``, computed from the
    mask's shell, so a whole-scan coronary mask costs what its vessels cost.

    Parameters
    ----------
    mask : (Z, Y, X) ndarray of bool
    idx : (N, 3) ndarray of int
        Voxel indices ``(k, j, i)``; those outside the volume or the mask get 0.
    spacing : tuple of 3 float, mm
    """
    fg = np.asarray(mask) > 0
    idx = np.asarray(idx, dtype=np.int64).reshape(-1, 3)
    out = np.zeros(len(idx))
    inside = np.all((idx >= 0) & (idx < np.array(fg.shape)), axis=1)
    inside[inside] = fg[tuple(idx[inside].T)]
    if inside.any():
        sub, offset = _crop_padded(fg)
        out[inside] = _radii_at(sub, idx[inside] - offset, np.asarray(spacing, dtype=float))
    return out


def _radii_at(sub: np.ndarray, idx: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """EDT (mm) of ``sub`` at voxels ``idx``, via the outer 6-connected shell of ``sub``.

    The shell (background voxels 6-adjacent to the mask) is found from the mask's voxel list,
    never as box-sized arrays; ``sub`` has a zero border, so every neighbour is inside it.
    """
    fg = np.argwhere(sub)
    lin = np.ravel_multi_index(fg.T, sub.shape)
    steps = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
    nb = np.unique(np.ravel_multi_index((fg[:, None, :] + steps[None]).reshape(-1, 3).T, sub.shape))
    shell = nb[_find(lin, nb) < 0]
    pts = np.stack(np.unravel_index(shell, sub.shape), axis=1) * spacing
    d, _ = cKDTree(pts).query(idx * spacing)
    return np.asarray(d, dtype=float)


def _find(sorted_keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Position of each query in ``sorted_keys``, -1 where absent."""
    if len(sorted_keys) == 0:
        return np.full(len(queries), -1, np.int64)
    pos = np.minimum(np.searchsorted(sorted_keys, queries), len(sorted_keys) - 1)
    return np.where(sorted_keys[pos] == queries, pos, -1)


def _voxel_graph(idx: np.ndarray, shape: tuple[int, ...], spacing: np.ndarray) -> nx.Graph:
    """Minimum spanning forest of the 26-neighbour graph of the voxels ``idx`` (mm weights)."""
    n = len(idx)
    # neighbours are looked up in the sorted linear indices (no box-sized lookup table)
    lin = np.ravel_multi_index(idx.T, shape)
    order = np.argsort(lin, kind="stable")
    keys = lin[order]
    rows, cols, w = [], [], []
    for off in _OFFSETS:
        nb = idx + off
        ok = np.all((nb >= 0) & (nb < np.array(shape)), axis=1)
        j = np.full(n, -1, dtype=np.int64)
        pos = _find(keys, np.ravel_multi_index(nb[ok].T, shape))
        j[ok] = np.where(pos >= 0, order[np.maximum(pos, 0)], -1)
        sel = np.flatnonzero(j >= 0)
        rows.append(sel)
        cols.append(j[sel])
        w.append(np.full(len(sel), float(np.linalg.norm(off * spacing))))
    r, c, ww = np.concatenate(rows), np.concatenate(cols), np.concatenate(w)
    mst = minimum_spanning_tree(coo_matrix((ww, (r, c)), shape=(n, n))).tocoo()
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_weighted_edges_from(zip(mst.row.tolist(), mst.col.tolist(), mst.data.tolist()), weight="length")
    return g


def _walk(g: nx.Graph, start: int, first: int | None = None) -> list[int]:
    """Nodes from ``start`` along degree-2 nodes until a node of degree != 2 (included)."""
    path = [start]
    prev = None
    cur = start
    nxt = first
    while True:
        if nxt is None:
            nbs = [m for m in g.neighbors(cur) if m != prev]
            if not nbs:
                return path
            nxt = nbs[0]
        path.append(nxt)
        prev, cur, nxt = cur, nxt, None
        if g.degree(cur) != 2:
            return path


def _path_length(g: nx.Graph, path: list[int]) -> float:
    return float(sum(g.edges[a, b]["length"] for a, b in zip(path[:-1], path[1:])))


def _prune_spurs(g: nx.Graph, *, min_spur_mm: float | None, spur_factor: float,
                 protect: int | None) -> None:
    while True:
        spurs = []
        for leaf in [n for n in g.nodes if g.degree(n) == 1 and n != protect]:
            path = _walk(g, leaf)
            junction = path[-1]
            if g.degree(junction) < 3:
                continue  # an isolated path: a component, not a spur
            length = _path_length(g, path)
            thr = min_spur_mm if min_spur_mm is not None else spur_factor * g.nodes[junction]["radius"]
            if length < thr:
                spurs.append((length, leaf, path))
        if not spurs:
            return
        spurs.sort(key=lambda s: (s[0], s[1]))
        removed = False
        for _, _, path in spurs:
            if g.degree(path[-1]) >= 3 and all(g.has_node(n) for n in path):
                g.remove_nodes_from(path[:-1])
                removed = True
        if not removed:
            return


def _merge_junctions(g: nx.Graph) -> None:
    """Contract paths between two junctions shorter than the larger junction radius.

    A worklist (smallest node id first) instead of rescanning every junction after each
    contraction: only the surviving junction and the junctions at the far ends of its
    branches can change, so only they are looked at again. Linear in the number of
    junctions for a tree instead of quadratic (minutes on a large blob's skeleton).
    """
    import heapq

    heap = sorted(n for n in g.nodes if g.degree(n) >= 3)
    queued = set(heap)
    while heap:
        a = heapq.heappop(heap)
        queued.discard(a)
        if not g.has_node(a) or g.degree(a) < 3:
            continue
        for nb in sorted(g.neighbors(a)):
            path = _walk(g, a, nb)
            b = path[-1]
            if b == a or g.degree(b) < 3:
                continue
            if _path_length(g, path) <= max(g.nodes[a]["radius"], g.nodes[b]["radius"]):
                keep, drop = (a, b) if g.nodes[a]["radius"] >= g.nodes[b]["radius"] else (b, a)
                g.remove_nodes_from(path[1:-1])
                for m in list(g.neighbors(drop)):
                    if m != keep and not g.has_edge(keep, m):
                        g.add_edge(keep, m, length=float(np.linalg.norm(g.nodes[keep]["mm"] - g.nodes[m]["mm"])))
                g.remove_node(drop)
                # the survivor and the junctions at the ends of its branches may merge again
                for n in [keep] + [_walk(g, keep, m)[-1] for m in g.neighbors(keep)]:
                    if n not in queued and g.degree(n) >= 3:
                        heapq.heappush(heap, n)
                        queued.add(n)
                break


def _bridge_gaps(g: nx.Graph, gap_mm: float) -> None:
    comps = list(nx.connected_components(g))
    if len(comps) < 2:
        return
    comp_of = {n: ci for ci, c in enumerate(comps) for n in c}
    nodes = np.array(sorted(g.nodes))
    mm = np.array([g.nodes[n]["mm"] for n in nodes])
    tree = cKDTree(mm)
    cands = []
    for i, n in enumerate(nodes):
        if g.degree(n) > 1:
            continue
        for j in tree.query_ball_point(mm[i], gap_mm):
            m = nodes[j]
            if comp_of[m] != comp_of[n]:
                cands.append((float(np.linalg.norm(mm[i] - mm[j])), int(n), int(m)))
    cands.sort()
    parent = list(range(len(comps)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for d, n, m in cands:
        a, b = find(comp_of[n]), find(comp_of[m])
        if a != b:
            parent[a] = b
            g.add_edge(n, m, length=d)


def _drop_small_components(g: nx.Graph, min_mm: float) -> None:
    for comp in list(nx.connected_components(g)):
        length = sum(d["length"] for _, _, d in g.subgraph(comp).edges(data=True))
        if length < min_mm or len(comp) < 2:
            g.remove_nodes_from(comp)


def _root_of(g: nx.Graph, comp: set[int], mm_world: dict[int, np.ndarray],
             aorta_point: np.ndarray | None) -> int:
    leaves = sorted(n for n in comp if g.degree(n) <= 1)
    if not leaves:  # a loop-free tree always has leaves; be safe anyway
        leaves = sorted(comp)
    if aorta_point is not None:
        d = [np.linalg.norm(mm_world[n] - aorta_point) for n in leaves]
        return leaves[int(np.argmin(d))]
    best, best_key = leaves[0], (-np.inf, -np.inf)
    for leaf in leaves:
        path = _walk(g, leaf) if g.degree(leaf) == 1 else [leaf]
        r = [g.nodes[n]["radius"] for n in path]
        key = (float(np.median(r)), float(g.nodes[leaf]["radius"]))
        if key > best_key:
            best, best_key = leaf, key
    return best


def _to_centerline(g: nx.Graph, idx_full: np.ndarray, label: Volume, *,
                   aorta_point: np.ndarray | None, assign_sides: bool) -> CenterlineGraph:
    old = sorted(g.nodes)
    world = label.index_to_world(idx_full[old]) if old else np.zeros((0, 3))
    new_id = {o: i for i, o in enumerate(old)}
    pos = {o: world[i] for i, o in enumerate(old)}
    ap = None if aorta_point is None else np.asarray(aorta_point, dtype=float).reshape(3)
    comps = sorted((sorted(c) for c in nx.connected_components(g)), key=lambda c: c[0])
    roots = [_root_of(g, set(c), pos, ap) for c in comps]
    sides: dict[int, str | None] = {}
    if assign_sides and len(comps) == 2:
        left = int(np.argmax([pos[r][0] for r in roots]))
        for ci, c in enumerate(comps):
            for n in c:
                sides[n] = "LEFT" if ci == left else "RIGHT"
    out = nx.Graph()
    for o in old:
        out.add_node(new_id[o], pos=np.array(pos[o], dtype=float), radius=float(g.nodes[o]["radius"]),
                     topology="SEGMENT", side=sides.get(o))
    for a, b in g.edges:
        out.add_edge(new_id[a], new_id[b], length=float(np.linalg.norm(pos[a] - pos[b])))
    cg = CenterlineGraph(out)
    cg.update_topology(ostia=[new_id[r] for r in roots])
    return cg


def centerline_file(label_path: str | Path, out: str | Path, *, min_spur_mm: float | None = None,
                    bridge_gap_mm: float = 2.0) -> CenterlineGraph:
    """``coroseg centerline``: extract the centerline of a mask file and write it to ``out``.

    Raises :class:`~coroseg.errors.InputError` naming the mask when it has no vessel voxels,
    or when what it has is too small to give a centerline (nothing is written then).
    """
    from coroseg.io.centerline_files import write_centerline
    from coroseg.io.volume import read_volume

    mask = read_volume(label_path, is_label=True)
    n = int(np.count_nonzero(mask.array))
    if n == 0:
        raise InputError("mask is empty (no voxel > 0): no centerline to extract", label_path)
    graph = centerline_from_mask(mask, min_spur_mm=min_spur_mm, bridge_gap_mm=bridge_gap_mm)
    if len(graph) == 0:
        raise InputError(f"the mask's {n} vessel voxels give no centerline (every piece is shorter "
                         "than 5 mm)", label_path)
    write_centerline(graph, out)
    return graph


__all__ = ["centerline_from_mask", "centerline_file", "radii_at"]

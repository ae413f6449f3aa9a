"""Post-processing of a vessel probability map: threshold, keep the coronary trees, fill holes.

Each step is a plain function on arrays and each can be switched off through
:class:`PostprocessOptions`, so the evaluation can measure what each one buys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

#: default ``reach_mm`` of :class:`PostprocessOptions`: the other coronary tree starts 2-4 cm
#: from the first (both ostia sit on the aortic root), so 60 mm keeps it while dropping what lies
#: far from the tree (abdomen, chest wall). Chosen on the generalisation benchmark's dev sets:
#: auto and ORACLE Dice equal or better than the size rules there, 40 mm lost a tree
#: (docs/results/generalisation.md).
REACH_MM = 60.0


@dataclasses.dataclass(frozen=True)
class PostprocessOptions:
    """Switches and parameters of :func:`postprocess`.

    Attributes
    ----------
    threshold : float
        Probability at or above which a voxel is vessel.
    keep_trees : bool
        Drop connected components that are not one of the main coronary trees.
    n_trees : int
        How many of the largest components count as main trees (left + right = 2).
    min_tree_mm3 : float
        A component among the ``n_trees`` largest is kept only if at least this big (mm^3).
    keep_fraction : float
        Any component at least this fraction of the largest one is kept too (a tree
        split by a stenosis must not lose its distal part).
    reach_mm : float or None
        Keep the largest tree and what lies within this distance of it instead (chained;
        :func:`keep_main_components`): nothing far from the coronary tree survives.
    fill_holes : bool
        Fill cavities fully enclosed by vessel (3D, 6-connected background).
    connectivity : {6, 18, 26}
        Voxel connectivity of the component analysis.
    """

    threshold: float = 0.5
    keep_trees: bool = True
    n_trees: int = 2
    min_tree_mm3: float = 5.0
    keep_fraction: float = 0.1
    fill_holes: bool = True
    connectivity: int = 26
    reach_mm: float | None = REACH_MM

    @classmethod
    def none(cls, threshold: float = 0.5) -> PostprocessOptions:
        """Threshold only."""
        return cls(threshold=threshold, keep_trees=False, fill_holes=False)


def threshold(prob: np.ndarray, level: float = 0.5) -> np.ndarray:
    """``prob >= level`` as bool, shape kept."""
    return np.asarray(prob) >= level


def keep_main_components(
    mask: np.ndarray,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    n_trees: int = 2,
    min_tree_mm3: float = 5.0,
    keep_fraction: float = 0.1,
    connectivity: int = 26,
    reach_mm: float | None = None,
    min_piece_mm3: float = 2.0,
) -> np.ndarray:
    """Keep the main coronary trees of a binary mask and drop small unconnected islands.

    A component is kept when it is one of the ``n_trees`` largest and at least
    ``min_tree_mm3`` big, or when it is at least ``keep_fraction`` of the largest component.
    With ``reach_mm`` the rule is spatial instead: the largest component (if at least
    ``min_tree_mm3``) and every component of at least ``min_piece_mm3`` that comes within
    ``reach_mm`` of a kept one, repeatedly — a chain of pieces along a vessel interrupted by a
    stenosis or faint contrast survives, the other coronary tree (its ostium 2-4 cm from the
    first) survives, and a component far from the tree (abdomen, chest wall, lung) is dropped
    whatever its size. ``n_trees`` and ``keep_fraction`` are then not used.

    Parameters
    ----------
    mask : (Z, Y, X) ndarray of bool
    spacing : tuple of 3 float, mm
        Voxel size, array order (for the volume threshold).

    Returns
    -------
    (Z, Y, X) ndarray of bool
    """
    mask = np.asarray(mask, dtype=bool)
    box = bounding_box(mask)
    if box is None:
        return np.zeros(mask.shape, bool)
    sub = mask[box]
    sparse = _sparse_components(sub, connectivity)
    if sparse is None:
        labels, sizes = label_components(sub, connectivity)
    else:
        coords, comp, sizes = sparse
    voxel_mm3 = float(np.prod(spacing))
    order = np.argsort(-sizes, kind="stable")
    keep = np.zeros(len(sizes), bool)
    if reach_mm is not None:
        keep[order[0]] = sizes[order[0]] * voxel_mm3 >= min_tree_mm3
    else:
        for rank, idx in enumerate(order):
            vol = sizes[idx] * voxel_mm3
            if (rank < n_trees and vol >= min_tree_mm3) or sizes[idx] >= keep_fraction * sizes[order[0]]:
                keep[idx] = True
    if reach_mm is not None and keep.any():
        if sparse is None:
            coords = np.argwhere(labels > 0)
            comp = labels[tuple(coords.T)].astype(np.int64) - 1
        keep = _keep_within_reach(coords * np.asarray(spacing, float), comp, sizes * voxel_mm3, keep,
                                  reach_mm=float(reach_mm), min_mm3=float(min_piece_mm3))
    out = np.zeros(mask.shape, bool)
    if sparse is None:
        out[box] = np.concatenate([[False], keep])[labels]
    else:  # only the kept voxels are written: no box-sized temporaries
        idx = coords[keep[comp]] + np.array([b.start for b in box])
        out[tuple(idx.T)] = True
    return out


def _keep_within_reach(points_mm: np.ndarray, comp: np.ndarray, volumes: np.ndarray, keep: np.ndarray, *,
                       reach_mm: float, min_mm3: float, rounds: int = 8) -> np.ndarray:
    """Grow the kept set by components (>= ``min_mm3``) within ``reach_mm`` of a kept one."""
    from scipy.spatial import cKDTree

    keep = keep.copy()
    for _ in range(rounds):
        cand = ~keep & (volumes >= min_mm3)
        if not cand.any():
            break
        on = keep[comp]
        tree = cKDTree(points_mm[on])
        pick = cand[comp]
        d, _ = tree.query(points_mm[pick], k=1, distance_upper_bound=reach_mm)
        near = np.unique(comp[pick][np.isfinite(d)])
        if len(near) == 0:
            break
        keep[near] = True
    return keep


def bounding_box(mask: np.ndarray, *, pad: int = 0) -> tuple[slice, ...] | None:
    """Slices of the smallest box holding every true voxel, grown by ``pad`` (inside the array)."""
    ranges = []
    for ax in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != ax)))
        if len(hit) == 0:
            return None
        ranges.append(slice(max(0, int(hit[0]) - pad), min(mask.shape[ax], int(hit[-1]) + 1 + pad)))
    return tuple(ranges)


#: below this fraction of foreground voxels, components are found on the voxel list (a sparse
#: graph) instead of labelling the whole box: coronary masks fill ~0.1 % of their box
SPARSE_FRACTION = 0.02


def label_components(mask: np.ndarray, connectivity: int = 26) -> tuple[np.ndarray, np.ndarray]:
    """Connected components: labels ``1..N`` in raster order of each component's first voxel
    (0 = background) and sizes ``(N,)``.

    Same labels as ``cc3d.connected_components``; sparse masks are labelled through the
    voxel adjacency graph (scipy.sparse.csgraph), several times faster than a dense pass.
    """
    import cc3d

    sparse = _sparse_components(mask, connectivity)
    if sparse is None:
        labels, n = cc3d.connected_components(np.asarray(mask, np.uint8), connectivity=connectivity,
                                              return_N=True)
        return labels, np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.float64)
    coords, comp, sizes = sparse
    labels = np.zeros(mask.shape, np.uint32)
    labels[tuple(coords.T)] = comp + 1
    return labels, sizes


def _sparse_components(mask: np.ndarray, connectivity: int):
    """``(coords (n, 3), component (n,), sizes (N,))`` of a sparse 3D mask, components numbered 0..N-1
    in raster order of their first voxel; ``None`` when the mask is too dense for this to pay."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if connectivity not in (6, 18, 26):
        raise ValueError(f"connectivity must be 6, 18 or 26, not {connectivity}")
    n_fg = int(np.count_nonzero(mask))
    if mask.ndim != 3 or n_fg > SPARSE_FRACTION * mask.size:
        return None
    if n_fg == 0:
        return np.zeros((0, 3), np.int64), np.zeros(0, np.int64), np.zeros(0)
    coords = np.argwhere(mask)  # raster order
    dims = np.asarray(mask.shape)
    lin = np.ravel_multi_index(coords.T, mask.shape)
    rows, cols = [], []
    for off in _forward_offsets(connectivity):
        nb = coords + off
        ok = np.all((nb >= 0) & (nb < dims), axis=1)
        nb_lin = np.ravel_multi_index(nb[ok].T, mask.shape)
        pos = np.minimum(np.searchsorted(lin, nb_lin), len(lin) - 1)
        hit = lin[pos] == nb_lin
        rows.append(np.flatnonzero(ok)[hit])
        cols.append(pos[hit])
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), np.int8), (r, c)), shape=(n_fg, n_fg))
    n, comp = connected_components(graph, directed=False)
    # renumber in order of each component's first voxel (cc3d's raster order)
    first = np.full(n, n_fg, np.int64)
    np.minimum.at(first, comp, np.arange(n_fg))
    rank = np.empty(n, np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(n)
    comp = rank[comp]
    return coords, comp, np.bincount(comp, minlength=n).astype(np.float64)


def _forward_offsets(connectivity: int) -> np.ndarray:
    """Half of the neighbour offsets (the other half is their negation), for an undirected graph."""
    offs = [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)
            if (a, b, c) > (0, 0, 0) and {6: 1, 18: 2, 26: 3}[connectivity] >= abs(a) + abs(b) + abs(c)]
    return np.array(offs, np.int64)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background cavities not 6-connected to the volume border (3D).

    Same result as :func:`scipy.ndimage.binary_fill_holes`, via one connected-component
    labelling of the background (cc3d) inside the mask's bounding box grown by one voxel
    (every cavity lies inside it, and its outer layer is background that reaches the border).
    """
    import cc3d

    mask = np.asarray(mask, dtype=bool)
    box = bounding_box(mask, pad=1) if mask.ndim == 3 else None
    if box is None:
        return mask.copy()
    sub = mask[box]
    labels = cc3d.connected_components((~sub).view(np.uint8), connectivity=6)
    # the box faces: background there reaches the volume border (directly or around the box)
    faces = np.concatenate([labels[[0, -1]].ravel(), labels[:, [0, -1]].ravel(), labels[:, :, [0, -1]].ravel()])
    outside = np.zeros(int(labels.max()) + 1, bool)
    outside[np.unique(faces)] = True
    outside[0] = True  # label 0 is the mask itself
    out = mask.copy()
    out[box] = sub | ~outside[labels]
    return out


def grow_into(seed: np.ndarray, region: np.ndarray, connectivity: int = 26) -> np.ndarray:
    """``seed`` plus every connected component of ``region`` that touches it (hysteresis)."""
    import cc3d

    region = np.asarray(region, bool) | np.asarray(seed, bool)
    box = bounding_box(region)
    if box is None:
        return np.zeros(region.shape, bool)
    labels = cc3d.connected_components(region[box], connectivity=connectivity)
    hit = np.unique(labels[np.asarray(seed, bool)[box]])
    out = np.zeros(region.shape, bool)
    out[box] = np.isin(labels, hit[hit > 0])
    return out


def postprocess(prob: np.ndarray, options: PostprocessOptions = PostprocessOptions(), *,
                spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Threshold, keep the main trees, fill holes (each per ``options``).

    Parameters
    ----------
    prob : (Z, Y, X) ndarray of float
        Vessel probability.
    spacing : tuple of 3 float, mm

    Returns
    -------
    (Z, Y, X) ndarray of uint8 in {0, 1}
    """
    mask = threshold(prob, options.threshold)
    if options.keep_trees:
        mask = keep_main_components(mask, spacing=spacing, n_trees=options.n_trees,
                                    min_tree_mm3=options.min_tree_mm3,
                                    keep_fraction=options.keep_fraction,
                                    connectivity=options.connectivity, reach_mm=options.reach_mm)
    if options.fill_holes:
        mask = fill_holes(mask)
    return mask.astype(np.uint8)


__all__ = ["REACH_MM", "PostprocessOptions", "threshold", "keep_main_components", "fill_holes", "postprocess",
           "grow_into", "label_components", "bounding_box"]

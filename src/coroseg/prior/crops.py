"""Crop centres from centerline points: few crops, every point covered (by construction).

A crop of ``size`` voxels centred at ``c`` spans the array indices
``[c - size // 2, c - size // 2 + size)`` on each axis (the convention of
:func:`coroseg.prior.grid.extract_patch`). A point ``p`` (fractional array index, ``(k, j, i)``)
is covered when its nearest voxel ``rint(p)`` lies in that span.

Algorithm of :func:`crop_centres`:

1. initial clusters: ``kmeans`` (k from the tree length measured in crop units: the minimum
   spanning tree of the points with each axis divided by the crop size, rounded up; that k
   and its two neighbours are tried, steps 2-4 run on each, the fewest crops win) or
   ``dbscan`` (``eps_mm`` in mm, ``min_samples=1``, so every point is clustered);
2. split every cluster whose bounding box does not fit in a crop, by 2-means in crop units,
   until all fit (each cluster then defines a crop that covers it: 100 % coverage);
3. fuse clusters whose union still fits (``kmeans``: any pair; ``dbscan``: pairs whose crop
   centres are closer than ``merge_radius`` mm), closest pair first;
4. drop crops whose points are all covered by other crops (fewest points first).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial import cKDTree

METHODS = ("kmeans", "dbscan")


def crop_centres(
    points: np.ndarray,
    *,
    size: Sequence[int],
    method: str = "kmeans",
    eps_mm: float | None = None,
    merge_radius: float | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    seed: int = 0,
    shape: Sequence[int] | None = None,
    n_clusters: int | None = None,
    radii: np.ndarray | None = None,
) -> np.ndarray:
    """Crop centres covering every centerline point with few crops of ``size`` voxels.

    Parameters
    ----------
    points : (N, 3) ndarray
        Array indices ``(k, j, i)``, fractional allowed (rounded to the nearest voxel).
    size : tuple of 3 int, voxels
        Crop size along ``(k, j, i)``; ``(1, h, w)`` gives single-slice crops.
    method : {"kmeans", "dbscan"}
    eps_mm : float, mm, optional
        DBSCAN neighbourhood radius. Default: a quarter of the crop's smallest side in mm.
    merge_radius : float, mm, optional
        DBSCAN only: crops whose centres are closer than this are fused when the fused crop
        still covers both clusters. Default: half the crop's smallest side in mm.
    spacing : tuple of 3 float, mm
        Voxel size along ``(k, j, i)`` (for the mm parameters above).
    seed : int
        ``random_state`` of k-means (results are deterministic for a given seed).
    shape : tuple of 3 int, optional
        Volume shape; when given, crops are shifted inside the volume where that keeps their
        points covered.
    n_clusters : int, optional
        k-means: initial number of clusters instead of the tree-length estimate ``k0``
        (by default ``k0 - 1``, ``k0`` and ``k0 + 1`` are tried and the fewest crops kept).
    radii : (N,) ndarray, mm, optional
        Vessel radius at each point. When given, the six points ``p +- radius`` along each
        array axis are covered too, so the crops hold the vessel wall, not only its axis.

    Returns
    -------
    (M, 3) ndarray of int64
        Crop centres ``(k, j, i)``, sorted lexicographically. ``M = 0`` for no points.

    Examples
    --------
    >>> pts = np.array([[5, 5, 5], [5, 5, 40]])
    >>> crop_centres(pts, size=(16, 16, 16)).tolist()
    [[5, 5, 5], [5, 5, 40]]
    """
    with _one_thread():
        return _crop_centres(points, size=size, method=method, eps_mm=eps_mm, merge_radius=merge_radius,
                             spacing=spacing, seed=seed, shape=shape, n_clusters=n_clusters,
                             radii=radii)


def _one_thread():
    """Limit BLAS/OpenMP to one thread: on centerline-sized point sets, thread start-up in
    k-means costs 10-100x the work itself (measured on 2 cores)."""
    import sklearn.cluster  # noqa: F401  (load its OpenMP runtime first: only loaded ones are limited)
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _crop_centres(points, *, size, method, eps_mm, merge_radius, spacing, seed, shape, n_clusters,
                  radii=None) -> np.ndarray:
    size_a = _size3(size)
    spacing_a = np.asarray(spacing, dtype=float).reshape(3)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    pts = np.asarray(points, dtype=float)
    if pts.size == 0:
        return np.zeros((0, 3), dtype=np.int64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), not {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("points must be finite")
    axis_pts = np.unique(np.rint(pts).astype(np.int64), axis=0)  # for the tree length
    if radii is not None:
        pts = _add_wall_points(pts, radii, spacing_a, axes=(0, 1, 2))
    pts = np.unique(np.rint(pts).astype(np.int64), axis=0)
    side_mm = float(np.min(size_a * spacing_a))

    if method == "kmeans":
        if n_clusters is None:
            k0 = max(1, math.ceil(tree_length_units(axis_pts, size_a)))
            ks = [k for k in (k0, k0 - 1, k0 + 1) if 1 <= k <= len(pts)] or [1]
        else:
            ks = [int(min(max(1, n_clusters), len(pts)))]
        best = None
        for k in ks:  # a few k around the estimate; keep the fewest crops (first on ties)
            starts = _finish([pts[lab == v] for lab in [_kmeans_labels(pts, size_a, seed, k)]
                              for v in np.unique(lab)], pts, size_a, spacing_a, None, shape)
            if best is None or len(starts) < len(best):
                best = starts
        starts = best
    else:
        from sklearn.cluster import DBSCAN

        eps = side_mm / 4 if eps_mm is None else float(eps_mm)
        if eps <= 0:
            raise ValueError(f"eps_mm must be positive, not {eps}")
        labels = DBSCAN(eps=eps, min_samples=1).fit(pts * spacing_a).labels_
        max_dist = side_mm / 2 if merge_radius is None else float(merge_radius)
        starts = _finish([pts[labels == v] for v in np.unique(labels)], pts, size_a, spacing_a, max_dist, shape)
    centres = starts + size_a // 2
    return centres[np.lexsort(centres.T[::-1])]


def _finish(clusters, pts, size_a, spacing_a, max_dist, shape) -> np.ndarray:
    """Split, fuse, place and prune: crop starts covering every point."""
    clusters = _split_until_fit(clusters, size_a)
    clusters = _fuse(clusters, size_a, spacing_a, max_dist)
    starts = np.array([_start_for(c.min(0), c.max(0), size_a, shape) for c in clusters])
    return _drop_redundant(starts, pts, size_a)


def crop_centres_2d(
    points: np.ndarray,
    *,
    size_2d: Sequence[int],
    method: str = "kmeans",
    radii: np.ndarray | None = None,
    **kwargs,
) -> np.ndarray:
    """Per-axial-slice crop centres for 2D models: every point covered in its own slice.

    Parameters
    ----------
    points : (N, 3) ndarray
        Array indices ``(k, j, i)``; ``k`` is rounded to the slice.
    size_2d : tuple of 2 int, voxels
        In-plane crop size ``(h, w)`` along ``(j, i)``.
    method, **kwargs
        As :func:`crop_centres` (``spacing``, ``eps_mm``, ``merge_radius``, ``seed``, ``shape``).
    radii : (N,) ndarray, mm, optional
        Vessel radius at each point: the point is then also covered on every slice within
        its radius (``round(radius / spacing[0])`` slices each way, clipped to ``shape``) and
        at ``+- radius`` in plane, so the crops hold the whole vessel cross-section.

    Returns
    -------
    (M, 3) ndarray of int64
        Centres ``(k, j, i)``; the crop is the slice ``k`` and ``[j - h//2, j - h//2 + h)`` x
        ``[i - w//2, i - w//2 + w)``.
    """
    if len(size_2d) != 2:
        raise ValueError(f"size_2d must have 2 values (h, w), not {tuple(size_2d)}")
    pts = np.asarray(points, dtype=float).reshape(-1, 3)
    if len(pts) == 0:
        return np.zeros((0, 3), dtype=np.int64)
    opts = dict(eps_mm=None, merge_radius=None, spacing=(1.0, 1.0, 1.0), seed=0, shape=None, n_clusters=None)
    unknown = set(kwargs) - set(opts)
    if unknown:
        raise TypeError(f"crop_centres_2d got unexpected keyword(s) {sorted(unknown)}")
    opts.update(kwargs)
    if radii is not None:  # the vessel's cross-section reaches neighbouring slices too
        sp = np.asarray(opts["spacing"], dtype=float).reshape(3)
        pts = _add_wall_points(pts, radii, sp, axes=(1, 2))
        r = np.concatenate([np.asarray(radii, dtype=float).reshape(-1)] * 5)
        r = np.where(np.isfinite(r), np.maximum(r, 0.0), 0.0)
        reach = np.floor(r / sp[0] + 0.5).astype(np.int64)
        extra = [pts]
        for dk in range(1, int(reach.max(initial=0)) + 1):
            sel = reach >= dk
            for sign in (1, -1):
                q = pts[sel].copy()
                q[:, 0] = np.rint(q[:, 0]) + sign * dk
                extra.append(q)
        pts = np.concatenate(extra)
        if opts["shape"] is not None:
            pts = pts[(pts[:, 0] > -0.5) & (pts[:, 0] < opts["shape"][0] - 0.5)]
    ks = np.rint(pts[:, 0]).astype(np.int64)
    out = []
    with _one_thread():
        for k in np.unique(ks):
            sel = pts[ks == k].copy()
            sel[:, 0] = k
            out.append(_crop_centres(sel, size=(1, int(size_2d[0]), int(size_2d[1])), method=method, **opts))
    return np.concatenate(out).astype(np.int64)


def _add_wall_points(pts: np.ndarray, radii: np.ndarray, spacing: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """``pts`` plus ``pts +- radius`` (mm -> voxels) along each of ``axes``."""
    r = np.asarray(radii, dtype=float).reshape(-1)
    if r.shape != (len(pts),):
        raise ValueError(f"radii must have shape ({len(pts)},), not {np.shape(radii)}")
    r = np.where(np.isfinite(r), np.maximum(r, 0.0), 0.0)
    out = [pts]
    for ax in axes:
        for sign in (1.0, -1.0):
            q = pts.copy()
            q[:, ax] += sign * r / spacing[ax]
            out.append(q)
    return np.concatenate(out)


def centres_from_centerline(
    graph,
    reference,
    *,
    size: Sequence[int],
    method: str = "kmeans",
    use_radii: bool = True,
    step_mm: float | None = None,
    **kwargs,
) -> np.ndarray:
    """Crop centres for a :class:`~coroseg.io.centerline.CenterlineGraph` on an image grid.

    Samples the graph every ``step_mm`` (default half the smallest voxel side), maps the
    points to ``reference``'s array indices and calls :func:`crop_centres_2d` when
    ``size[0] == 1`` (one crop set per axial slice) or :func:`crop_centres` otherwise, with
    ``spacing`` and ``shape`` taken from ``reference`` and the vessel radii when
    ``use_radii`` (NaN radii count as 0).

    Parameters
    ----------
    graph : CenterlineGraph
    reference : Volume
    size : tuple of 3 int, voxels
    method, **kwargs
        As :func:`crop_centres`.

    Returns
    -------
    (M, 3) ndarray of int64
    """
    step = float(min(reference.spacing)) / 2 if step_mm is None else float(step_mm)
    if len(graph) == 0:
        return np.zeros((0, 3), dtype=np.int64)
    pts, rad = graph.dense_points(step)
    idx = reference.world_to_index(pts)
    size_a = _size3(size)
    kw = dict(spacing=reference.spacing, shape=reference.shape, radii=rad if use_radii else None)
    kw.update(kwargs)
    if size_a[0] == 1:
        return crop_centres_2d(idx, size_2d=tuple(int(v) for v in size_a[1:]), method=method, **kw)
    return crop_centres(idx, size=tuple(int(v) for v in size_a), method=method, **kw)


def covered(points: np.ndarray, centres: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """(N,) bool: which points lie inside at least one crop (same rule as :func:`crop_centres`)."""
    pts = np.rint(np.asarray(points, dtype=float).reshape(-1, 3)).astype(np.int64)
    size_a = _size3(size)
    out = np.zeros(len(pts), dtype=bool)
    for c in np.asarray(centres, dtype=np.int64).reshape(-1, 3):
        lo = c - size_a // 2
        out |= np.all((pts >= lo) & (pts < lo + size_a), axis=1)
    return out


# ---- helpers --------------------------------------------------------------------------------
def _size3(size: Sequence[int]) -> np.ndarray:
    s = np.asarray(size, dtype=np.int64).reshape(-1)
    if s.shape != (3,) or (s < 1).any():
        raise ValueError(f"size must be 3 positive ints (k, j, i), not {tuple(np.asarray(size).tolist())}")
    return s


def tree_length_units(pts: np.ndarray, size: np.ndarray, k_nn: int = 8) -> float:
    """Length of the minimum spanning tree of ``pts`` with axes scaled to crop units."""
    if len(pts) < 2:
        return 0.0
    u = pts / size
    k = min(k_nn + 1, len(u))
    d, j = cKDTree(u).query(u, k=k)
    rows = np.repeat(np.arange(len(u)), k - 1)
    m = coo_matrix((d[:, 1:].ravel() + 1e-12, (rows, j[:, 1:].ravel())), shape=(len(u), len(u)))
    return float(minimum_spanning_tree(m).sum())


def _kmeans_labels(pts: np.ndarray, size: np.ndarray, seed: int, k: int) -> np.ndarray:
    if k <= 1:
        return np.zeros(len(pts), dtype=np.int64)
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=3, random_state=seed).fit(pts / size).labels_


def _fits(lo: np.ndarray, hi: np.ndarray, size: np.ndarray) -> bool:
    return bool(np.all(hi - lo + 1 <= size))


def _two_means(c: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split ``c`` in two, in crop units; deterministic (seeded by the extreme points)."""
    u = c / size
    ax = int(np.argmax(np.ptp(u, axis=0)))
    cent = np.stack([u[np.argmin(u[:, ax])], u[np.argmax(u[:, ax])]])
    lab = np.zeros(len(u), dtype=bool)
    for _ in range(20):
        d0 = ((u - cent[0]) ** 2).sum(1)
        d1 = ((u - cent[1]) ** 2).sum(1)
        new = d1 < d0
        if new.all() or not new.any():
            break
        if (new == lab).all():
            break
        lab = new
        cent = np.stack([u[~lab].mean(0), u[lab].mean(0)])
    if lab.all() or not lab.any():  # degenerate: median split along the widest axis
        order = np.argsort(u[:, ax], kind="stable")
        lab = np.zeros(len(u), dtype=bool)
        lab[order[len(u) // 2:]] = True
    return c[~lab], c[lab]


def _split_until_fit(clusters: list[np.ndarray], size: np.ndarray) -> list[np.ndarray]:
    out, todo = [], list(clusters)
    while todo:
        c = todo.pop()
        if _fits(c.min(0), c.max(0), size):
            out.append(c)
        else:
            todo.extend(_two_means(c, size))
    return out


def _fuse(clusters: list[np.ndarray], size: np.ndarray, spacing: np.ndarray,
          max_dist: float | None) -> list[np.ndarray]:
    """Greedily fuse pairs whose union fits in one crop, closest box centres first.

    The pair costs (box-centre distance, ``inf`` where the union does not fit) are built once
    and only the merged cluster's row and column are updated after each fusion, with a cached
    minimum per row: about ``O(n^2)`` instead of rebuilding ``(n, n, 3)`` arrays ``n`` times.
    Ties are broken exactly as a row-major ``argmin`` over the full matrix would.
    """
    clusters = list(clusters)
    n = len(clusters)
    if n < 2:
        return clusters
    lo = np.array([c.min(0) for c in clusters])
    hi = np.array([c.max(0) for c in clusters])

    def costs(i: int) -> np.ndarray:
        """Row ``i`` of the cost matrix against every cluster (dead ones are set by the caller)."""
        ulo = np.minimum(lo[i], lo)
        uhi = np.maximum(hi[i], hi)
        ok = np.all(uhi - ulo + 1 <= size, axis=1)
        mid = (lo + hi) / 2 * spacing
        dist = np.linalg.norm(mid[i] - mid, axis=1)
        if max_dist is not None:
            ok &= dist < max_dist
        ok[i] = False
        return np.where(ok, dist, np.inf)

    d = np.stack([costs(i) for i in range(n)])
    alive = np.ones(n, dtype=bool)
    row_arg = np.argmin(d, axis=1)
    row_min = d[np.arange(n), row_arg]
    while True:
        a = int(np.argmin(row_min))
        if not np.isfinite(row_min[a]):
            break
        b = int(row_arg[a])
        clusters[a] = np.concatenate([clusters[a], clusters[b]])
        lo[a], hi[a] = np.minimum(lo[a], lo[b]), np.maximum(hi[a], hi[b])
        alive[b] = False
        d[b, :] = np.inf
        d[:, b] = np.inf
        row_min[b] = np.inf
        new = costs(a)
        new[~alive] = np.inf
        d[a, :] = new
        d[:, a] = new
        row_arg[a] = int(np.argmin(new))
        row_min[a] = new[row_arg[a]]
        # other rows: recompute where the cached minimum pointed at a or b, else compare with column a
        others = alive.copy()
        others[a] = False
        stale = others & ((row_arg == a) | (row_arg == b))
        for r in np.flatnonzero(stale):
            row_arg[r] = int(np.argmin(d[r]))
            row_min[r] = d[r, row_arg[r]]
        col = d[:, a]
        better = others & ~stale & ((col < row_min) | ((col == row_min) & (a < row_arg)))
        row_arg[better] = a
        row_min[better] = col[better]
    return [clusters[i] for i in np.flatnonzero(alive)]


def _start_for(lo: np.ndarray, hi: np.ndarray, size: np.ndarray, shape: Sequence[int] | None) -> np.ndarray:
    """Crop start covering ``[lo, hi]``: centred on it, shifted inside ``shape`` if possible."""
    centre = -((-(lo + hi)) // 2)  # ceil((lo + hi) / 2): a single point sits at the centre
    start = centre - size // 2  # always within [hi - size + 1, lo] when the box fits
    if shape is not None:
        shp = np.asarray(shape, dtype=np.int64).reshape(3)
        feas_lo, feas_hi = hi - size + 1, lo  # any start in [feas_lo, feas_hi] covers the box
        inside_hi = shp - size  # start <= this keeps the crop inside
        want = np.clip(start, 0, np.maximum(inside_hi, 0))
        start = np.clip(want, feas_lo, feas_hi)
    return start


def _drop_redundant(starts: np.ndarray, pts: np.ndarray, size: np.ndarray) -> np.ndarray:
    inside = np.stack([np.all((pts >= s) & (pts < s + size), axis=1) for s in starts], axis=1)
    count = inside.sum(1)
    keep = np.ones(len(starts), dtype=bool)
    for c in np.argsort(inside.sum(0), kind="stable"):
        if np.all(count[inside[:, c]] >= 2):
            keep[c] = False
            count -= inside[:, c]
    return starts[keep]


__all__ = ["crop_centres", "crop_centres_2d", "centres_from_centerline", "covered", "tree_length_units", "METHODS"]

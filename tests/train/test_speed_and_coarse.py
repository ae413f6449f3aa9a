"""Coarse locator targets, the model-spacing option, and the fast crop-fusion / junction-merge steps."""

from __future__ import annotations

import time

import networkx as nx
import numpy as np
import pytest

from coroseg.data.cache import coarse_label
from coroseg.errors import CorosegError
from coroseg.io.volume import Volume, resample


def _line_label(shape=(40, 40, 40), spacing=(0.5, 0.5, 0.5)) -> Volume:
    """A one-voxel-thick straight line along z: the thinnest possible vessel."""
    lab = np.zeros(shape, np.uint8)
    lab[:, 20, 21] = 1
    return Volume(lab, spacing, (0.0, 0.0, 0.0), is_label=True)


def test_coarse_label_keeps_a_thin_line_connected_where_nearest_neighbour_loses_it():
    import cc3d

    lab = _line_label()
    coarse = Volume(np.zeros((20, 20, 20), np.uint8), (1.0, 1.0, 1.0), resample(lab, (1.0, 1.0, 1.0)).origin)
    nn = resample(lab, (1.0, 1.0, 1.0)).array
    soft = coarse_label(lab, coarse)
    # x index 21 at 0.5 mm falls between coarse voxels: nearest neighbour drops the whole line
    assert nn.sum() == 0
    assert soft.shape == (20, 20, 20)
    assert cc3d.connected_components(soft > 0).max() == 1
    # the line (x = 10.5 mm) lies between coarse columns 10 and 11 (x = 10.25, 11.25 mm)
    assert set(map(tuple, np.argwhere(soft)[:, 1:].tolist())) <= {(10, 10), (10, 11)}
    assert soft[:, 10, 10].all()


def test_model_spacing_option():
    from coroseg.train.options import TrainOptions
    from coroseg.train.phases import model_spacing

    cases = [(1.0, 0.8, 0.8), (1.2, 0.7, 0.9), (0.9, 0.85, 0.75)]  # median (1.0, 0.8, 0.8)
    assert model_spacing(None, cases) == (1.0, 0.8, 0.8)
    assert model_spacing("median", cases) == (1.0, 0.8, 0.8)
    assert model_spacing("min", cases) == (0.9, 0.7, 0.75)
    assert model_spacing([0.6, 0.5, 0.5], cases) == (0.6, 0.5, 0.5)
    # anything else never reaches it: the option is checked when the options are made
    for bad in ("coarse", [0.5, -1.0, 0.5], 0.7):
        with pytest.raises(CorosegError, match=r"training option spacing=.*expected \"median\" or \"min\" or three"):
            TrainOptions(spacing=bad)


def _fuse_reference(clusters, size, spacing, max_dist):
    """The original quadratic-per-step greedy fusion (kept here as the specification)."""
    clusters = list(clusters)
    lo = np.array([c.min(0) for c in clusters])
    hi = np.array([c.max(0) for c in clusters])
    alive = np.ones(len(clusters), dtype=bool)
    while alive.sum() > 1:
        idx = np.flatnonzero(alive)
        ulo = np.minimum(lo[idx, None], lo[None, idx])
        uhi = np.maximum(hi[idx, None], hi[None, idx])
        ok = np.all(uhi - ulo + 1 <= size, axis=2)
        mid = (lo[idx] + hi[idx]) / 2 * spacing
        dist = np.linalg.norm(mid[:, None] - mid[None], axis=2)
        if max_dist is not None:
            ok &= dist < max_dist
        np.fill_diagonal(ok, False)
        if not ok.any():
            break
        d = np.where(ok, dist, np.inf)
        a, b = np.unravel_index(int(np.argmin(d)), d.shape)
        ia, ib = idx[a], idx[b]
        clusters[ia] = np.concatenate([clusters[ia], clusters[ib]])
        lo[ia], hi[ia] = ulo[a, b], uhi[a, b]
        alive[ib] = False
    return [clusters[i] for i in np.flatnonzero(alive)]


def test_fuse_equals_the_reference_greedy_fusion_and_is_fast():
    from coroseg.prior.crops import _fuse

    rng = np.random.default_rng(0)
    size, spacing = np.array([40, 40, 40]), np.array([0.8, 0.7, 0.7])
    for trial in range(40):
        clusters = [rng.integers(0, 100, (int(rng.integers(1, 5)), 3)) for _ in range(int(rng.integers(1, 50)))]
        max_dist = None if trial % 2 else 30.0
        want = _fuse_reference([c.copy() for c in clusters], size, spacing, max_dist)
        got = _fuse([c.copy() for c in clusters], size, spacing, max_dist)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
    # 1500 single points: the reference needs minutes, the incremental version about a second
    pts = [rng.integers(0, 300, (1, 3)) for _ in range(1500)]
    t0 = time.perf_counter()
    out = _fuse(pts, size, spacing, None)
    assert time.perf_counter() - t0 < 20.0
    assert sum(len(c) for c in out) == 1500


def _comb(n_teeth: int, radii=None) -> nx.Graph:
    """A spine of junctions 1 mm apart, each with a 10 mm tooth, plus 10 mm spine ends."""
    g = nx.Graph()
    for i in range(n_teeth):
        g.add_node(i, mm=np.array([float(i), 0.0, 0.0]), radius=2.0 if radii is None else float(radii[i]))
        g.add_node(10_000 + i, mm=np.array([float(i), 10.0, 0.0]), radius=0.5)
        g.add_edge(i, 10_000 + i, length=10.0)
        if i:
            g.add_edge(i - 1, i, length=1.0)
    g.add_node(-1, mm=np.array([-10.0, 0.0, 0.0]), radius=0.5)
    g.add_node(-2, mm=np.array([n_teeth + 9.0, 0.0, 0.0]), radius=0.5)
    g.add_edge(-1, 0, length=10.0)
    g.add_edge(n_teeth - 1, -2, length=10.0)
    return g


def _merge_reference(g: nx.Graph) -> None:
    """The original rescan-everything junction merge (the specification)."""
    from coroseg.prior.skeleton import _path_length, _walk

    changed = True
    while changed:
        changed = False
        for a in sorted(n for n in g.nodes if g.degree(n) >= 3):
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
                    changed = True
                    break
            if changed:
                break


def _edges(g: nx.Graph) -> set:
    return {tuple(sorted(e)) for e in g.edges}


def test_merge_junctions_matches_the_rescan_reference():
    from coroseg.prior.skeleton import _merge_junctions

    rng = np.random.default_rng(1)
    for _ in range(5):
        radii = rng.uniform(0.5, 3.0, 40)
        a, b = _comb(40, radii), _comb(40, radii)
        _merge_junctions(a)
        _merge_reference(b)
        assert _edges(a) == _edges(b)


def test_merge_junctions_contracts_a_long_spine_quickly():
    from coroseg.prior.skeleton import _merge_junctions

    g = _comb(600)
    t0 = time.perf_counter()
    _merge_junctions(g)
    assert time.perf_counter() - t0 < 20.0
    # radius 2 mm: a junction swallows the next one (1 mm), then the one after (now 2 mm away),
    # then the third is 3 mm away: one junction in three survives, each with 3 teeth
    junctions = sorted(n for n in g.nodes if g.degree(n) >= 3)
    assert junctions == list(range(0, 600, 3))
    assert nx.is_connected(g)


def test_spurious_points_are_smooth_pieces_of_the_requested_length_near_the_tree():
    from coroseg.data.sampling import spurious_points

    spacing = np.array([0.8, 0.5, 0.5])
    real = np.stack([np.arange(50.0), np.full(50, 40.0), np.full(50, 40.0)], 1)  # (k, j, i)
    rad = np.full(50, 1.25)
    pts, r = spurious_points(real, rad, spacing, np.random.default_rng(3), 4, length_mm=(10.0, 10.0),
                             offset_mm=5.0)
    step = 0.25  # half the smallest voxel side, mm
    assert len(pts) == 4 * 40 and np.all(r == 1.25)
    mm = pts * spacing
    gaps = np.linalg.norm(np.diff(mm.reshape(4, 40, 3), axis=1), axis=2)
    np.testing.assert_allclose(gaps, step, rtol=1e-9)
    # every piece starts within offset_mm (per axis) of a real point
    starts = mm.reshape(4, 40, 3)[:, 0]
    d = np.abs(starts[:, None] - (real * spacing)[None]).max(2).min(1)
    assert np.all(d <= 5.0 + 1e-9)
    again, _ = spurious_points(real, rad, spacing, np.random.default_rng(3), 4, length_mm=(10.0, 10.0),
                               offset_mm=5.0)
    np.testing.assert_array_equal(pts, again)
    assert spurious_points(real, rad, spacing, np.random.default_rng(0), 0)[0].shape == (0, 3)

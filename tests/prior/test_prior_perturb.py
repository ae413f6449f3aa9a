"""Centerline perturbation (seeded, replayable) and the overlap score."""

from __future__ import annotations

import numpy as np
import pytest

from coroseg.io.centerline import CenterlineGraph
from coroseg.prior import apply_perturbation, centerline_overlap, perturb_centerline, sample_perturbation


def _y_graph() -> CenterlineGraph:
    """Trunk (0,0,0)->(0,0,20) then two daughters of 20 mm, points every 1 mm, radius 1 mm."""
    trunk = np.c_[np.zeros(21), np.zeros(21), np.arange(21.0)]
    d1 = trunk[-1] + np.c_[np.arange(1, 21.0), np.zeros(20), np.zeros(20)]
    d2 = trunk[-1] + np.c_[-np.arange(1, 21.0), np.zeros(20), np.zeros(20)]
    pts = np.concatenate([trunk, d1, d2])
    edges = [(i, i + 1) for i in range(20)] + [(20, 21)] + [(i, i + 1) for i in range(21, 40)]
    edges += [(20, 41)] + [(i, i + 1) for i in range(41, 60)]
    return CenterlineGraph.from_points(pts, np.ones(len(pts)), edges, ostia=[0])


def _same(a: CenterlineGraph, b: CenterlineGraph) -> bool:
    return a.nodes == b.nodes and np.array_equal(a.positions(), b.positions()) and \
        sorted(a.graph.edges) == sorted(b.graph.edges)


def test_same_seed_same_result_and_input_untouched():
    g = _y_graph()
    before = g.positions().copy()
    a = perturb_centerline(g, np.random.default_rng(7), drop_branch_p=0.5, gap_p=0.5)
    b = perturb_centerline(g, np.random.default_rng(7), drop_branch_p=0.5, gap_p=0.5)
    c = perturb_centerline(g, np.random.default_rng(8), drop_branch_p=0.5, gap_p=0.5)
    assert _same(a, b) and not _same(a, c)
    np.testing.assert_array_equal(g.positions(), before)
    # the recorded parameters replay exactly
    p = sample_perturbation(g, np.random.default_rng(7), drop_branch_p=0.5, gap_p=0.5)
    assert _same(apply_perturbation(g, p), a)


def test_drop_all_leaf_branches_leaves_the_trunk():
    g = _y_graph()
    out = perturb_centerline(g, np.random.default_rng(0), drop_branch_p=1.0, jitter_mm=0.0,
                             truncate_mm=(0.0, 0.0), gap_p=0.0)
    assert out.nodes == list(range(21))
    assert out.ostia() == [0] and out.endpoints() == [20]
    assert out.length_mm() == pytest.approx(20.0)


def test_truncation_shortens_each_end_and_keeps_the_junction():
    g = _y_graph()
    out = perturb_centerline(g, np.random.default_rng(0), drop_branch_p=0.0, jitter_mm=0.0,
                             truncate_mm=(5.0, 5.0), gap_p=0.0)
    assert out.length_mm() == pytest.approx(60.0 - 2 * 5.0)
    assert out.ostia() == [0] and len(out.intersections()) == 1 and len(out.endpoints()) == 2
    big = perturb_centerline(g, np.random.default_rng(0), drop_branch_p=0.0, jitter_mm=0.0,
                             truncate_mm=(100.0, 100.0), gap_p=0.0)
    assert big.length_mm() == pytest.approx(20.0 + 2 * 1.0)  # one edge kept beyond the junction


def test_jitter_is_smooth_with_the_requested_std_and_ostium_kept():
    g = _y_graph()
    out = perturb_centerline(g, np.random.default_rng(0), drop_branch_p=0.0, jitter_mm=0.5,
                             truncate_mm=(0.0, 0.0), gap_p=0.0)
    d = out.positions() - g.positions()
    assert d.std() == pytest.approx(0.5)
    # smooth: neighbours move alike (consecutive displacement differences are small)
    assert np.abs(np.diff(d[:21], axis=0)).mean() < 0.5 * np.abs(d[:21]).mean()
    assert out.ostia() == [0]


def test_gaps_cut_holes():
    g = _y_graph()
    out = perturb_centerline(g, np.random.default_rng(0), drop_branch_p=0.0, jitter_mm=0.0,
                             truncate_mm=(0.0, 0.0), gap_p=1.0, gap_mm=(3.0, 3.0))
    assert len(out) < len(g)
    assert out.length_mm() < g.length_mm() - 3 * 2  # three branches, a 3 mm hole each (>= 2 edges)


def test_overlap_identity_shift_and_half():
    g = _y_graph()
    same = centerline_overlap(g, g)
    assert same["recall"] == 1.0 and same["precision"] == 1.0 and same["f1"] == 1.0
    far = centerline_overlap(g.transformed(lambda p: p + [0, 5.0, 0]), g)  # radius 1 mm
    assert far["recall"] == 0.0 and far["precision"] == 0.0
    trunk = CenterlineGraph.from_points(np.c_[np.zeros(21), np.zeros(21), np.arange(21.0)],
                                        np.ones(21), [(i, i + 1) for i in range(20)], ostia=[0])
    half = centerline_overlap(trunk, g)
    assert half["precision"] == 1.0
    # 121 reference samples (0.5 mm); found: 41 on the trunk + 2 within 1 mm on each daughter
    assert half["recall"] == pytest.approx(45 / 121)
    empty = centerline_overlap(CenterlineGraph(), g)
    assert empty["recall"] == 0.0 and empty["n_ours"] == 0


def test_gap_on_a_branch_between_two_junctions_lands_on_that_branch():
    """A gap recorded for the branch 20 -> 40 (both ends junctions) cuts that branch, not the trunk."""
    from coroseg.prior import Perturbation

    trunk = np.c_[np.zeros(21), np.zeros(21), np.arange(21.0)]                      # nodes 0..20
    mid = trunk[-1] + np.c_[np.arange(1, 21.0), np.zeros(20), np.zeros(20)]         # 21..40
    side = trunk[-1] + np.c_[-np.arange(1, 11.0), np.zeros(10), np.zeros(10)]       # 41..50 (leaf)
    up = mid[-1] + np.c_[np.zeros(10), np.arange(1, 11.0), np.zeros(10)]            # 51..60 (leaf)
    down = mid[-1] + np.c_[np.zeros(10), -np.arange(1, 11.0), np.zeros(10)]         # 61..70 (leaf)
    pts = np.concatenate([trunk, mid, side, up, down])
    edges = [(i, i + 1) for i in range(40)] + [(20, 41)] + [(i, i + 1) for i in range(41, 50)]
    edges += [(40, 51)] + [(i, i + 1) for i in range(51, 60)] + [(40, 61)] + [(i, i + 1) for i in range(61, 70)]
    g = CenterlineGraph.from_points(pts, np.ones(len(pts)), edges, ostia=[0])
    out = apply_perturbation(g, Perturbation(gaps=[(20, 21, 0.5, 4.0)]))
    removed = sorted(set(g.nodes) - set(out.nodes))
    assert removed == [28, 29, 30, 31, 32]  # 4 mm around the middle (10 mm) of the 20 mm branch

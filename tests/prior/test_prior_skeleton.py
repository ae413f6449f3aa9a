"""Skeleton -> centerline graph on phantoms with known geometry."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from coroseg.errors import InputError
from coroseg.io.volume import Volume
from coroseg.prior import centerline_from_mask

from .phantoms import _dist_to_segment, _mm_grid, torus_arc_mask, tube_mask, y_mask


def _mm(vol: Volume, graph, nodes) -> np.ndarray:
    """Node positions as array-axis mm from voxel [0, 0, 0] ((k, j, i) * spacing)."""
    pos = np.array([graph.graph.nodes[n]["pos"] for n in nodes])
    return vol.world_to_index(pos) * np.array(vol.spacing)


def test_straight_tube_one_branch_exact_radius_and_ends():
    vol, a, b = tube_mask()  # radius 3 mm, 1 mm voxels, ends at i = 8 and 51
    g = centerline_from_mask(vol)
    assert (len(g.ostia()), len(g.endpoints()), len(g.intersections()), g.n_branches()) == (1, 1, 0, 1)
    ends = _mm(vol, g, g.ostia() + g.endpoints())
    d = [min(np.linalg.norm(e - a), np.linalg.norm(e - b)) for e in ends]
    assert max(d) <= 1.0 + 1e-9  # each end within one voxel of the true end
    assert abs(g.length_mm() - np.linalg.norm(b - a)) <= 2.0
    # interior radius: nearest background voxel of the axis is at (3, 1) voxels: sqrt(10)
    r = g.radii()
    assert np.median(r) == pytest.approx(np.sqrt(10.0))


def test_anisotropic_tube_radii_equal_scipy_edt():
    vol, a, b = tube_mask(shape=(20, 30, 100), spacing=(0.625, 0.42, 0.42), i0=10, i1=90)
    g = centerline_from_mask(vol)
    assert (len(g.ostia()), len(g.endpoints()), len(g.intersections())) == (1, 1, 0)
    idx = np.rint(vol.world_to_index(g.positions())).astype(int)
    edt = ndi.distance_transform_edt(vol.array > 0, sampling=vol.spacing)
    np.testing.assert_allclose(g.radii(), edt[tuple(idx.T)], rtol=0, atol=1e-9)
    ends = _mm(vol, g, g.ostia() + g.endpoints())
    assert max(min(np.linalg.norm(e - a), np.linalg.norm(e - b)) for e in ends) <= 1.0
    assert abs(g.length_mm() - np.linalg.norm(b - a)) <= 2.0


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.625, 0.42, 0.42), (1.0, 0.5, 0.5)])
def test_y_bifurcation_topology(spacing):
    vol, (root, e1, e2), fork = y_mask(spacing=spacing)
    g = centerline_from_mask(vol)
    assert (len(g.ostia()), len(g.endpoints()), len(g.intersections()), g.n_branches()) == (1, 2, 1, 3)
    assert np.linalg.norm(_mm(vol, g, g.ostia())[0] - root) <= 1.5  # the wide trunk's end
    assert np.linalg.norm(_mm(vol, g, g.intersections())[0] - fork) <= 1.5
    found = _mm(vol, g, g.endpoints())
    for e in (e1, e2):
        assert np.linalg.norm(found - e, axis=1).min() <= 1.5
    expected = np.linalg.norm(fork - root) + np.linalg.norm(e1 - fork) + np.linalg.norm(e2 - fork)
    assert abs(g.length_mm() - expected) <= 2.0
    assert all(t is None for _, t in g.graph.nodes(data="side"))  # one tree: no side


def test_aorta_point_picks_the_nearest_end_as_ostium():
    vol, (root, e1, e2), fork = y_mask()
    g = centerline_from_mask(vol, aorta_point=vol.index_to_world((e1 + [0, 2, 0])[None])[0])
    assert np.linalg.norm(_mm(vol, g, g.ostia())[0] - e1) <= 1.5
    assert len(g.endpoints()) == 2


def test_torus_arc_length():
    vol = torus_arc_mask()  # half torus, R = 20 mm
    g = centerline_from_mask(vol)
    assert (len(g.ostia()), len(g.endpoints()), len(g.intersections())) == (1, 1, 0)
    assert abs(g.length_mm() - np.pi * 20.0) <= 2.0


def _two_tubes() -> Volume:
    """Two collinear tubes (radius 2 mm) whose masks are 1 voxel apart (i = 37 | 39)."""
    m = np.zeros((16, 16, 80), np.uint8)
    grid = _mm_grid(m.shape, (1, 1, 1))
    m |= _dist_to_segment(grid, np.array([8, 8, 5.0]), np.array([8, 8, 35.0])) <= 2.0
    m |= _dist_to_segment(grid, np.array([8, 8, 41.0]), np.array([8, 8, 74.0])) <= 2.0
    return Volume(m, (1.0, 1.0, 1.0), is_label=True)


def test_gap_bridging_joins_components_within_bridge_gap():
    vol = _two_tubes()
    split = centerline_from_mask(vol, bridge_gap_mm=0.0)
    assert len(split.ostia()) == 2
    ends = sorted(split.graph.nodes[n]["pos"][0] for n in split.ostia() + split.endpoints())
    gap = ends[2] - ends[1]  # skeleton ends facing each other
    assert len(centerline_from_mask(vol, bridge_gap_mm=gap - 0.01).ostia()) == 2
    joined = centerline_from_mask(vol, bridge_gap_mm=gap + 0.01)
    assert (len(joined.ostia()), len(joined.endpoints()), len(joined.intersections())) == (1, 1, 0)


def test_small_components_dropped():
    vol, a, b = tube_mask()
    vol.array[2:5, 2:5, 2:5] = 1  # a 3-voxel blob: skeleton shorter than 5 mm
    assert len(centerline_from_mask(vol).ostia()) == 1
    assert len(centerline_from_mask(vol, min_component_mm=0.0).ostia()) == 2


def test_side_bump_spur_is_pruned():
    vol, a, b = tube_mask(shape=(24, 24, 60))
    grid = _mm_grid(vol.shape, (1, 1, 1))
    vol.array[np.linalg.norm(grid - np.array([11, 15.0, 30]), axis=-1) <= 2.5] = 1  # bump
    raw = centerline_from_mask(vol, min_spur_mm=0.0)
    assert len(raw.intersections()) >= 1  # the bump makes a spur...
    g = centerline_from_mask(vol)
    assert (len(g.ostia()), len(g.endpoints()), len(g.intersections())) == (1, 1, 0)  # ...pruned


def test_two_trees_get_left_and_right_sides():
    vol, a, b = tube_mask(shape=(16, 40, 60))
    vol.array[:] = 0
    grid = _mm_grid(vol.shape, (1, 1, 1))  # identity direction: LPS x grows with i
    vol.array[_dist_to_segment(grid, np.array([8, 5, 45.0]), np.array([8, 34, 45.0])) <= 2.5] = 1
    vol.array[_dist_to_segment(grid, np.array([8, 5, 10.0]), np.array([8, 20, 10.0])) <= 2.5] = 1
    g = centerline_from_mask(vol)
    sides = {g.graph.nodes[o]["side"]: g.graph.nodes[o]["pos"][0] for o in g.ostia()}
    assert set(sides) == {"LEFT", "RIGHT"} and sides["LEFT"] > sides["RIGHT"]


def test_empty_mask_gives_empty_graph_and_2d_is_refused():
    vol = Volume(np.zeros((5, 6, 7), np.uint8), is_label=True)
    assert len(centerline_from_mask(vol)) == 0
    with pytest.raises(InputError, match=r"expected a 3D label array .*found shape \(6, 7\)"):
        centerline_from_mask(Volume(np.zeros((6, 7), np.uint8)))

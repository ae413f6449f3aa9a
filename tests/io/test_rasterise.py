"""Rasterisation of centerline graphs: exact voxel sets for lines, tube volumes vs pi r^2 L."""

from __future__ import annotations

import numpy as np
import pytest

from coroseg.io.centerline import CenterlineGraph
from coroseg.io.rasterise import rasterise
from coroseg.io.volume import Volume

OBLIQUE = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def _line(a, b, n: int, r: float = 1.0) -> CenterlineGraph:
    pts = np.linspace(a, b, n)
    return CenterlineGraph.from_polylines([pts], [np.full(n, r)])


def test_points_straight_line_along_x_exact() -> None:
    ref = Volume(np.zeros((12, 12, 12), np.uint8))
    out = rasterise(_line([2.0, 5.0, 5.0], [8.0, 5.0, 5.0], 3), ref)
    expected = np.zeros_like(out)
    expected[5, 5, 2:9] = 1
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8


def test_points_line_anisotropic_origin_exact() -> None:
    ref = Volume(np.zeros((8, 12, 10), np.uint8), spacing=(2.0, 1.0, 0.5), origin=(3.0, -5.0, 3.0))
    # world y from voxel j=2 to j=9, at i=4 (x = 3 + 0.5*4) and k=3 (z = 3 + 2*3)
    out = rasterise(_line([5.0, -3.0, 9.0], [5.0, 4.0, 9.0], 2), ref)
    expected = np.zeros_like(out)
    expected[3, 2:10, 4] = 1
    np.testing.assert_array_equal(out, expected)


def test_points_oblique_direction_exact() -> None:
    ref = Volume(np.zeros((6, 10, 10), np.uint8), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
                 direction=OBLIQUE)
    # index axis i runs along world +y, j along world -x
    out = rasterise(_line([-3.0, 1.0, 2.0], [-3.0, 7.0, 2.0], 4), ref)
    expected = np.zeros_like(out)
    expected[2, 3, 1:8] = 1
    np.testing.assert_array_equal(out, expected)


def test_points_diagonal_has_no_gaps() -> None:
    ref = Volume(np.zeros((30, 30, 30), np.uint8), spacing=(0.7, 0.5, 0.3))
    out = rasterise(_line([1.0, 1.0, 1.0], [8.0, 13.0, 19.0], 2), ref)
    import cc3d

    assert cc3d.connected_components(out, connectivity=26).max() == 1
    assert out.sum() >= 19 / 0.7


@pytest.mark.parametrize("spacing,direction,origin", [
    ((0.5, 0.5, 0.5), np.eye(3), (-16.0, -16.0, -2.0)),
    ((0.625, 0.4, 0.35), OBLIQUE, (20.0, -16.0, -2.0)),  # index j runs along world -x
])
def test_tube_volume_is_capsule(spacing, direction, origin) -> None:
    """A tube of radius r and length L: a capsule of volume pi r^2 L + 4/3 pi r^3 (within 3 %)."""
    r, length = 3.0, 20.0
    ref = Volume(np.zeros((70, 90, 90), np.uint8), spacing=spacing, origin=origin, direction=direction)
    a = np.array([0.0, 0.0, 8.0])
    u = np.array([1.0, 2.0, 2.0]) / 3.0
    g = _line(a, a + length * u, 5, r=r)
    out = rasterise(g, ref, mode="tubes")
    vol = out.sum() * float(np.prod(spacing))
    expected = np.pi * r**2 * length + 4 / 3 * np.pi * r**3
    assert vol == pytest.approx(expected, rel=0.03)
    half = rasterise(g, ref, mode="tubes", radius_scale=0.5)
    expected_half = np.pi * (r / 2) ** 2 * length + 4 / 3 * np.pi * (r / 2) ** 3
    assert half.sum() * float(np.prod(spacing)) == pytest.approx(expected_half, rel=0.05)
    assert np.all(out >= half)


def test_tube_contains_points_and_respects_grid_edge() -> None:
    ref = Volume(np.zeros((10, 10, 10), np.uint8))
    g = _line([-5.0, 5.0, 5.0], [5.0, 5.0, 5.0], 11, r=1.0)  # half outside the grid
    tubes = rasterise(g, ref, mode="tubes")
    points = rasterise(g, ref, mode="points")
    assert np.all(tubes >= points)
    # voxel centres within 1 mm of the segment x in [0, 5]: the cross (5 voxels) per slice
    # for x = 0..5, plus the cap's single voxel at x = 6
    assert tubes.sum() == 6 * 5 + 1


def test_tubes_need_radii() -> None:
    ref = Volume(np.zeros((4, 4, 4), np.uint8))
    g = CenterlineGraph.from_polylines([np.array([[0.0, 0, 0], [1, 1, 1]])])
    with pytest.raises(ValueError, match="finite radii"):
        rasterise(g, ref, mode="tubes")
    with pytest.raises(ValueError, match="mode must be"):
        rasterise(g, ref, mode="lines")


def test_empty_graph_gives_empty_mask() -> None:
    ref = Volume(np.zeros((4, 5, 6), np.uint8))
    out = rasterise(CenterlineGraph(), ref, mode="tubes")
    assert out.shape == (4, 5, 6) and out.sum() == 0

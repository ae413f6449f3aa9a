"""Anti-aliased painting, the tube band and the aligned upsampling: exact known answers."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from coroseg.synth.canvas import Canvas, segment_distance
from coroseg.synth.render import upsample


def test_sphere_coverage_integrates_to_its_volume() -> None:
    c = Canvas((40, 40, 40), (0.5, 0.5, 0.5), (-10, -10, -10), fill=0.0)
    x, y, z = c.coords((slice(None),) * 3)
    r = 6.0
    c.paint((slice(None),) * 3, np.sqrt(x * x + y * y + z * z) - r, 1.0, 1)
    vol = c.img.sum() * 0.5 ** 3
    assert abs(vol - 4 / 3 * np.pi * r ** 3) / (4 / 3 * np.pi * r ** 3) < 0.01
    assert c.img.min() == 0.0 and c.img.max() == 1.0
    # ids where coverage > 1/2: the voxel centres inside the sphere (none on the surface here)
    inside = (x * x + y * y + z * z) < r * r
    np.testing.assert_array_equal(c.sid == 1, np.broadcast_to(inside, c.shape))


def test_paint_blends_linearly() -> None:
    c = Canvas((1, 1, 3), (1.0, 1.0, 1.0), (0, 0, 0), fill=100.0)
    c.paint((slice(None),) * 3, np.array([[[-1.0, 0.0, 1.0]]], np.float32), 300.0, 2)
    np.testing.assert_allclose(c.img[0, 0], [300.0, 200.0, 100.0])
    np.testing.assert_array_equal(c.sid[0, 0], [2, 0, 0])


def test_band_holds_every_voxel_within_reach() -> None:
    c = Canvas((30, 35, 40), (0.7, 0.4, 0.4), (-8.0, -7.0, -10.0))
    rng = np.random.default_rng(0)
    pts = rng.uniform([-6, -5, -8], [6, 5, 8], (25, 3))
    reach = 2.5
    flat, world = c.band(pts, reach)
    assert len(np.unique(flat)) == len(flat)
    allw = c.origin + np.stack(np.unravel_index(np.arange(np.prod(c.shape)), c.shape), 1)[:, ::-1] * c.spacing[::-1]
    d, _ = cKDTree(pts).query(allw)
    need = np.flatnonzero(d <= reach)
    assert np.isin(need, flat).all()
    np.testing.assert_allclose(world, allw[flat])


def test_segment_distance() -> None:
    x, y, z = np.array([0.0, 5.0, 12.0]), np.array([3.0, 0.0, 0.0]), np.array([0.0, 4.0, 0.0])
    d, t = segment_distance(x, y, z, (0, 0, 0), (10, 0, 0))
    np.testing.assert_allclose(d, [3.0, 4.0, 2.0])
    np.testing.assert_allclose(t, [0.0, 0.5, 1.0])


def test_upsample_is_exact_on_linear_ramps_and_aligned() -> None:
    k, j, i = np.meshgrid(np.arange(6), np.arange(5), np.arange(4), indexing="ij")
    coarse = (3 * k + 2 * j - i).astype(np.float32)
    fine = upsample(coarse, (2, 2, 2), (11, 9, 7), order=1)
    kk, jj, ii = np.meshgrid(np.arange(11) / 2, np.arange(9) / 2, np.arange(7) / 2, indexing="ij")
    np.testing.assert_allclose(fine, 3 * kk + 2 * jj - ii, atol=1e-5)
    near = upsample(coarse, (2, 2, 2), (11, 9, 7), order=0)
    np.testing.assert_array_equal(near[::2, ::2, ::2], coarse)

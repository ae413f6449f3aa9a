"""Attention channel values on known lines; the image channel is never touched."""

from __future__ import annotations

import numpy as np
import pytest

from coroseg.io.centerline import CenterlineGraph
from coroseg.io.volume import Volume
from coroseg.prior import add_attention, attention_channel, attention_from_points, stack_attention


def _line(n=40, k=5, j=6):
    """Points every 0.25 voxel along i at voxel centres (k, j)."""
    i = np.arange(0, n - 1 + 1e-9, 0.25)
    return np.c_[np.full(len(i), k), np.full(len(i), j), i]


def test_gaussian_peak_one_on_line_and_exact_falloff():
    sp = (2.0, 0.5, 0.5)
    att = attention_from_points(_line(), (10, 12, 40), sp, dilation_mm=1.0, mode="gaussian")
    assert att.dtype == np.float32 and att.shape == (10, 12, 40)
    np.testing.assert_array_equal(att[5, 6, :], 1.0)
    # 2 voxels off in j = 1 mm = one sigma: exp(-1/2)
    assert att[5, 8, 20] == pytest.approx(np.exp(-0.5), rel=1e-6)
    # 1 slice off in k = 2 mm = two sigma: exp(-2)
    assert att[6, 6, 20] == pytest.approx(np.exp(-2.0), rel=1e-6)
    # 3 sigma is the last value kept; beyond it exactly 0
    assert att[5, 0, 20] == pytest.approx(np.exp(-4.5), rel=1e-6)
    assert att[7, 6, 20] == 0.0 and att[0].max() == 0.0
    assert att.min() >= 0.0 and att.max() == 1.0


def test_binary_dilation_is_anisotropy_aware():
    sp = (2.0, 0.5, 0.5)
    att = attention_from_points(_line(), (10, 12, 40), sp, dilation_mm=1.0, mode="binary")
    # within 1 mm: j in 4..8 on slice 5 only (the next slice is 2 mm away)
    assert set(np.unique(att)) == {0.0, 1.0}
    np.testing.assert_array_equal(np.flatnonzero(att[:, :, 20].any(axis=1)), [5])
    np.testing.assert_array_equal(np.flatnonzero(att[5, :, 20]), [4, 5, 6, 7, 8])
    assert att.sum() == 5 * 40
    # a thin dilation still marks the voxels holding the line
    thin = attention_from_points(_line() + [0, 0.4, 0], (10, 12, 40), sp, dilation_mm=0.1, mode="binary")
    assert thin[5, 6].all() and thin.sum() == 40


def test_tube_mode_uses_radii():
    pts = _line()
    att = attention_from_points(pts, (10, 12, 40), (1.0, 1.0, 1.0), dilation_mm=0.0, mode="tube",
                                radii=np.full(len(pts), 2.0))
    # disc of radius 2 in the (k, j) plane: 13 voxels per column
    assert att[:, :, 20].sum() == 13
    with pytest.raises(ValueError, match="needs radii"):
        attention_from_points(pts, (10, 12, 40), (1, 1, 1), mode="tube")


def test_attention_channel_from_graph_matches_points_in_world():
    ref = Volume(np.zeros((10, 12, 40), np.float32), (2.0, 0.5, 0.5), (-30.0, 12.0, 100.0),
                 np.diag([-1.0, 1.0, 1.0]))  # flipped x axis: geometry must be honoured
    idx = np.array([[5, 6, 0], [5, 6, 39]], float)
    g = CenterlineGraph.from_points(ref.index_to_world(idx), np.ones(2), [(0, 1)], ostia=[0])
    att = attention_channel(g, ref, dilation_mm=1.0, mode="gaussian")
    np.testing.assert_allclose(att, attention_from_points(_line(), ref.shape, ref.spacing, dilation_mm=1.0), atol=1e-6)
    assert attention_channel(CenterlineGraph(), ref).sum() == 0


def test_add_attention_keeps_image_channel_untouched():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(4, 5, 6)).astype(np.float32)
    before = img.copy()
    att = np.zeros((4, 5, 6), np.float32)
    att[2, 2, 2] = 1.0
    x = add_attention(img, att, weight=0.5)
    assert x.shape == (2, 4, 5, 6)
    np.testing.assert_array_equal(x[0], before)
    np.testing.assert_array_equal(img, before)  # input not modified
    np.testing.assert_array_equal(x[1], before + 0.5 * att)
    y = stack_attention(img, att)
    np.testing.assert_array_equal(y[0], before)
    np.testing.assert_array_equal(y[1], att)
    with pytest.raises(ValueError, match="does not match attention shape"):
        add_attention(img, att[:2], weight=1.0)


def test_tube_mode_is_the_union_of_every_points_tube():
    """A thin branch leaving a thick vessel does not notch the thick lumen (brute-force answer)."""
    parent = np.c_[np.full(31, 10.0), np.full(31, 10.0), np.arange(5.0, 36.0)]
    branch = np.c_[np.full(15, 10.0), np.arange(10.0, 25.0), np.full(15, 20.0)]
    pts = np.concatenate([parent, branch])
    radii = np.concatenate([np.full(len(parent), 3.0), np.full(len(branch), 0.5)])
    att = attention_from_points(pts, (20, 28, 40), (1.0, 1.0, 1.0), dilation_mm=0.0, mode="tube", radii=radii)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in (20, 28, 40)], indexing="ij"), -1).reshape(-1, 3)
    dist = np.linalg.norm(grid[:, None, :] - pts[None], axis=2)
    expected = (dist <= radii[None]).any(1).reshape(20, 28, 40)
    np.testing.assert_array_equal(att > 0, expected)
    assert att[10, 12, 21] == 1.0  # 2 mm from the thick axis, nearer the thin one

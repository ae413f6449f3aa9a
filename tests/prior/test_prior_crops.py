"""Crop centres: 100 % coverage, known counts, the merge rule; the grid; patch extraction."""

from __future__ import annotations

import numpy as np
import pytest

from coroseg.prior import (
    centres_from_centerline,
    covered,
    crop_centres,
    crop_centres_2d,
    crop_slices,
    extract_patch,
    grid_tiles,
    paste_patch,
)


def _random_tree(rng: np.random.Generator, n_walks: int = 4, steps: int = 150) -> np.ndarray:
    """Random walks branching from a common root: centerline-like points in a 100^3 box."""
    pts = []
    for _ in range(n_walks):
        p = np.array([50.0, 50.0, 50.0])
        d = rng.normal(size=3)
        for _ in range(steps):
            d = d / np.linalg.norm(d) + 0.3 * rng.normal(size=3)
            p = np.clip(p + 0.7 * d / np.linalg.norm(d), 0, 99)
            pts.append(p.copy())
    return np.array(pts)


def test_line_of_100_points_needs_ceil_100_over_32_crops():
    line = np.c_[np.zeros(100), np.zeros(100), np.arange(100.0)]
    for method in ("kmeans", "dbscan"):
        c = crop_centres(line, size=(32, 32, 32), method=method)
        assert len(c) == 4, method
        assert covered(line, c, (32, 32, 32)).all()


def test_three_separate_clusters_give_three_crops():
    rng = np.random.default_rng(1)
    centres = np.array([[10, 10, 10], [10, 60, 10], [60, 60, 60]])
    pts = np.concatenate([c + rng.integers(-5, 6, size=(30, 3)) for c in centres])
    for method in ("kmeans", "dbscan"):
        c = crop_centres(pts, size=(16, 16, 16), method=method)
        assert len(c) == 3, method
        assert covered(pts, c, (16, 16, 16)).all()


@pytest.mark.parametrize("method", ["kmeans", "dbscan"])
@pytest.mark.parametrize("size", [(16, 16, 16), (32, 24, 40), (1, 24, 24)])
@pytest.mark.parametrize("seed", [0, 1])
def test_every_point_is_covered(method, size, seed):
    pts = _random_tree(np.random.default_rng(seed))
    c = crop_centres(pts, size=size, method=method, spacing=(0.625, 0.42, 0.42), seed=seed, shape=(100, 100, 100))
    assert covered(pts, c, size).all()
    lo = c - np.array(size) // 2
    # shifted inside the volume wherever the points allow it
    assert (lo >= 0).all() and (lo + np.array(size) <= 100).all()


def test_single_point_sits_at_the_centre_and_shape_shifts_inside():
    assert crop_centres(np.array([[5.2, 5, 4.8]]), size=(16, 16, 16)).tolist() == [[5, 5, 5]]
    c = crop_centres(np.array([[0, 0, 0]]), size=(16, 16, 16), shape=(50, 50, 50))
    assert c.tolist() == [[8, 8, 8]]  # start 0: whole crop inside, point still covered


def test_dbscan_merge_rule():
    pts = np.array([[0, 0, 0], [0, 0, 10]])  # two DBSCAN clusters (eps 2 mm), 10 mm apart
    kw = dict(method="dbscan", eps_mm=2.0)
    assert len(crop_centres(pts, size=(16, 16, 16), merge_radius=11.0, **kw)) == 1  # fused
    assert len(crop_centres(pts, size=(16, 16, 16), merge_radius=9.0, **kw)) == 2  # too far
    assert len(crop_centres(pts, size=(8, 8, 8), merge_radius=11.0, **kw)) == 2  # would not fit
    # merge_radius is in mm: with 0.5 mm voxels the two are 5 mm apart
    assert len(crop_centres(pts, size=(16, 16, 16), spacing=(0.5, 0.5, 0.5), merge_radius=6.0, **kw)) == 1


def test_kmeans_fuses_any_pair_that_fits_and_is_deterministic():
    pts = np.array([[0, 0, 0], [0, 0, 10]])
    assert len(crop_centres(pts, size=(16, 16, 16), n_clusters=2)) == 1
    tree = _random_tree(np.random.default_rng(3))
    a = crop_centres(tree, size=(24, 24, 24), seed=5)
    b = crop_centres(tree, size=(24, 24, 24), seed=5)
    np.testing.assert_array_equal(a, b)


def test_redundant_crops_are_dropped():
    # a point cloud filling exactly one crop: KMeans asked for 5 clusters still gives 1 crop
    pts = np.stack(np.meshgrid(*[np.arange(0, 16, 3)] * 3, indexing="ij"), -1).reshape(-1, 3)
    assert len(crop_centres(pts, size=(16, 16, 16), n_clusters=5)) == 1


def test_crop_centres_2d_cover_each_point_in_its_own_slice():
    pts = np.array([[0, 5, 5], [0, 5, 100], [1, 50, 50], [3, 5, 5], [3, 6, 6]], float)
    c = crop_centres_2d(pts, size_2d=(32, 32))
    assert sorted(c[:, 0].tolist()) == [0, 0, 1, 3]
    assert covered(pts, c, (1, 32, 32)).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="method must be one of"):
        crop_centres(np.zeros((2, 3)), size=(8, 8, 8), method="mean-shift")
    with pytest.raises(ValueError, match=r"points must have shape \(N, 3\)"):
        crop_centres(np.zeros((2, 2)), size=(8, 8, 8))
    with pytest.raises(ValueError, match="size must be 3 positive ints"):
        crop_centres(np.zeros((2, 3)), size=(8, 8))
    assert crop_centres(np.zeros((0, 3)), size=(8, 8, 8)).shape == (0, 3)


# ---- grid ----------------------------------------------------------------------------------
def test_grid_tile_counts():
    assert len(grid_tiles((10, 10, 10), (5, 5, 5))) == 8
    assert grid_tiles((100, 100, 100), (64, 64, 64))[:, 2].tolist() == [32, 68] * 4  # last clamped
    assert len(grid_tiles((200, 512, 512), (64, 64, 64))) == 4 * 8 * 8
    assert len(grid_tiles((200, 512, 512), (128, 128, 128))) == 2 * 4 * 4
    assert len(grid_tiles((5, 128, 128), (1, 64, 64))) == 5 * 2 * 2  # 2D: every slice
    assert len(grid_tiles((1, 128, 128), (1, 64, 64), overlap=0.5)) == 3 * 3  # stride 32
    assert grid_tiles((3, 3, 3), (8, 8, 8)).tolist() == [[4, 4, 4]]  # bigger than the volume


def test_grid_mask_keeps_tiles_with_vessel():
    mask = np.zeros((10, 10, 10), bool)
    mask[4, 4, 4] = True  # inside tile starting at (0, 0, 0) and, with overlap 0.5, more
    assert grid_tiles((10, 10, 10), (5, 5, 5), mask=mask).tolist() == [[2, 2, 2]]
    # overlap 0.5: stride round(2.5) = 2, starts 0, 2, 4, 5; index 4 is in 3 of them per axis
    assert len(grid_tiles((10, 10, 10), (5, 5, 5), overlap=0.5, mask=mask)) == 27
    rng = np.random.default_rng(0)
    m = rng.random((30, 40, 50)) > 0.999
    tiles = grid_tiles(m.shape, (8, 16, 16), overlap=0.25)
    kept = grid_tiles(m.shape, (8, 16, 16), overlap=0.25, mask=m)
    brute = [c for c in tiles if extract_patch(m, c, (8, 16, 16)).any()]
    np.testing.assert_array_equal(kept, np.array(brute))


def test_extract_patch_exact_with_padding_and_channels():
    a = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    p = extract_patch(a, (0, 0, 0), (3, 3, 3), pad_value=-1)
    assert p[1:, 1:, 1:].tolist() == a[:2, :2, :2].tolist()
    assert (p[0] == -1).all() and (p[:, 0] == -1).all() and (p[:, :, 0] == -1).all()
    two = np.stack([a, a + 1])
    q = extract_patch(two, (2, 2, 3), (2, 3, 4))
    np.testing.assert_array_equal(q[1], a[1:3, 1:4, 1:5] + 1)
    src, dst = crop_slices((2, 2, 3), (2, 3, 4), a.shape)
    assert src == (slice(1, 3), slice(1, 4), slice(1, 5)) and dst == (slice(0, 2), slice(0, 3), slice(0, 4))
    out = np.zeros_like(a)
    paste_patch(out, extract_patch(a, (1, 1, 1), (4, 4, 4)), (1, 1, 1))
    np.testing.assert_array_equal(out[:3, :3, :3], a[:3, :3, :3])
    assert out[3:].sum() == 0
    with pytest.raises(ValueError, match="lies outside shape"):
        extract_patch(a, (50, 50, 50), (3, 3, 3))


def test_radii_extend_coverage_to_the_vessel_wall():
    p = np.array([[10.0, 20.0, 20.0]])
    c2 = crop_centres_2d(p, size_2d=(16, 16), radii=np.array([2.0]), spacing=(1.0, 0.5, 0.5))
    assert sorted(c2[:, 0].tolist()) == [8, 9, 10, 11, 12]  # the cross-section reaches 2 slices each way
    wall = np.array([[10, 16, 20], [10, 24, 20], [10, 20, 16], [10, 20, 24]])  # +-2 mm in plane
    assert covered(wall, c2, (1, 16, 16)).all()
    assert len(crop_centres_2d(p, size_2d=(8, 8), radii=np.array([2.0]), spacing=(1.0, 0.5, 0.5))) == 10  # 9 > 8
    c3 = crop_centres(p, size=(6, 6, 6), radii=np.array([2.5]))
    ends = p + np.array([[2.5, 0, 0], [-2.5, 0, 0], [0, 2.5, 0], [0, -2.5, 0], [0, 0, 2.5], [0, 0, -2.5]])
    assert covered(ends, c3, (6, 6, 6)).all()
    with pytest.raises(ValueError, match=r"radii must have shape \(1,\)"):
        crop_centres(p, size=(6, 6, 6), radii=np.ones(3))


def test_centres_from_centerline_cover_the_graph_on_the_image_grid():
    from coroseg.io.centerline import CenterlineGraph
    from coroseg.io.volume import Volume

    ref = Volume(np.zeros((20, 40, 80), np.float32), (1.0, 0.5, 0.5), (5.0, -3.0, 7.0))
    a, b = ref.index_to_world(np.array([[10, 20, 5], [10, 20, 75]], float))
    g = CenterlineGraph.from_points(np.stack([a, b]), np.array([1.0, 1.0]), [(0, 1)], ostia=[0])
    c3 = centres_from_centerline(g, ref, size=(8, 16, 16))
    pts = ref.world_to_index(g.dense_points(0.25)[0])
    assert covered(pts, c3, (8, 16, 16)).all() and len(c3) == 5  # 71 + 2 x 2 wall voxels in 16s
    c2 = centres_from_centerline(g, ref, size=(1, 16, 16))
    assert sorted(set(c2[:, 0].tolist())) == [9, 10, 11]  # radius 1 mm = 1 slice each way
    assert centres_from_centerline(CenterlineGraph(), ref, size=(8, 8, 8)).shape == (0, 3)

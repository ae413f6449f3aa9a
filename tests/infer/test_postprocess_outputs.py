"""Post-processing on known arrays; STL mesh and output naming with exact answers."""

from __future__ import annotations

import numpy as np
import pytest

from coroseg.infer.outputs import mask_stats, mesh_from_mask, output_extension, read_stl, write_stl
from coroseg.infer.postprocess import (
    PostprocessOptions,
    fill_holes,
    grow_into,
    keep_main_components,
    postprocess,
    threshold,
)
from coroseg.io.centerline import CenterlineGraph
from coroseg.io.volume import Volume


def blobs() -> np.ndarray:
    m = np.zeros((20, 20, 20), bool)
    m[1:9, 1:9, 1:9] = True        # 512 voxels: tree 1
    m[12:18, 12:18, 12:18] = True  # 216 voxels: tree 2
    m[1:3, 15:17, 15:16] = True    # 4 voxels: island
    m[15, 2, 2] = True             # 1 voxel: island
    return m


def test_threshold_inclusive():
    np.testing.assert_array_equal(threshold(np.array([0.2, 0.5, 0.7]), 0.5), [False, True, True])


def test_keep_main_components_drops_islands():
    m = blobs()
    out = keep_main_components(m, n_trees=2, min_tree_mm3=5.0, keep_fraction=0.1)
    assert out.sum() == 512 + 216
    assert not out[15, 2, 2] and not out[1, 15, 15]
    # one tree only: the 216-voxel blob survives through keep_fraction (216 >= 0.1 * 512)
    assert keep_main_components(m, n_trees=1, keep_fraction=0.1).sum() == 512 + 216
    assert keep_main_components(m, n_trees=1, keep_fraction=0.5).sum() == 512
    # the volume threshold is in mm^3: 216 voxels of 0.5^3 mm = 27 mm^3 < 30 -> dropped
    out = keep_main_components(m, spacing=(0.5, 0.5, 0.5), n_trees=2, min_tree_mm3=30.0, keep_fraction=0.9)
    assert out.sum() == 512
    assert not keep_main_components(np.zeros((3, 3, 3), bool)).any()


@pytest.mark.parametrize("dense", [False, True])
def test_keep_within_reach_follows_a_chain_of_pieces(dense: bool, monkeypatch) -> None:
    import importlib

    pp = importlib.import_module("coroseg.infer.postprocess")
    if dense:  # the dense (cc3d) labelling path must give the same answer
        monkeypatch.setattr(pp, "SPARSE_FRACTION", 0.0)
    m = np.zeros((12, 12, 60), bool)
    m[5:7, 5:7, 0:20] = True     # the tree: 80 voxels
    m[5:7, 5:7, 23:26] = True    # 3 voxels past its end: 12 voxels
    m[5:7, 5:7, 29:31] = True    # 3 voxels past that piece: 8 voxels (kept through the chain)
    m[5:7, 5:7, 45:47] = True    # 14 voxels further: never within reach
    m[3, 3, 27] = True           # 1 voxel: within reach of a kept piece, but too small
    kw = dict(n_trees=1, keep_fraction=0.5, min_tree_mm3=1.0)
    assert keep_main_components(m, **kw).sum() == 80
    out = keep_main_components(m, reach_mm=4.5, min_piece_mm3=2.0, **kw)
    assert out.sum() == 80 + 12 + 8
    assert not out[5:7, 5:7, 45:47].any() and not out[3, 3, 27]
    # far from the tree, even a big component goes (the size rules would have kept it)
    far = m.copy()
    far[0:3, 0:3, 50:58] = True  # 72 voxels: 90 % of the tree, 20+ voxels away
    assert keep_main_components(far, **kw)[0:3, 0:3, 50:58].all()
    assert not keep_main_components(far, reach_mm=4.5, **kw)[0:3, 0:3, 50:58].any()
    # reach is in mm: at 2 mm voxels along x the same gaps are twice as far
    assert keep_main_components(m, spacing=(1, 1, 2), reach_mm=4.5, min_piece_mm3=2.0, **kw).sum() == 80


def test_grow_into_keeps_only_regions_that_touch_the_seed():
    prob = np.zeros((10, 10, 30), np.float32)
    prob[4:6, 4:6, 0:10] = 0.9      # the tree the size rule kept
    prob[4:6, 4:6, 10:14] = 0.05    # a faint bridge ...
    prob[4:6, 4:6, 14:20] = 0.8     # ... to a branch piece the size rule dropped
    prob[0:2, 0:2, 24:30] = 0.9     # a confident island with no bridge (a vein)
    seed = keep_main_components(prob >= 0.5, n_trees=1, keep_fraction=0.9)
    assert seed.sum() == 40
    grown = grow_into(seed, prob >= 0.02)
    assert grown.sum() == 40 + 16 + 24
    assert not grown[0:2, 0:2, 24:30].any()
    assert grow_into(seed, prob >= 0.1).sum() == 40  # the bridge is below this level
    assert not grow_into(np.zeros_like(seed), prob >= 0.02).any()


def test_fill_holes_fills_cavity_only():
    m = np.zeros((9, 9, 9), bool)
    m[1:8, 1:8, 1:8] = True
    m[3:6, 3:6, 3:6] = False  # enclosed 27-voxel cavity
    m[4, 4, 0:2] = False      # a channel to the border does not make the cavity a hole...
    out = fill_holes(m)
    assert out.sum() == 7 ** 3 - 1  # ...except it does not reach the cavity: only the 1-voxel notch stays open
    m2 = m.copy()
    m2[4, 4, 0:4] = False  # now the cavity opens to the border: not a hole
    assert fill_holes(m2).sum() == m2.sum()


def test_fill_holes_matches_scipy(rng):
    from scipy import ndimage

    m = rng.random((20, 24, 22)) < 0.55
    np.testing.assert_array_equal(fill_holes(m), ndimage.binary_fill_holes(m))


@pytest.mark.parametrize("connectivity", [6, 18, 26])
@pytest.mark.parametrize("density", [0.003, 0.3])
def test_label_components_match_cc3d(rng, connectivity, density):
    """The sparse path (few voxels) and the dense path give cc3d's labels exactly, in raster order."""
    import cc3d

    from coroseg.infer.postprocess import label_components

    m = rng.random((30, 33, 31)) < density
    m[5:9, 5, 5:20] = True  # a longer component too
    labels, sizes = label_components(m, connectivity)
    ref, n = cc3d.connected_components(m.astype(np.uint8), connectivity=connectivity, return_N=True)
    np.testing.assert_array_equal(labels, ref)
    np.testing.assert_array_equal(sizes, np.bincount(ref.ravel(), minlength=n + 1)[1:])


def test_fill_holes_in_a_sparse_volume_matches_scipy(rng):
    from scipy import ndimage

    m = np.zeros((40, 44, 42), bool)
    m[10:22, 12:30, 8:20] = rng.random((12, 18, 12)) < 0.6  # holes inside a box away from the border
    m[0:3, 0:4, 40:42] = True  # touching the volume border
    np.testing.assert_array_equal(fill_holes(m), ndimage.binary_fill_holes(m))


def test_postprocess_switches():
    prob = blobs().astype(np.float32) * 0.9
    prob[4, 4, 4] = 0.1  # a hole inside tree 1
    full = postprocess(prob, PostprocessOptions(reach_mm=None))  # the size rules
    assert full.dtype == np.uint8 and full.sum() == 512 + 216
    # the default spatial rule: everything within 60 mm of the largest tree and >= 2 mm^3
    assert postprocess(prob).sum() == 512 + 216 + 4
    bare = postprocess(prob, PostprocessOptions.none())
    assert bare.sum() == 512 + 216 + 4 + 1 - 1
    no_fill = postprocess(prob, PostprocessOptions(fill_holes=False, reach_mm=None))
    assert no_fill.sum() == 512 + 216 - 1


def cube_volume(direction=np.eye(3), spacing=(1.0, 0.5, 2.0)) -> Volume:
    m = np.zeros((10, 12, 8), np.uint8)
    m[2:6, 3:9, 2:5] = 1  # 4 x 6 x 3 voxels
    return Volume(m, spacing, (10.0, -20.0, 5.0), direction, True)


def _signed_volume(tri: np.ndarray) -> float:
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)


@pytest.mark.parametrize("direction", [np.eye(3), np.diag([-1.0, -1.0, 1.0]), np.diag([1.0, 1.0, -1.0]),
                                       np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])])
def test_mesh_world_coordinates_and_outward(tmp_path, direction):
    vol = cube_volume(direction)
    verts, faces = mesh_from_mask(vol)
    # marching cubes at 0.5 puts the surface half a voxel outside the voxel centres
    lo_idx, hi_idx = np.array([1.5, 2.5, 1.5]), np.array([5.5, 8.5, 4.5])
    corners = vol.index_to_world(np.array([[a, b, c] for a in (lo_idx[0], hi_idx[0])
                                           for b in (lo_idx[1], hi_idx[1]) for c in (lo_idx[2], hi_idx[2])]))
    assert np.all(verts >= corners.min(0) - 1e-6) and np.all(verts <= corners.max(0) + 1e-6)
    path = write_stl(tmp_path / "m.stl", verts, faces)
    normals, tri = read_stl(path)
    assert len(tri) == len(faces)
    np.testing.assert_allclose(tri, verts[faces], atol=1e-4)
    # outward winding: positive enclosed volume; marching cubes chamfers the 12 edges and
    # 8 corners of the box, so the volume is below the box's 4*6*3 voxels * 1 mm^3 (spacing product 1)
    v = _signed_volume(tri)
    assert 0.75 * 72 < v < 72
    assert (tmp_path / "m.stl").read_bytes()[:17] == b"coroseg SPACE=LPS"


def test_mesh_empty(tmp_path):
    vol = cube_volume()
    vol.array[:] = 0
    verts, faces = mesh_from_mask(vol)
    assert verts.shape == (0, 3) and faces.shape == (0, 3)
    write_stl(tmp_path / "e.stl", verts, faces)
    assert (tmp_path / "e.stl").stat().st_size == 84


def test_output_extension(tmp_path):
    assert output_extension(tmp_path / "a.nii.gz") == ".nii.gz"
    assert output_extension(tmp_path / "a.NRRD") == ".nrrd"
    assert output_extension(tmp_path / "a.mhd") == ".mha"
    assert output_extension(tmp_path / "a.nhdr") == ".nrrd"
    assert output_extension(tmp_path) == ".nii.gz"  # DICOM folder


def test_mask_stats_known():
    vol = cube_volume()
    g = CenterlineGraph.from_polylines([np.array([[0.0, 0, 0], [3, 4, 0], [3, 4, 12]])])
    s = mask_stats(vol, g)
    assert s["vessel_volume_mm3"] == pytest.approx(72.0)
    assert s["tree_length_mm"] == pytest.approx(17.0)
    assert s["n_branches"] == 1 and s["n_ostia"] == 1 and s["n_endpoints"] == 1
    assert mask_stats(vol, None)["tree_length_mm"] is None


def test_postprocess_default_drops_what_lies_far_from_the_tree():
    m = np.zeros((20, 20, 200), np.float32)
    m[8:11, 8:11, 10:60] = 1.0    # the tree (450 mm^3)
    m[8:11, 8:11, 100:110] = 1.0  # 40 mm beyond its end: the other tree's start, kept
    m[8:11, 8:11, 180:195] = 1.0  # 70 mm beyond that: a vessel in the abdomen, dropped
    out = postprocess(m)
    assert out[9, 9, 30] and out[9, 9, 105] and not out[9, 9, 190]
    size_rules = postprocess(m, PostprocessOptions(reach_mm=None))
    assert size_rules[9, 9, 190]  # the size rules alone keep it (one of the two largest)


"""Metrics against hand-computed answers and against MONAI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from coroseg.eval import metrics as M


def line(n=32, z=8, y=8, x0=4, length=20):
    a = np.zeros((n, n, n), bool)
    a[z, y, x0:x0 + length] = True
    return a


def ball(shape, centre, radius_mm, spacing=(1, 1, 1)):
    g = np.indices(shape, dtype=float)
    d2 = sum(((g[i] - centre[i]) * spacing[i]) ** 2 for i in range(3))
    return d2 <= radius_mm ** 2


def blobs(seed, shape=(24, 28, 30), thresh=0.6):
    rng = np.random.default_rng(seed)
    f = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
    return f > thresh * f.std()


# ---- overlap -------------------------------------------------------------------------------
def test_overlap_counts_on_shifted_cubes():
    a = np.zeros((10, 10, 10), np.uint8)
    b = np.zeros_like(a)
    a[2:6, 2:6, 2:6] = 1          # 64 voxels
    b[2:6, 2:6, 4:8] = 1          # shifted 2 along x: overlap 4*4*2 = 32
    assert M.confusion_counts(a, b) == (32, 32, 32, 1000 - 96)
    assert M.dice(a, b) == pytest.approx(0.5)
    assert M.precision(a, b) == pytest.approx(0.5)
    assert M.recall(a, b) == pytest.approx(0.5)
    assert M.voxel_accuracy(a, b) == pytest.approx((32 + 904) / 1000)


def test_prior_accuracy_is_recall_not_voxel_accuracy():
    ref = np.zeros((20, 20, 20), bool)
    ref[5:10, 5:10, 5:10] = True                # 125 voxels
    pred = np.zeros_like(ref)                   # misses everything
    assert M.recall(pred, ref) == 0.0
    assert M.voxel_accuracy(pred, ref) == pytest.approx(1 - 125 / 8000)


def test_inputs_not_modified_and_non_contiguous_ok():
    a = blobs(1)
    b = blobs(2)
    a0, b0 = a.copy(), b.copy()
    full = M.all_metrics(a, b, spacing=(1, 1, 1))
    view = M.all_metrics(np.asfortranarray(a)[:, :, :], b[:, ::1, :], spacing=(1, 1, 1))
    assert full == view
    assert (a == a0).all() and (b == b0).all()


def test_rejects_non_binary_and_shape_mismatch():
    with pytest.raises(ValueError, match=r"pred must be binary.*\{0, 1, 2\}"):
        M.dice(np.array([[[0, 1, 2]]]), np.zeros((1, 1, 3), bool))
    with pytest.raises(ValueError, match=r"pred is \(1, 1, 3\), ref is \(1, 1, 4\)"):
        M.dice(np.zeros((1, 1, 3)), np.zeros((1, 1, 4)))
    with pytest.raises(ValueError, match="spacing must be 3 positive"):
        M.hd95(np.ones((2, 2, 2)), np.ones((2, 2, 2)), spacing=(1, 0, 1))


# ---- distances: exact answers ---------------------------------------------------------------
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.5, 0.4, 0.7)])
def test_parallel_lines_every_distance_is_the_shift(spacing):
    a = line(z=8)
    b = line(z=11)                 # shifted 3 slices: every point is 3 * sz away
    d = 3 * spacing[0]
    assert M.hd95(a, b, spacing=spacing) == pytest.approx(d)
    assert M.assd(a, b, spacing=spacing) == pytest.approx(d)
    assert M.hd95_asoca(a, b) == pytest.approx(3.0)   # voxels, spacing ignored


def test_line_prefix_percentiles_by_hand():
    # pred: x in [4, 14), ref: x in [4, 24). pred -> ref: 10 zeros. ref -> pred: 10 zeros and 1..10.
    # P95 (linear) of 20 sorted values: position 0.95 * 19 = 18.05 -> 9 + 0.05 * 1 = 9.05 voxels.
    sx = 0.5
    a = line(length=10)
    b = line(length=20)
    assert M.hd95(a, b, spacing=(1, 1, sx)) == pytest.approx(9.05 * sx)
    assert M.hd95_asoca(a, b) == pytest.approx(9.05)
    assert M.assd(a, b, spacing=(1, 1, sx)) == pytest.approx(55 / 30 * sx)   # mean over 30 values
    d_ab, d_ba = M.surface_distances(a, b, spacing=(1, 1, sx))
    assert np.sort(d_ab).tolist() == [0.0] * 10
    assert np.sort(d_ba).tolist() == pytest.approx([0.0] * 10 + [k * sx for k in range(1, 11)])


def test_cube_surface_excludes_interior_but_asoca_counts_it():
    # a solid 5^3 cube vs itself shifted by 4 along x: surfaces are the faces only
    a = np.zeros((12, 12, 16), bool)
    a[3:8, 3:8, 2:7] = True
    b = np.roll(a, 4, axis=2)
    hd = M.hd95(a, b, spacing=(1, 1, 1))
    assert 0 < hd <= 4.0 + 1e-9          # no surface point is further than the shift
    # ASOCA HD uses all voxels: a's voxels at x = 2..5 are 4..1 from b (x 6..10), x = 6 is 0
    d = np.array([4] * 25 + [3] * 25 + [2] * 25 + [1] * 25 + [0] * 25, float)
    assert M.hd95_asoca(a, b) == pytest.approx(np.percentile(d, 95))


def test_concentric_balls_distance_is_radius_difference():
    spacing = (2.0, 0.5, 0.5)
    shape = (24, 96, 96)
    c = (11.5, 47.5, 47.5)
    a = ball(shape, c, 10.0, spacing)
    b = ball(shape, c, 14.0, spacing)
    # discretised spheres: within one (largest) voxel of the exact 4 mm
    assert abs(M.hd95(a, b, spacing=spacing) - 4.0) <= 2.0
    assert abs(M.assd(a, b, spacing=spacing) - 4.0) <= 1.0


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 0.6, 0.45)])
def test_kdtree_and_edt_surface_distances_agree(spacing):
    a, b = blobs(7), blobs(8)
    k1, k2 = M.surface_distances(a, b, spacing=spacing)
    e1, e2 = M.surface_distances(a, b, spacing=spacing, method="edt")
    np.testing.assert_allclose(k1, e1, atol=1e-12)
    np.testing.assert_allclose(k2, e2, atol=1e-12)
    with pytest.raises(ValueError, match="method must be 'kdtree' or 'edt', not 'x'"):
        M.surface_distances(a, b, spacing=spacing, method="x")


def test_hd95_asoca_matches_brute_force():
    a, b = blobs(3, (10, 12, 14)), blobs(4, (10, 12, 14))
    pa, pb = np.argwhere(a).astype(float), np.argwhere(b).astype(float)
    dist = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1))
    want = max(np.percentile(dist.min(1), 95), np.percentile(dist.min(0), 95))
    assert M.hd95_asoca(a, b) == pytest.approx(want)


# ---- against MONAI --------------------------------------------------------------------------
@pytest.mark.parametrize("seed,spacing", [(0, (1.0, 1.0, 1.0)), (1, (2.0, 0.6, 0.45)), (2, (0.8, 0.8, 1.6))])
def test_against_monai(seed, spacing):
    from monai.metrics import DiceMetric, compute_average_surface_distance, compute_hausdorff_distance

    a, b = blobs(10 + seed), blobs(20 + seed)
    ta = torch.from_numpy(a)[None, None].float()
    tb = torch.from_numpy(b)[None, None].float()
    dm = DiceMetric(include_background=True, reduction="none")
    assert M.dice(a, b) == pytest.approx(float(dm(ta, tb)[0, 0]), rel=1e-6)
    hd = float(compute_hausdorff_distance(ta, tb, include_background=True, percentile=95, spacing=list(spacing))[0, 0])
    assert M.hd95(a, b, spacing=spacing) == pytest.approx(hd, rel=1e-4)
    asd = float(compute_average_surface_distance(ta, tb, include_background=True, symmetric=True,
                                                 spacing=list(spacing))[0, 0])
    assert M.assd(a, b, spacing=spacing) == pytest.approx(asd, rel=1e-4)


# ---- topology -------------------------------------------------------------------------------
def test_cldice_line_prefix():
    a = line(length=20)
    b = line(length=10)
    # S(a) = a (20 voxels), 10 of them in b -> Tprec 0.5; S(b) = b inside a -> Tsens 1
    assert M.cldice(a, b) == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert M.cldice(a, a) == pytest.approx(1.0)
    assert M.cldice(a, line(z=20)) == 0.0


def test_cldice_thin_prediction_inside_thick_tube_is_perfect():
    ref = np.zeros((16, 16, 40), bool)
    ref[6:11, 6:11, 5:35] = True                # 5x5 square tube
    pred = np.zeros_like(ref)
    pred[8, 8, 3:37] = True                     # its axis, a bit longer
    # skeleton of the tube lies on the axis (inside pred); pred's skeleton = pred, 30 of 34 in ref
    assert M.cldice(pred, ref) == pytest.approx(2 * (30 / 34) / (30 / 34 + 1))


def test_betti0_components_26_connectivity():
    a = np.zeros((10, 10, 10), bool)
    a[1, 1, 1] = a[2, 2, 2] = True              # corner-touching: one component
    a[6:8, 6:8, 6:8] = True
    b = np.zeros_like(a)
    b[0:3, 0:3, 0:3] = True
    assert M.n_components(a) == 2
    assert M.betti0_error(a, b) == 1
    a[5, 5, 2] = True                          # isolated voxel: a third component
    assert M.betti0_error(a, b) == 2


# ---- empty masks ---------------------------------------------------------------------------
def test_both_empty():
    z = np.zeros((8, 8, 8), bool)
    m = M.all_metrics(z, z, spacing=(1, 1, 1))
    assert m == {"dice": 1.0, "precision": 1.0, "recall": 1.0, "voxel_accuracy": 1.0, "hd95_mm": 0.0,
                 "assd_mm": 0.0, "hd95_asoca_vox": 0.0, "cldice": 1.0, "betti0_error": 0,
                 "n_pred": 0, "n_ref": 0}


@pytest.mark.parametrize("empty", ["pred", "ref"])
def test_one_empty(empty):
    z = np.zeros((8, 8, 8), bool)
    c = z.copy()
    c[2:4, 2:4, 2:4] = True
    pred, ref = (z, c) if empty == "pred" else (c, z)
    m = M.all_metrics(pred, ref, spacing=(1, 1, 1))
    assert m["dice"] == 0.0 and m["cldice"] == 0.0
    assert m["precision"] == 0.0 and m["recall"] == 0.0
    assert m["voxel_accuracy"] == pytest.approx(1 - 8 / 512)
    assert math.isinf(m["hd95_mm"]) and math.isinf(m["assd_mm"]) and math.isinf(m["hd95_asoca_vox"])
    assert m["betti0_error"] == 1
    # the individual functions agree with all_metrics
    assert math.isinf(M.hd95(pred, ref, spacing=(1, 1, 1)))
    assert M.dice(pred, ref) == 0.0


def test_all_metrics_equals_individual_functions_with_crop():
    a, b = blobs(5, (30, 40, 36)), blobs(6, (30, 40, 36))
    sp = (1.2, 0.7, 0.5)
    m = M.all_metrics(a, b, spacing=sp)
    assert m["dice"] == M.dice(a, b)
    assert m["voxel_accuracy"] == M.voxel_accuracy(a, b)
    assert m["hd95_mm"] == pytest.approx(M.hd95(a, b, spacing=sp))
    assert m["assd_mm"] == pytest.approx(M.assd(a, b, spacing=sp))
    assert m["cldice"] == M.cldice(a, b)
    assert m["betti0_error"] == M.betti0_error(a, b)
    assert list(m)[:len(M.METRICS)] == list(M.METRICS)


# ---- real vessel shapes (skipped without ../shared/data) ---------------------------------------
SHARED = (__import__("pathlib").Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()


@pytest.mark.shared
@pytest.mark.skipif(not SHARED.exists(), reason="needs ../shared/data (ASOCA masks)")
def test_real_asoca_mask_against_monai():
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    from coroseg.io.volume import read_volume

    vol = read_volume(SHARED / "asoca-anatomy" / "Annotations" / "Normal_1.nrrd", is_label=True)
    ref = vol.array[40:140].astype(bool)           # a 100-slice slab keeps the test short
    pred = np.roll(ndimage.binary_dilation(ref), 2, axis=1)
    m = M.all_metrics(pred, ref, spacing=vol.spacing)
    ta, tb = torch.from_numpy(pred)[None, None], torch.from_numpy(ref)[None, None]
    sp = list(vol.spacing)
    assert m["hd95_mm"] == pytest.approx(float(compute_hausdorff_distance(
        ta, tb, include_background=True, percentile=95, spacing=sp)[0, 0]), rel=1e-4)
    assert m["assd_mm"] == pytest.approx(float(compute_average_surface_distance(
        ta, tb, include_background=True, symmetric=True, spacing=sp)[0, 0]), rel=1e-4)
    assert m["recall"] > 0.7 and m["cldice"] > m["dice"]

"""Classical baselines: exact threshold search and Frangi on a synthetic tube."""

from __future__ import annotations

import numpy as np
import pytest

from coroseg.eval import baselines as B
from coroseg.eval.metrics import dice


def hu_case():
    # 100 label voxels at 200..299 HU, 50 "bone" voxels at 400 HU, the rest 0 HU
    img = np.zeros((10, 10, 10), np.int16)
    lab = np.zeros_like(img, bool)
    flat_i, flat_l = img.reshape(-1), lab.reshape(-1)
    flat_i[:100] = np.arange(200, 300)
    flat_l[:100] = True
    flat_i[500:550] = 400
    return img, lab


def test_best_threshold_by_hand():
    img, lab = hu_case()
    # t in [200, 299]: TP = 300 - t, P = TP + 50, Dice = 2 TP / (TP + 150): best at t = 200
    t, d = B.best_threshold_segmentation(img, lab)
    assert t == 200.0
    assert d == pytest.approx(200 / 250)


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_dice_curve_matches_brute_force(dtype):
    rng = np.random.default_rng(0)
    lab = np.zeros((12, 16, 16), bool)
    lab[3:9, 4:10, 5:12] = True
    img = (rng.normal(0, 80, lab.shape) + 250 * lab).astype(dtype)
    t = B.threshold_grid([img], [lab])
    if dtype == np.int16:
        assert np.all(np.diff(t) == 1)
    d = B.dice_curve(img, lab, t)
    for k in range(0, len(t), max(1, len(t) // 40)):
        assert d[k] == pytest.approx(dice(img >= t[k], lab))
    tb, db = B.best_threshold_segmentation(img, lab)
    assert db == pytest.approx(max(dice(img >= x, lab) for x in t))
    assert dice(B.apply_threshold(img, tb), lab) == pytest.approx(db)


def test_fit_threshold_maximises_mean_dice():
    rng = np.random.default_rng(1)
    imgs, labs = [], []
    for shift in (150, 350):
        lab = np.zeros((10, 12, 12), bool)
        lab[2:7, 3:9, 3:9] = True
        imgs.append((rng.normal(0, 60, lab.shape) + shift * lab).astype(np.int16))
        labs.append(lab)
    t, mean_d = B.fit_threshold(imgs, labs)
    grid = B.threshold_grid(imgs, labs)
    brute = [np.mean([dice(im >= x, lb) for im, lb in zip(imgs, labs)]) for x in grid]
    assert mean_d == pytest.approx(max(brute))
    assert t == grid[int(np.argmax(brute))]
    with pytest.raises(ValueError, match="every label is empty"):
        B.fit_threshold([imgs[0]], [np.zeros_like(labs[0])])


def tube_phantom(spacing=(1.0, 0.5, 0.5), shape=(20, 40, 40)):
    rng = np.random.default_rng(2)
    g = np.indices(shape, dtype=float)
    z, y = g[0] * spacing[0], g[1] * spacing[1]
    tube = (z - 10.0) ** 2 + (y - 10.0) ** 2 <= 1.5 ** 2          # radius 1.5 mm along x
    blob = ((z - 10.0) ** 2 + (y - 14.0) ** 2 + (g[2] * spacing[2] - 12.0) ** 2) <= 3.0 ** 2
    img = (-50 + 400 * tube + 400 * blob + rng.normal(0, 20, shape)).astype(np.int16)
    return img, tube & ~blob, blob


def test_frangi_finds_tube_not_blob():
    img, tube, blob = tube_phantom()
    v, t, d = B.frangi_segmentation(img, spacing=(1.0, 0.5, 0.5), sigmas_mm=(0.5, 1.0, 1.5), label=tube,
                                    margin_mm=3.0)
    assert v.shape == img.shape and v.dtype == np.float32 and (v >= 0).all()
    assert np.median(v[tube]) > 4 * np.median(v[blob])          # tubes respond, blobs do not
    assert d == pytest.approx(dice(v >= t, tube))
    assert d > 0.6
    # a plain HU threshold cannot separate the blob from the tube
    assert d > B.best_threshold_segmentation(img, tube)[1]
    # the filter only ran inside the label box + 3 mm
    box = B.label_box(tube, spacing=(1.0, 0.5, 0.5), margin_mm=3.0)
    outside = np.ones(img.shape, bool)
    outside[box] = False
    assert outside.any() and not v[outside].any()


def test_frangi_without_label_and_roi():
    img, _, _ = tube_phantom()
    roi = (slice(4, 16), slice(0, 40), slice(0, 40))
    v, t, d = B.frangi_segmentation(img, spacing=(1.0, 0.5, 0.5), roi=roi, work_spacing=1.0)
    assert t is None and d is None
    assert v[:4].max() == 0 and v[4:16].max() > 0

"""infer.crops: crop stitching is exact where covered (an ``x + 1`` predictor), Gaussian weights, padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coroseg.infer.crops import CropAccumulator, crop_boxes, gaussian_weight, predict_crops


def plus_one(x: torch.Tensor) -> torch.Tensor:
    return x + 1


def test_gaussian_weight_peak_and_symmetry():
    w = gaussian_weight((9, 8, 1))
    assert w.shape == (9, 8, 1)
    assert w.max() == pytest.approx(1.0)
    assert w[4, 3, 0] == w[4, 4, 0] == pytest.approx(w.max())  # even side: two central maxima
    np.testing.assert_array_equal(w, w[::-1, ::-1])
    assert w.min() == pytest.approx(1e-3)  # floored rim


def test_crop_boxes_centre_and_clamp():
    starts = crop_boxes(np.array([[10, 10, 10], [1, 1, 30], [10.4, 9.6, 10]]), (20, 20, 32), (8, 8, 8))
    np.testing.assert_array_equal(starts, [[6, 6, 6], [0, 0, 24], [6, 6, 6]])
    # a volume smaller than the crop: start 0, rest padded
    np.testing.assert_array_equal(crop_boxes(np.array([[2, 2, 2]]), (4, 4, 4), (8, 8, 8)), [[0, 0, 0]])


@pytest.mark.parametrize("patch", [(8, 8, 8), (1, 8, 8)])
def test_predict_crops_exact_where_covered(patch):
    shape = (12, 14, 16)
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) / 100
    centres = np.array([[4, 4, 4], [6, 8, 9], [6, 9, 10], [11, 13, 15]])
    starts = crop_boxes(centres, shape, patch)
    acc = predict_crops(x, starts, plus_one, patch_size=patch, batch_size=3)
    cov = np.zeros(shape, bool)
    for s in starts:
        cov[s[0]:s[0] + patch[0], s[1]:s[1] + patch[1], s[2]:s[2] + patch[2]] = True
    np.testing.assert_array_equal(acc.covered, cov)
    p = acc.probability()
    np.testing.assert_allclose(p[cov], x[cov] + 1, rtol=1e-5)
    assert np.all(p[~cov] == 0)


def test_predict_crops_padding_and_accumulate():
    shape = (4, 4, 4)
    x = np.zeros(shape, np.float32)
    seen = []

    def pred(t):
        seen.append(t.clone())
        return t[:, :1]

    acc = predict_crops(x, np.array([[0, 0, 0]]), pred, patch_size=(6, 6, 6), cval=-5.0)
    assert seen[0].shape == (2, 1, 6, 6, 6)  # a lone crop runs as a pair (faster on CPU); one is used
    assert float(seen[0][0, 0, 5, 5, 5]) == -5.0 and float(seen[0][0, 0, 0, 0, 0]) == 0.0
    acc2 = predict_crops(x + 1, np.array([[0, 0, 0]]), lambda t: t[:, :1], patch_size=(4, 4, 4), accumulator=acc)
    assert acc2 is acc
    assert isinstance(acc, CropAccumulator)
    # two crops: values 0 (weights w1) and 1 (weights w2) blend to w2 / (w1 + w2), in (0, 1)
    p = acc.probability()
    assert np.all((p > 0) & (p < 1))

"""Sliding-window and crop stitching: exact with an ``x + 1`` predictor (MONAI's own test idea)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coroseg.infer.crops import CropAccumulator, crop_boxes, gaussian_weight, predict_crops
from coroseg.infer.stages import uncovered_points
from coroseg.infer.windows import sliding_window, vessel_predictor


def plus_one(x: torch.Tensor) -> torch.Tensor:
    return x + 1


@pytest.mark.parametrize("mode", ["gaussian", "constant"])
@pytest.mark.parametrize("shape,patch", [((20, 23, 17), (8, 8, 8)), ((5, 30, 9), (8, 16, 16))])
def test_sliding_window_3d_exact(mode, shape, patch):
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) / 100
    out = sliding_window(x, plus_one, patch_size=patch, overlap=0.5, batch_size=3, mode=mode)
    assert out.shape == shape
    np.testing.assert_allclose(out, x + 1, rtol=1e-5, atol=1e-5)


def test_sliding_window_2d_slices_exact_and_batched():
    shape = (7, 20, 25)
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) / 100
    seen = []

    def pred(t: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(t.shape))
        return t[:, :1] * 2 + t[:, 1:]

    chans = np.stack([x, np.ones_like(x)])
    out = sliding_window(chans, pred, patch_size=(1, 16, 16), overlap=0.25, batch_size=4)
    np.testing.assert_allclose(out, 2 * x + 1, rtol=1e-5, atol=1e-5)
    assert all(len(s) == 4 and s[1:] == (2, 16, 16) for s in seen)  # 2D windows, 2 channels
    assert max(s[0] for s in seen) == 4  # batched


def test_vessel_predictor_softmax():
    logits = torch.tensor([[[[[0.0]]], [[[np.log(3.0)]]]]])  # p(vessel) = 3 / 4
    p = vessel_predictor(lambda t: logits)(torch.zeros(1, 1, 1, 1, 1))
    assert p.shape == (1, 1, 1, 1, 1)
    assert p.item() == pytest.approx(0.75)


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


def test_uncovered_points_border_rule():
    starts = np.array([[0, 0, 0]])  # crop [0, 16)^3 in a (40, 16, 16) volume
    pts = np.array([[8, 8, 8],    # centre: covered
                    [15, 8, 8],   # at the inner +k face (not a volume face): vessel may leave -> uncovered
                    [8, 15, 8],   # at the +j face which is also the volume face: covered
                    [30, 8, 8]])  # outside: uncovered
    out = uncovered_points(pts, starts, (40, 16, 16), (16, 16, 16))
    np.testing.assert_array_equal(out, [[15, 8, 8], [30, 8, 8]])


def test_border_voxels_only_at_inner_crop_faces():
    from coroseg.infer.stages import border_voxels

    covered = np.zeros((10, 10, 30), bool)
    covered[:, :, :16] = True  # one crop [0, 16) along i; volume faces elsewhere
    mask = np.zeros_like(covered)
    mask[5, 5, 2:16] = True  # a vessel running to the crop's +i face (i = 15)
    mask[0, 0, 5] = True  # touching the volume's faces only: not a border
    out = border_voxels(mask, covered, (2, 2, 2))
    np.testing.assert_array_equal(out, [[5, 5, 14], [5, 5, 15]])


@pytest.mark.parametrize("combine", ["stack", "add"])
def test_crop_attention_equals_whole_volume_input(combine):
    """Per-crop attention input == the same crops of the whole-volume input (model_input)."""
    import networkx as nx

    from coroseg.infer.stages import crop_attention, model_input, pad_value
    from coroseg.io.centerline import CenterlineGraph
    from coroseg.io.volume import Volume

    rng = np.random.default_rng(3)
    norm = rng.normal(size=(20, 26, 22)).astype(np.float32)
    grid = Volume(norm, (0.9, 0.7, 0.8), (3.0, -2.0, 5.0), np.eye(3))
    g = nx.Graph()
    ends = [grid.index_to_world(np.array([[2.0, 3.0, 4.0]]))[0], grid.index_to_world(np.array([[17.0, 20.0, 18.0]]))[0],
            grid.index_to_world(np.array([[10.0, 24.5, 1.0]]))[0]]
    for i, p in enumerate(ends):
        g.add_node(i, pos=p, radius=1.2)
    g.add_edge(0, 1), g.add_edge(1, 2)
    graph = CenterlineGraph(g)
    intensity = {"clip": [-100.0, 500.0], "mean": 50.0, "std": 100.0}
    config = {"attention": True, "patch_size": [8, 12, 10], "intensity": intensity,
              "attention_cfg": {"mode": "gaussian", "dilation_mm": 1.0, "combine": combine, "weight": 2.0}}
    chans, cvals = model_input(norm, __import__("coroseg.infer.stages", fromlist=["attention"]).attention(
        graph, grid, config), config)
    starts = np.array([[0, 0, 0], [12, 14, 12], [5, 17, 3], [14, 20, 15]])  # the last one pads past the volume
    seen_whole, seen_crop = [], []
    predict_crops(chans, starts, lambda t: (seen_whole.append(t.clone()), t[:, :1])[1], patch_size=(8, 12, 10),
                  cval=cvals)
    extra_pad = pad_value(intensity) if combine == "add" else 0.0
    predict_crops(norm[None], starts, lambda t: (seen_crop.append(t.clone()), t[:, :1])[1], patch_size=(8, 12, 10),
                  cval=cvals[0], extra_channels=crop_attention(graph, grid, config), extra_cval=extra_pad)
    whole, crop = torch.cat(seen_whole), torch.cat(seen_crop)
    assert whole.shape == crop.shape == (4, 2, 8, 12, 10)
    assert float(whole[:, 1].max()) > 0.5  # the centerline passes through the crops
    # equal up to rounding: a voxel exactly at the 3-sigma cut may fall either side of it
    # (distances are computed in crop vs volume coordinates), a jump of exp(-4.5) = 0.011
    diff = (crop - whole).abs()
    assert float(diff.max()) <= 2.0 * float(np.exp(-4.5)) + 1e-5  # x weight 2 in "add" mode
    assert int((diff > 1e-5).sum()) <= 5


def test_inference_precision_sets_autocast():
    from coroseg.infer.windows import autocast_context, inference_precision

    conv = torch.nn.Conv3d(1, 2, 3)
    x = torch.randn(1, 1, 5, 5, 5)
    cpu = torch.device("cpu")
    with autocast_context(cpu):  # default "auto": fp32 on a CPU
        assert conv(x).dtype == torch.float32
    with inference_precision("bf16"), autocast_context(cpu):
        assert conv(x).dtype == torch.bfloat16
    with inference_precision("fp32"), autocast_context(cpu):
        assert conv(x).dtype == torch.float32
    with pytest.raises(ValueError, match="precision must be one of"):
        with inference_precision("fp8"):
            pass


def test_crop_starts_reach_the_upper_volume_faces():
    """A point near the upper faces gets a crop that reaches them (it stopped a margin short)."""
    from coroseg.infer.stages import crop_starts
    from coroseg.io.volume import Volume

    grid = Volume(np.zeros((64, 64, 64), np.uint8), (1.0, 1.0, 1.0))
    config = {"patch_size": [32, 32, 32], "crop": {"method": "kmeans"}, "seed": 0}
    np.testing.assert_array_equal(crop_starts(np.array([[50.0, 50.0, 50.0]]), grid, config), [[32, 32, 32]])
    np.testing.assert_array_equal(crop_starts(np.array([[13.0, 13.0, 13.0]]), grid, config), [[0, 0, 0]])


def test_run_grid_zero_attention_equals_stacked_input():
    """A crop model without prior: the zero channel added per window == the stacked volume input."""
    from coroseg.infer.stages import model_input, run_grid

    class TwoChannel(torch.nn.Module):  # logits that depend on both input channels
        def forward(self, x):
            return torch.cat([x[:, :1] * 0.3, x[:, :1] - 2.0 * x[:, 1:2] + 0.1], 1)

    rng = np.random.default_rng(1)
    norm = rng.normal(size=(20, 23, 17)).astype(np.float32)
    config = {"attention": True, "patch_size": [8, 8, 8],
              "intensity": {"clip": [-100.0, 500.0], "mean": 50.0, "std": 100.0}}
    chans, cvals = model_input(norm, None, config)
    ref = sliding_window(chans, vessel_predictor(TwoChannel()), patch_size=(8, 8, 8), overlap=0.25,
                         mode="gaussian", cval=cvals[0])
    out = run_grid(norm, TwoChannel(), config, device=torch.device("cpu"))
    np.testing.assert_allclose(out, ref, atol=1e-6)

"""infer.stages: crop placement and tracking rules, per-crop attention input, grid runs of crop models."""

from __future__ import annotations

import numpy as np
import torch
from infer_helpers import ThresholdNet, dice, make_config, tube_phantom

from coroseg.infer.crops import predict_crops
from coroseg.infer.stages import uncovered_points
from coroseg.infer.windows import sliding_window, vessel_predictor


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


def test_crop_attention_equals_whole_volume_input():
    """Per-crop attention input == the same crops of the whole-volume input (model_input)."""
    import networkx as nx

    from coroseg.infer.stages import crop_attention, model_input
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
    config = run_config("unet3d_crop", patch=(8, 12, 10)).replace(intensity=intensity)
    chans, cvals = model_input(norm, __import__("coroseg.infer.stages", fromlist=["attention"]).attention(
        graph, grid, config), config)
    starts = np.array([[0, 0, 0], [12, 14, 12], [5, 17, 3], [14, 20, 15]])  # the last one pads past the volume
    seen_whole, seen_crop = [], []
    predict_crops(chans, starts, lambda t: (seen_whole.append(t.clone()), t[:, :1])[1], patch_size=(8, 12, 10),
                  cval=cvals)
    predict_crops(norm[None], starts, lambda t: (seen_crop.append(t.clone()), t[:, :1])[1], patch_size=(8, 12, 10),
                  cval=cvals[0], extra_channels=crop_attention(graph, grid, config), extra_cval=0.0)
    whole, crop = torch.cat(seen_whole), torch.cat(seen_crop)
    assert whole.shape == crop.shape == (4, 2, 8, 12, 10)
    assert float(whole[:, 1].max()) > 0.5  # the centerline passes through the crops
    # equal up to rounding: a voxel exactly at the 3-sigma cut may fall either side of it
    # (distances are computed in crop vs volume coordinates), a jump of exp(-4.5) = 0.011
    diff = (crop - whole).abs()
    assert float(diff.max()) <= float(np.exp(-4.5)) + 1e-5
    assert int((diff > 1e-5).sum()) <= 5


def test_crop_starts_reach_the_upper_volume_faces():
    """A point near the upper faces gets a crop that reaches them (it stopped a margin short)."""
    from coroseg.infer.stages import crop_starts
    from coroseg.io.volume import Volume

    grid = Volume(np.zeros((64, 64, 64), np.uint8), (1.0, 1.0, 1.0))
    config = run_config("unet3d_crop", patch=(32, 32, 32))
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
    config = run_config("unet3d_crop", patch=(8, 8, 8)).replace(
        intensity={"clip": [-100.0, 500.0], "mean": 50.0, "std": 100.0})
    chans, cvals = model_input(norm, None, config)
    ref = sliding_window(chans, vessel_predictor(TwoChannel()), patch_size=(8, 8, 8), overlap=0.25,
                         mode="gaussian", cval=cvals[0])
    out = run_grid(norm, TwoChannel(), config, device=torch.device("cpu"))
    np.testing.assert_allclose(out, ref, atol=1e-6)


def run_config(model: str, *, patch):
    """A checked RunConfig of the shared test template (infer_helpers.make_config)."""
    from coroseg.models.config import RunConfig

    return RunConfig.from_dict(make_config(model, patch=patch))


class AttentionGatedNet(ThresholdNet):
    """The threshold net, but vessel only where the attention channel is above 0.3: a crop model
    that segments only where its prior points (what an untrained-for-tracking model does)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        gate = torch.where(x[:, 1:2] > 0.3, 0.0, -50.0)
        return torch.cat([out[:, :1], out[:, 1:] + gate], 1)


def test_refinement_recentres_an_offset_prior():
    """A prior 2 mm off the vessels: the gated model segments only the overlap; each refinement
    round draws the attention from the centerline of that result, which lies nearer the lumen."""
    from coroseg.data.preprocess import normalise
    from coroseg.infer.stages import run_crops
    from coroseg.io.volume import resample_to_grid

    img, lab, gt = tube_phantom()
    cfg = run_config("unet3d_crop", patch=(16, 16, 16))
    norm = normalise(img.array.astype(np.float32), cfg.intensity)
    prior = gt.transformed(lambda p: p + np.array([2.0, 0.0, 0.0]))

    def score(rounds: int) -> float:
        prob, _ = run_crops(norm, img, prior, AttentionGatedNet(), cfg, device="cpu", iterate=False, refine=rounds)
        seg = resample_to_grid(prob, img, order=1, default=0.0).array >= 0.5
        return dice(seg, lab.array)

    plain, once, twice = score(0), score(1), score(2)
    assert plain < 0.45  # the offset prior covers part of each lumen
    assert once > plain + 0.1 and twice > once + 0.05

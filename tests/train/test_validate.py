"""Validation runs the code ``predict`` runs: known answers with a network whose output is known.

The "network" is a fixed threshold on the normalised intensity (vessel where the image is
brighter than 200 HU), so the right answer is the tube mask itself; the tests check that
validation scores exactly what ``coroseg.infer.predict_volume`` writes, on the scan's own grid.
"""

from __future__ import annotations

import numpy as np
import torch

from coroseg.eval.metrics import dice
from coroseg.io.volume import Volume
from coroseg.models.config import LocatorConfig, RunConfig
from coroseg.models.registry import network_config
from coroseg.train.validate import ValCase, locator_target, validate_locator, validate_model

INTENSITY = {"clip": [-200.0, 600.0], "mean": 100.0, "std": 100.0}
HU_CUT = 200.0  # the stand-in network calls a voxel vessel above this


class Threshold(torch.nn.Module):
    """Logits (background, vessel) = -/+ (normalised HU - normalised 200 HU), channel 0 only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = (HU_CUT - INTENSITY["mean"]) / INTENSITY["std"]
        v = 10.0 * (x[:, :1] - t)
        return torch.cat([-v, v], 1)


def _case(spacing=(1.0, 1.0, 1.0)) -> ValCase:
    z, y, x = np.meshgrid(*[np.arange(s) for s in (24, 20, 20)], indexing="ij")
    tube = ((y - 10) ** 2 + (x - 9) ** 2 <= 6) & (z >= 2) & (z < 22)
    image = np.where(tube, 450.0, 40.0).astype(np.float32)
    return ValCase(Volume(image, spacing, (3.0, -2.0, 5.0)), Volume(tube.astype(np.uint8), spacing, (3.0, -2.0, 5.0),
                                                                    is_label=True))


NETWORK = network_config({"dims": 3, "in_channels": 1}, channels=(4, 8), num_res_units=0)  # not run: Threshold is


def _grid_config(spacing=(1.0, 1.0, 1.0)) -> RunConfig:
    return RunConfig(model="unet3d_grid", dims=3, sampler="grid", attention=False, in_channels=1,
                     patch_size=(16, 16, 16), spacing=spacing, intensity=INTENSITY, network=NETWORK)


def _locator(label: str = "nearest") -> LocatorConfig:
    return LocatorConfig(spacing=(1.0, 1.0, 1.0), patch_size=(16, 16, 16), network=NETWORK, intensity=INTENSITY,
                         label=label, threshold=0.5, keep_fraction=0.3, low_threshold=0.02)


def test_validate_model_scores_the_predict_output():
    import types

    from coroseg.infer.pipeline import predict_volume

    case = _case()
    net = Threshold()
    net.train()
    [score] = validate_model(net, _grid_config(), [case], centerline_source=None, device=torch.device("cpu"))
    assert score == 1.0  # the threshold network finds the tube exactly, on the scan's own grid
    assert net.training  # back in training mode
    run = types.SimpleNamespace(config=_grid_config(), model=net, locator=None)
    seg = predict_volume(run, case.image, centerline="none", device="cpu", keep_prob=False).seg
    assert dice(seg.array > 0, case.label.array > 0) == score


def test_validate_model_on_a_coarser_model_grid_is_scored_on_the_scan_grid():
    """At a 2 mm model spacing the answer is no longer exact: the resampling round trip costs Dice."""
    case = _case()
    [score] = validate_model(Threshold(), _grid_config((2.0, 2.0, 2.0)), [case], centerline_source=None,
                             device=torch.device("cpu"))
    assert 0.5 < score < 1.0


def test_validate_locator_scores_its_selected_trees():
    case = _case()
    loc_cfg = _locator()
    [score] = validate_locator(Threshold(), loc_cfg, [case], device=torch.device("cpu"))
    assert score == 1.0
    # bright islands far from the tube (1 mm^3: below a tree's 5 mm^3) are not the locator's
    # trees, as stage 1 of predict selects them: they do not count against it
    for k in (3, 8, 13):
        case.image.array[k, 2, 16] = 450.0
    [score] = validate_locator(Threshold(), loc_cfg, [case], device=torch.device("cpu"))
    assert score == 1.0


def test_locator_target_is_the_training_label_on_the_locator_grid():
    case = _case()
    same = locator_target(case.label, case.label, _locator("nearest"))
    np.testing.assert_array_equal(same, case.label.array > 0)
    coarse_grid = Volume(np.zeros((12, 10, 10), np.float32), (2.0, 2.0, 2.0), (3.5, -1.5, 5.5))
    cover = locator_target(case.label, coarse_grid, _locator("coverage"))
    assert cover.shape == (12, 10, 10) and cover.any()

"""Test-time mirroring (predict_volume(tta=True)): known answers with networks whose output is known."""

from __future__ import annotations

import numpy as np
import torch
from infer_helpers import dice

from coroseg.infer.pipeline import TTA_FLIPS, mirror_graph, predict_volume
from coroseg.io.volume import Volume


class RampNet(torch.nn.Module):
    """Vessel logit = image + a ramp along the last axis of the window: not mirror-symmetric."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(-1.0, 1.0, x.shape[-1], dtype=x.dtype)
        logit = x[:, :1] + ramp
        return torch.cat([torch.zeros_like(logit), logit], 1)


def test_a_mirror_symmetric_network_gives_nearly_the_same_answer(fake_run, phantom):
    image, label, _ = phantom
    run = fake_run("unet3d_grid")
    plain = predict_volume(run, image, device="cpu")
    run.model.calls = 0
    tta = predict_volume(run, image, device="cpu", tta=True)
    # the network is mirror-symmetric, its tiling of the scan is not (windows start at index 0 of
    # each mirrored scan, and a box mean at a window edge sees fewer voxels): nearly the same mask
    assert dice(tta.seg.array > 0, plain.seg.array > 0) > 0.97
    assert tta.info["tta"] == len(TTA_FLIPS) == 4 and dice(tta.seg.array > 0, label.array > 0) > 0.8
    assert run.model.calls == 4 * plain_calls(run, image)


def plain_calls(run, image) -> int:
    run.model.calls = 0
    predict_volume(run, image, device="cpu")
    return run.model.calls


def test_tta_probability_is_the_mean_of_the_mirrored_predictions(fake_run, phantom):
    image, _, _ = phantom
    run = fake_run("unet3d_grid")
    run.model = RampNet()
    want = np.zeros(image.shape, np.float32)
    for axes in TTA_FLIPS:
        mirrored = image.with_array(np.ascontiguousarray(np.flip(image.array, axes))) if axes else image
        p = predict_volume(run, mirrored, device="cpu").prob.array
        want += np.flip(p, axes) if axes else p
    got = predict_volume(run, image, device="cpu", tta=True).prob.array
    np.testing.assert_allclose(got, want / 4, atol=1e-5)


def test_mirror_graph_follows_the_flipped_anatomy(phantom):
    image, label, graph = phantom
    vol = Volume(label.array, (1.1, 0.9, 0.8), (5.0, -3.0, 2.0), np.diag([1.0, -1.0, 1.0]), True)
    for axes in [(0,), (1,), (2,)]:
        flipped = vol.with_array(np.ascontiguousarray(np.flip(vol.array, axes)))
        moved = mirror_graph(graph, vol, axes)
        assert np.allclose(mirror_graph(moved, vol, axes).positions(), graph.positions())  # an involution
        # each mirrored node lands where its voxel went
        idx = np.round(vol.world_to_index(graph.positions())).astype(int)
        inside = np.all((idx >= 0) & (idx < np.array(vol.shape)), axis=1)
        new = np.round(flipped.world_to_index(moved.positions())).astype(int)
        np.testing.assert_array_equal(flipped.array[tuple(new[inside].T)], vol.array[tuple(idx[inside].T)])


def test_crop_model_with_a_given_centerline_mirrors_it(fake_run, phantom):
    image, label, graph = phantom
    run = fake_run("unet3d_crop")
    plain = predict_volume(run, image, centerline=graph, centerline_source="oracle", device="cpu")
    tta = predict_volume(run, image, centerline=graph, centerline_source="oracle", device="cpu", tta=True)
    assert tta.info["centerline_source"] == "oracle" and tta.info["n_crops"] > 0
    assert abs(dice(tta.seg.array > 0, label.array > 0) - dice(plain.seg.array > 0, label.array > 0)) < 0.02

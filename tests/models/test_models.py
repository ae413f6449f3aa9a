"""Model registry, weights files, run-folder config checks, preprocessing statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from coroseg.data.preprocess import intensity_stats, normalise, target_spacing, to_model_grid
from coroseg.errors import CorosegError
from coroseg.io.volume import Volume
from coroseg.models import build_network, load_run, load_weights, model_spec, network_config, save_weights
from coroseg.models.run import read_config

TINY = {"channels": [4, 8, 16], "num_res_units": 1}


@pytest.mark.parametrize("name,dims,sampler,chans", [
    ("unet2d_grid", 2, "grid", 1), ("unet2d_crop", 2, "crop", 2),
    ("unet3d_grid", 3, "grid", 1), ("unet3d_crop", 3, "crop", 2)])
def test_model_spec_and_network_shapes(name, dims, sampler, chans):
    spec = model_spec(name)
    assert (spec["dims"], spec["sampler"], spec["in_channels"]) == (dims, sampler, chans)
    assert spec["attention"] is (sampler == "crop")
    net = build_network(network_config(spec, **TINY))
    x = torch.zeros((2, chans) + (16,) * dims)
    assert tuple(net(x).shape) == (2, 2) + (16,) * dims


def test_no_attention_ablation_has_one_channel():
    assert model_spec("unet3d_crop", attention=False)["in_channels"] == 1
    assert model_spec("unet3d_grid", attention=True)["attention"] is False


def test_unknown_model_is_refused():
    with pytest.raises(CorosegError, match="unknown model 'unet4d'"):
        model_spec("unet4d")


def test_default_network_size():
    # 5 levels 16..256 with 2 residual units: the documented ~4.8 M parameters
    net = build_network(network_config(model_spec("unet3d_grid")))
    n = sum(p.numel() for p in net.parameters())
    assert 4_700_000 < n < 4_900_000


def test_weights_round_trip_is_exact(tmp_path):
    torch.manual_seed(0)
    cfg = network_config(model_spec("unet3d_crop"), **TINY)
    a, b = build_network(cfg), build_network(cfg)
    save_weights(a, tmp_path / "w.safetensors", config={"k": 1})
    load_weights(b, tmp_path / "w.safetensors")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_load_weights_refuses_pickle(tmp_path):
    net = build_network(network_config(model_spec("unet3d_grid"), **TINY))
    torch.save(net.state_dict(), tmp_path / "model.pt")
    with pytest.raises(CorosegError, match=r"model\.pt: this is a pickled PyTorch checkpoint"):
        load_weights(net, tmp_path / "model.pt")


def test_load_weights_refuses_other_model(tmp_path):
    small = build_network(network_config(model_spec("unet3d_grid"), **TINY))
    other = build_network(network_config(model_spec("unet3d_crop"), **TINY))  # 2 input channels
    save_weights(other, tmp_path / "w.safetensors")
    with pytest.raises(CorosegError, match=r"tensor '.*' has shape \(4, 2, 3, 3, 3\), expected \(4, 1, 3, 3, 3\)"):
        load_weights(small, tmp_path / "w.safetensors")
    deeper = build_network(network_config(model_spec("unet3d_grid"), channels=[4, 8, 16, 32], num_res_units=1))
    with pytest.raises(CorosegError, match="weights are from another model: .*missing"):
        load_weights(deeper, tmp_path / "w.safetensors")


def test_load_weights_refuses_truncated_file(tmp_path):
    net = build_network(network_config(model_spec("unet3d_grid"), **TINY))
    p = save_weights(net, tmp_path / "w.safetensors")
    data = p.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorosegError, match="cut.safetensors: .*truncated"):
        load_weights(net, tmp_path / "cut.safetensors")


def test_load_run_names_missing_config_key(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model": "unet3d_grid"}))
    with pytest.raises(CorosegError, match=r"config\.json: config lacks key 'dims'"):
        read_config(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorosegError, match="no config.json"):
        load_run(tmp_path / "empty")
    with pytest.raises(CorosegError, match="run folder not found"):
        load_run(tmp_path / "missing_run")


def test_intensity_stats_known_answer():
    # foreground (dilated by 0) values 0..999 once: percentiles and mean/std of the clipped values
    img = np.arange(1000, dtype=float).reshape(10, 10, 10)
    lab = np.ones_like(img, dtype=np.uint8)
    st = intensity_stats([img], [lab], dilation=0)
    lo, hi = np.percentile(np.arange(1000.0), [0.5, 99.5])
    assert st["clip"] == pytest.approx([lo, hi])
    clipped = np.clip(np.arange(1000.0), lo, hi)
    assert st["mean"] == pytest.approx(clipped.mean()) and st["std"] == pytest.approx(clipped.std())
    out = normalise(np.array([-1e4, 499.5, 1e4]), st)
    assert out.dtype == np.float32
    assert out == pytest.approx([(lo - st["mean"]) / st["std"], (499.5 - st["mean"]) / st["std"],
                                 (hi - st["mean"]) / st["std"]], rel=1e-5)


def test_intensity_stats_only_near_foreground():
    img = np.full((20, 20, 20), -1000.0)
    img[8:12, 8:12, 8:12] = 300.0
    lab = np.zeros(img.shape, np.uint8)
    lab[9:11, 9:11, 9:11] = 1
    st = intensity_stats([img], [lab], dilation=1)  # dilated 4^3 region is all 300 HU
    assert st["clip"] == [300.0, 300.0] and st["mean"] == 300.0 and st["std"] == 1e-6


def test_target_spacing_is_median_per_axis():
    assert target_spacing([(1.0, 0.5, 0.5), (0.6, 0.4, 0.4), (2.0, 0.3, 0.3)]) == (1.0, 0.4, 0.4)


@pytest.mark.parametrize("spacing", [(0.9, 0.55, 0.7), (1.3, 0.7, 0.8)])
@pytest.mark.parametrize("direction", [np.eye(3), np.array([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]])])
def test_model_grid_patches_equal_whole_volume(spacing, direction):
    """Resampling only a box of the model grid gives exactly that box of the whole resample."""
    from coroseg.data.preprocess import ModelGridPatches

    rng = np.random.default_rng(2)
    vol = Volume(rng.integers(-1000, 1500, (23, 31, 29)).astype(np.int16), (1.3, 0.7, 0.8), (5.0, -3.0, 12.0),
                 direction)
    intensity = {"clip": [-200.0, 800.0], "mean": 100.0, "std": 250.0}
    whole = normalise(to_model_grid(vol, spacing).array, intensity)
    patches = ModelGridPatches(vol, spacing, intensity)
    assert patches.shape == whole.shape
    for box in [(slice(0, 5), slice(3, 11), slice(0, 7)), (slice(20, whole.shape[0]), slice(0, 4), slice(9, 30)),
                tuple(slice(0, n) for n in whole.shape)]:
        np.testing.assert_array_equal(patches.region(box), whole[box])


def test_to_model_grid_halves_shape():
    vol = Volume(np.zeros((10, 8, 6), np.float32), (1.0, 1.0, 1.0))
    assert to_model_grid(vol, (2.0, 2.0, 2.0)).shape == (5, 4, 3)
    assert to_model_grid(vol, (1.0, 1.0, 1.0)) is vol

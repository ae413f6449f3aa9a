"""infer.windows: the sliding window is exact with an ``x + 1`` predictor (MONAI's own test idea); precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch

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

"""Sliding-window inference over a whole volume for grid models (2D and 3D).

3D models use :func:`monai.inferers.sliding_window_inference` with Gaussian blending of
overlapping windows. 2D models (``patch_size == [1, H, W]``) run slice by slice: axial slices
are stacked along the batch axis in chunks and each chunk goes through MONAI's 2D sliding
window, so a slice larger than ``H x W`` is still tiled and blended.

A *predictor* here is any callable mapping a float tensor ``(N, C_in, *spatial)`` to
``(N, C_out, *spatial)``; :func:`vessel_predictor` wraps a segmentation network (logits
``(N, 2, ...)``) into one returning the vessel probability ``(N, 1, ...)``, so blending
happens in probability space.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextvars import ContextVar

import numpy as np
import torch

Predictor = Callable[[torch.Tensor], torch.Tensor]


#: network precision at inference: "auto" = bf16 autocast on CUDA, fp32 on CPU; "fp32"; "bf16"
#: (bf16 on a CPU helps only where the CPU has bf16 instructions: AVX512-BF16 or AMX)
PRECISIONS = ("auto", "fp32", "bf16")
_PRECISION: ContextVar[str] = ContextVar("coroseg_inference_precision", default="auto")


@contextlib.contextmanager
def inference_precision(mode: str):
    """Run the networks inside this block at ``mode`` (one of :data:`PRECISIONS`)."""
    if mode not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {mode!r}")
    token = _PRECISION.set(mode)
    try:
        yield
    finally:
        _PRECISION.reset(token)


def autocast_context(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast for the current :func:`inference_precision` (default: bf16 on CUDA, fp32 on CPU)."""
    mode = _PRECISION.get()
    if mode == "bf16" or (mode == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def vessel_predictor(model: torch.nn.Module) -> Predictor:
    """Wrap a network with 2-class logits into ``x -> softmax(model(x))[:, 1:2]`` (float32)."""

    def predict(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        if out.shape[1] == 1:  # a single-logit network: sigmoid
            return torch.sigmoid(out.float())
        return torch.softmax(out.float(), dim=1)[:, 1:2]

    return predict


def sliding_window(
    image: np.ndarray,
    predictor: Predictor,
    *,
    patch_size: Sequence[int],
    overlap: float = 0.25,
    batch_size: int = 4,
    device: torch.device | str = "cpu",
    mode: str = "gaussian",
    cval: float = 0.0,
    out_channels: int = 1,
) -> np.ndarray:
    """Apply ``predictor`` over a whole volume with overlapping windows and blend.

    Parameters
    ----------
    image : (C, Z, Y, X) or (Z, Y, X) ndarray of float
        Normalised input channels (a 3D array is treated as one channel).
    predictor : callable
        ``(N, C, *window) tensor -> (N, out_channels, *window) tensor``.
    patch_size : sequence of 3 int, voxels
        Window ``(pz, py, px)``; ``pz == 1`` selects slice-by-slice 2D inference with
        ``(py, px)`` windows (the predictor then receives ``(N, C, py, px)``).
    overlap : float in [0, 1)
        Fraction of the window shared by neighbours.
    batch_size : int
        Windows (3D) or slices (2D) per forward pass.
    device : torch device
        Where the predictor runs; the blended output is accumulated on the CPU.
    mode : {"gaussian", "constant"}
        Blending weights for overlapping windows.
    cval : float
        Value used to pad the input when the volume is smaller than a window.
    out_channels : int
        Number of channels the predictor returns.

    Returns
    -------
    (out_channels, Z, Y, X) ndarray of float32, or (Z, Y, X) when ``out_channels == 1``.
    """
    from monai.inferers import sliding_window_inference

    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(f"image must be (Z, Y, X) or (C, Z, Y, X), not {arr.shape}")
    patch = [int(p) for p in patch_size]
    if len(patch) != 3:
        raise ValueError(f"patch_size must have 3 entries (pz, py, px), not {patch}")
    device = torch.device(device)
    c, nz, ny, nx = arr.shape

    with torch.inference_mode(), autocast_context(device):
        if patch[0] == 1:  # 2D: slices along the batch axis
            out = np.empty((out_channels, nz, ny, nx), np.float32)
            roi = patch[1:]
            chunk = max(1, batch_size)
            for z0 in range(0, nz, chunk):
                z1 = min(nz, z0 + chunk)
                x = torch.from_numpy(np.ascontiguousarray(arr[:, z0:z1].transpose(1, 0, 2, 3)))
                y = sliding_window_inference(
                    x, roi, chunk, _on_device(predictor, device), overlap=overlap, mode=mode,
                    cval=cval, sw_device=device, device="cpu")
                out[:, z0:z1] = y.float().numpy().transpose(1, 0, 2, 3)
        else:
            x = torch.from_numpy(np.ascontiguousarray(arr[None]))
            y = sliding_window_inference(
                x, patch, batch_size, _on_device(predictor, device), overlap=overlap, mode=mode,
                cval=cval, sw_device=device, device="cpu")
            out = y[0].float().numpy()  # already float32 on the CPU: no second volume-sized copy
    return out[0] if out_channels == 1 else out


def _on_device(predictor: Predictor, device: torch.device) -> Predictor:
    def run(x: torch.Tensor) -> torch.Tensor:
        return predictor(x.to(device, non_blocking=True)).float()

    return run


__all__ = ["sliding_window", "vessel_predictor", "autocast_context", "inference_precision", "PRECISIONS", "Predictor"]

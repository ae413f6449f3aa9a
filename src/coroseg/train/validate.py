"""Whole-volume validation during training.

Validation predicts every validation case WHOLE (not patches), at the model spacing, and
scores it with Dice against the resampled reference label:

- grid models: MONAI ``sliding_window_inference`` (Gaussian-weighted, 25 % overlap) over the
  volume (3D) or over every axial slice (2D);
- crop models: crops centred on the case's centerline (from the dataset file, else extracted
  from the reference label, i.e. the *reference* centerline) with the unperturbed attention
  channel; crop probabilities are averaged where crops overlap, outside every crop is
  background.

This is a training-time stand-in for the full predictor in :mod:`coroseg.infer` (which
resamples back to the native grid and, for crop models, can take the centerline from the
locator). Scores here are therefore on the model grid and with the reference centerline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from coroseg.data.cache import PreparedCase
from coroseg.data.sampling import attention_patch, centerline_points, crop_centres_for_case
from coroseg.eval.metrics import dice


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


@torch.no_grad()
def predict_grid(model: torch.nn.Module, image: np.ndarray, patch_size: Sequence[int], dims: int, *,
                 device: torch.device, batch: int = 4, overlap: float = 0.25, amp: bool = True) -> np.ndarray:
    """Vessel probability ``(Z, Y, X)`` float32 of a grid model by sliding windows."""
    from monai.inferers import sliding_window_inference

    def predictor(x: torch.Tensor) -> torch.Tensor:
        with _autocast(device, amp):
            return torch.softmax(model(x).float(), 1)

    if dims == 3:
        x = torch.as_tensor(image, dtype=torch.float32, device=device)[None, None]
        prob = sliding_window_inference(x, tuple(patch_size), batch, predictor, overlap=overlap, mode="gaussian")
        return prob[0, 1].float().cpu().numpy()
    out = np.zeros(image.shape, np.float32)
    chunk = max(1, batch * 4)
    for k0 in range(0, image.shape[0], chunk):
        x = torch.as_tensor(image[k0:k0 + chunk], dtype=torch.float32, device=device)[:, None]
        prob = sliding_window_inference(x, tuple(patch_size[1:]), batch, predictor, overlap=overlap, mode="gaussian")
        out[k0:k0 + chunk] = prob[:, 1].float().cpu().numpy()
    return out


@torch.no_grad()
def predict_crops(model: torch.nn.Module, case: PreparedCase, centres: np.ndarray, patch_size: Sequence[int],
                  dims: int, *, attention: dict | None, device: torch.device, batch: int = 4,
                  amp: bool = True) -> np.ndarray:
    """Vessel probability ``(Z, Y, X)`` float32 of a crop model from crops at ``centres``."""
    from coroseg.prior import extract_patch, paste_patch

    size = tuple(int(s) for s in patch_size)
    acc = np.zeros(case.image.shape, np.float32)
    cnt = np.zeros(case.image.shape, np.float32)
    pad = float(case.image.min()) if case.image.size else 0.0
    pts, rad = centerline_points(case.graph, case.grid) if attention is not None else (None, None)
    for b0 in range(0, len(centres), batch):
        chans = []
        for c in centres[b0:b0 + batch]:
            ch = [extract_patch(case.image, c, size, pad_value=pad).astype(np.float32)]
            if attention is not None:
                ch.append(attention_patch(pts, rad, c, size, case.grid.spacing, attention))
            chans.append(np.stack(ch))
        x = torch.as_tensor(np.stack(chans), device=device)  # (B, C, z, y, x)
        if dims == 2:
            x = x[:, :, 0]
        with _autocast(device, amp):
            prob = torch.softmax(model(x).float(), 1)[:, 1]
        prob = prob.float().cpu().numpy()
        if dims == 2:
            prob = prob[:, None]
        for c, p in zip(centres[b0:b0 + batch], prob):
            paste_patch(acc, p, c, add=True)
            paste_patch(cnt, np.ones_like(p), c, add=True)
    return np.divide(acc, cnt, out=np.zeros_like(acc), where=cnt > 0)


def predict_case(model: torch.nn.Module, case: PreparedCase, config: dict, *, device: torch.device,
                 centres: np.ndarray | None = None, batch: int = 4, amp: bool = True) -> np.ndarray:
    """Vessel probability of one prepared case, as validation computes it (see module doc)."""
    patch = config["patch_size"]
    if config["sampler"] == "grid":
        return predict_grid(model, case.image, patch, config["dims"], device=device, batch=batch,
                            overlap=float(config.get("val_overlap", 0.25)), amp=amp)
    if centres is None:
        centres = crop_centres_for_case(case, patch, method=config.get("crop", {}).get("method", "kmeans"),
                                        seed=int(config.get("seed", 0)))
    att = config.get("attention_cfg") if config["attention"] else None
    return predict_crops(model, case, centres, patch, config["dims"], attention=att, device=device, batch=batch,
                         amp=amp)


def validate(model: torch.nn.Module, cases: Sequence[PreparedCase], config: dict, *, device: torch.device,
             centres: Sequence[np.ndarray] | None = None, batch: int = 4, amp: bool = True) -> list[float]:
    """Dice of each case (prediction thresholded at probability 0.5). The model is put in eval mode
    and back in train mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        out = []
        for n, case in enumerate(cases):
            prob = predict_case(model, case, config, device=device, batch=batch, amp=amp,
                                centres=None if centres is None else centres[n])
            out.append(dice(prob > 0.5, case.label > 0))
        return out
    finally:
        model.train(was_training)


__all__ = ["predict_grid", "predict_crops", "predict_case", "validate"]

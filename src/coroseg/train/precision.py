"""Training arithmetic: the ``precision`` option -> autocast dtype and gradient scaler.

``auto`` is bf16 autocast on CUDA and fp32 elsewhere; ``bf16`` and ``fp16`` ask for that
autocast on any device (a CPU runs it too, which is how the GPU code path is tested here);
``fp16`` adds a :class:`torch.amp.GradScaler`, since fp16 gradients underflow without one
(bf16 has fp32's exponent range and needs none).
"""

from __future__ import annotations

import contextlib

import torch

#: the values of the ``precision`` training option
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None = plain fp32."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return _DTYPES[precision]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``dtype`` (a no-op context for None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """A gradient scaler when training in fp16, else None."""
    return torch.amp.GradScaler(device.type) if dtype == torch.float16 else None


__all__ = ["PRECISIONS", "autocast_dtype", "autocast", "grad_scaler"]

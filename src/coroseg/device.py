"""Which torch device a command runs on (one rule for training, prediction and testing)."""

from __future__ import annotations

import torch

from coroseg.errors import CorosegError


def resolve_device(device: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU is an error.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device
        A ``torch.device`` is returned as it is.
    local_rank : int
        Under torchrun, plain ``"cuda"`` means this process's GPU, ``cuda:<local_rank>``.
    """
    if isinstance(device, torch.device):
        return device
    d = str(device).lower()
    if d == "auto":
        d = "cuda" if torch.cuda.is_available() else "cpu"
    if d.startswith("cuda"):
        if not torch.cuda.is_available():
            raise CorosegError(f"device {device!r} requested but no CUDA GPU is available; use --device cpu or auto")
        return torch.device(f"cuda:{local_rank}" if d == "cuda" else d)
    if d != "cpu":
        raise CorosegError(f"device must be auto, cpu or cuda, not {device!r}")
    return torch.device("cpu")


__all__ = ["resolve_device"]

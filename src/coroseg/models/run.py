"""The run folder: weights (safetensors), config, and reloading a trained model.

A run folder written by :func:`coroseg.train.train` holds::

    config.json          everything needed to rebuild network + preprocessing (coroseg.models.config.RunConfig)
    model.safetensors    best weights (validation Dice)
    last.safetensors     weights after the last finished epoch (for --resume)
    optimizer.pt         optimizer/scheduler/scaler/RNG state, plain tensors and containers only
                         (read with ``torch.load(weights_only=True)``)
    locator.safetensors  stage-1 locator network (crop models only)
    metrics.csv, training_curves.png, splits.json, train.log

Weights are only ever read from safetensors files: a pickled ``.pt``/``.pth`` checkpoint is
refused, because unpickling can run arbitrary code.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

import torch

from coroseg.errors import CorosegError, InputError
from coroseg.io.atomic import atomic_path
from coroseg.models.config import REQUIRED_KEYS, ConfigError, RunConfig

#: keys ``load_run`` needs in config.json
CONFIG_KEYS = REQUIRED_KEYS


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DDP / ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def save_weights(model: torch.nn.Module, path: str | Path, config: RunConfig | dict | None = None) -> Path:
    """Write ``model``'s state dict as safetensors, atomically.

    ``config`` (optional) is stored as JSON in the file's metadata under ``"coroseg_config"``,
    so a weights file on its own still says what it is.
    """
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in unwrap(model).state_dict().items()}
    meta = {"format": "pt"}
    if config is not None:
        plain = config.to_dict() if isinstance(config, RunConfig) else config
        meta["coroseg_config"] = json.dumps(plain, default=str)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def _check_safetensors_file(path: Path) -> int:
    """Check the header of a safetensors file; return its size. Raise InputError when it is not one."""
    if not path.is_file():
        raise InputError("weights file not found" if not path.exists() else "not a file", path)
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(16)
    # a safetensors file starts with its header length (u64 little endian, whose first byte
    # may well be 0x80) and then '{': only without that is a pickle/zip magic conclusive
    looks_safetensors = len(head) >= 9 and head[8:9] == b"{"
    if not looks_safetensors and (head[:2] == b"PK" or head[:1] == b"\x80"):
        raise InputError("this is a pickled PyTorch checkpoint (.pt/.pth); coroseg only loads .safetensors "
                         "weights, because unpickling can run arbitrary code", path)
    if len(head) < 9:
        raise InputError(f"not a safetensors file (only {size} bytes)", path)
    (n,) = struct.unpack("<Q", head[:8])
    if head[8:9] != b"{" or n > 100_000_000:
        raise InputError("not a safetensors file (no JSON header)", path)
    if 8 + n > size:
        raise InputError(f"truncated safetensors file (header says {8 + n} bytes, found {size})", path)
    return size


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors state dict, with clear errors for pickles and truncated files."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    _check_safetensors_file(path)
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"corrupt or truncated safetensors file ({exc})", path) from None


def load_weights(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Load safetensors weights into ``model`` (in place) and return it.

    Raises :class:`InputError` when the file is missing, truncated, a pickle, or belongs to
    another model (the message names the first missing / unexpected tensor, or the tensor
    whose shape differs with expected vs found shapes).
    """
    path = Path(path)
    state = read_weights(path)
    target = unwrap(model)
    own = target.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} tensor(s) missing, e.g. {missing[0]!r}")
        if extra:
            parts.append(f"{len(extra)} unexpected tensor(s), e.g. {extra[0]!r}")
        raise InputError("weights are from another model: " + "; ".join(parts), path)
    for k, v in own.items():
        if tuple(v.shape) != tuple(state[k].shape):
            raise InputError(f"weights are from another model: tensor {k!r} has shape {tuple(state[k].shape)}, "
                             f"expected {tuple(v.shape)}", path)
    target.load_state_dict(state, strict=True)
    return model


def read_config(run_dir: str | Path) -> RunConfig:
    """Read, migrate and check ``run_dir/config.json`` (:meth:`RunConfig.from_dict`).

    Every problem is an :class:`InputError` naming the file: ``config lacks key 'spacing'``,
    ``config patch_size=[0, 8, 8]: expected three whole numbers from 1 to 512``.
    """
    cfg_path = Path(run_dir) / "config.json"
    if not Path(run_dir).is_dir():
        raise InputError("run folder not found" if not Path(run_dir).exists() else "not a folder", run_dir)
    if not cfg_path.is_file():
        raise InputError("no config.json: is this a coroseg run folder?", cfg_path)
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read config ({exc})", cfg_path) from None
    except RecursionError:
        raise InputError("cannot read config (JSON nested too deeply)", cfg_path) from None
    try:
        return RunConfig.from_dict(raw)
    except ConfigError as exc:
        raise InputError(f"config {exc}", cfg_path) from None


def write_config(run_dir: str | Path, config: RunConfig) -> Path:
    """Write ``config`` as ``run_dir/config.json`` (atomically, current schema)."""
    from coroseg.io.atomic import write_json

    return write_json(Path(run_dir) / "config.json", config.to_dict())


@dataclasses.dataclass
class LoadedRun:
    """A trained run: its config, the best model and (crop models) the locator, both in eval mode."""

    config: RunConfig
    model: torch.nn.Module
    locator: torch.nn.Module | None
    run_dir: Path


def load_run(run_dir: str | Path, *, weights: str = "model.safetensors",
             device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild the network(s) of a run folder and load their weights.

    Parameters
    ----------
    run_dir : path
        Folder written by training.
    weights : str
        File name of the main weights inside ``run_dir`` (``"last.safetensors"`` for the last epoch).
    device : str or torch.device
    """
    from coroseg.models.registry import build_network

    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    try:
        model = build_network(cfg.network)
    except CorosegError as exc:
        raise InputError(f"bad 'network' settings: {exc}", run_dir / "config.json") from None
    load_weights(model, run_dir / weights)
    model.to(device).eval()
    locator = None
    if cfg.locator is not None:
        try:
            locator = build_network(cfg.locator.network)
        except CorosegError as exc:
            raise InputError(f"bad 'locator.network' settings: {exc}", run_dir / "config.json") from None
        load_weights(locator, run_dir / cfg.locator.weights)
        locator.to(device).eval()
    return LoadedRun(cfg, model, locator, run_dir)


__all__ = ["CONFIG_KEYS", "save_weights", "load_weights", "read_weights", "read_config", "write_config", "load_run",
           "LoadedRun",
           "unwrap"]


def run_complete(run_dir: str | Path) -> bool:
    """True when ``run_dir`` holds a finished training run (``config.json`` status "complete")."""
    import json

    cfg = Path(run_dir) / "config.json"
    if not cfg.exists():
        return False
    try:
        return json.loads(cfg.read_text()).get("status") == "complete"
    except ValueError:
        return False

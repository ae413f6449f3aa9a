"""The run folder: weights (safetensors), config, and reloading a trained model.

A run folder written by :func:`coroseg.train.train` holds::

    config.json          everything needed to rebuild network + preprocessing (see CONFIG_KEYS)
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
import math
import struct
from pathlib import Path

import numpy as np
import torch

from coroseg.errors import CorosegError, InputError
from coroseg.io.atomic import atomic_path

#: keys ``load_run`` needs in config.json
CONFIG_KEYS = ("model", "dims", "sampler", "attention", "in_channels", "patch_size", "spacing", "intensity",
               "network", "locator")


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DDP / ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def save_weights(model: torch.nn.Module, path: str | Path, config: dict | None = None) -> Path:
    """Write ``model``'s state dict as safetensors, atomically.

    ``config`` (optional) is stored as JSON in the file's metadata under ``"coroseg_config"``,
    so a weights file on its own still says what it is.
    """
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in unwrap(model).state_dict().items()}
    meta = {"format": "pt"}
    if config is not None:
        meta["coroseg_config"] = json.dumps(config, default=str)
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


def read_config(run_dir: str | Path) -> dict:
    """Read and check ``run_dir/config.json`` (all of :data:`CONFIG_KEYS` present)."""
    cfg_path = Path(run_dir) / "config.json"
    if not Path(run_dir).is_dir():
        raise InputError("run folder not found" if not Path(run_dir).exists() else "not a folder", run_dir)
    if not cfg_path.is_file():
        raise InputError("no config.json: is this a coroseg run folder?", cfg_path)
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read config ({exc})", cfg_path) from None
    except RecursionError:
        raise InputError("cannot read config (JSON nested too deeply)", cfg_path) from None
    if not isinstance(cfg, dict):
        raise InputError(f"config must be a JSON object, found {type(cfg).__name__}", cfg_path)
    for key in CONFIG_KEYS:
        if key not in cfg:
            raise InputError(f"config lacks key {key!r}", cfg_path)
    loc = cfg["locator"]
    if loc is not None and not isinstance(loc, dict):
        raise InputError(f"config locator: expected an object or null, found {type(loc).__name__}", cfg_path)
    if loc is not None:
        for key in ("spacing", "patch_size", "network", "intensity", "weights"):
            if key not in loc:
                raise InputError(f"config lacks key 'locator.{key}'", cfg_path)
    checks = [("intensity", cfg["intensity"])] + ([("locator.intensity", loc["intensity"])] if loc is not None else [])
    for where, inten in checks:
        problem = _intensity_problem(inten)
        if problem:
            raise InputError(f"config {where}: {problem}", cfg_path)
    problem = config_problem(cfg)
    if problem:
        raise InputError(f"config {problem}", cfg_path)
    return cfg


def _number(v, lo: float = -math.inf, hi: float = math.inf) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and lo <= v <= hi


def config_problem(cfg: dict) -> str | None:
    """What in a run config the inference code cannot use (``"key=value: expected ..."``), or None.

    Checks every value that loading and ``predict`` read: model, dims, sampler, attention,
    network, patch size and spacing (bounded, so a tampered file cannot ask for terabytes or
    a 0-mm grid), the locator block and the optional attention / crop / seed settings.
    """
    from coroseg.models.registry import MODEL_NAMES, grid_problem, network_problem
    from coroseg.prior.attention import MODES
    from coroseg.prior.crops import METHODS

    simple = [("model", lambda v: v in MODEL_NAMES, "one of " + ", ".join(MODEL_NAMES)),
              ("dims", lambda v: v in (2, 3) and not isinstance(v, bool), "2 or 3"),
              ("sampler", lambda v: v in ("grid", "crop"), "grid or crop"),
              ("attention", lambda v: isinstance(v, bool), "true or false"),
              ("in_channels", lambda v: v in (1, 2) and not isinstance(v, bool), "1 or 2")]
    for key, ok, expected in simple:
        if not ok(cfg[key]):
            return f"{key}={cfg[key]!r:.60}: expected {expected}"
    problem = network_problem(cfg["network"])
    if problem:
        return f"network: {problem}"
    problem = grid_problem(cfg["patch_size"], cfg["spacing"], cfg["dims"])
    if problem:
        return problem
    net = cfg["network"]
    agree = [("network.spatial_dims", net["spatial_dims"], "dims", cfg["dims"]),
             ("network.in_channels", net["in_channels"], "in_channels", cfg["in_channels"]),
             ("in_channels", cfg["in_channels"], "1 + attention", 1 + int(cfg["attention"]))]
    for a, va, b, vb in agree:
        if va != vb:
            return f"{a}={va!r} does not match {b}={vb!r}"
    if (cfg["dims"] == 3) != (cfg["patch_size"][0] > 1):
        return f"patch_size={cfg['patch_size']!r} does not match dims={cfg['dims']}"
    if "seed" in cfg and cfg["seed"] is not None and not (_number(cfg["seed"]) and float(cfg["seed"]).is_integer()):
        return f"seed={cfg['seed']!r:.60}: expected a whole number"
    att = cfg.get("attention_cfg")
    if att is not None:
        if not isinstance(att, dict):
            return f"attention_cfg: expected an object, found {type(att).__name__}"
        for key, ok, expected in (("mode", lambda v: v in MODES, "one of " + ", ".join(MODES)),
                                  ("dilation_mm", lambda v: _number(v, 0, 50), "a number from 0 to 50"),
                                  ("weight", lambda v: _number(v, -100, 100), "a number from -100 to 100"),
                                  ("combine", lambda v: v in ("stack", "add"), "stack or add")):
            if att.get(key) is not None and not ok(att[key]):
                return f"attention_cfg.{key}={att[key]!r:.60}: expected {expected}"
    crop = cfg.get("crop")
    if crop is not None:
        if not isinstance(crop, dict):
            return f"crop: expected an object, found {type(crop).__name__}"
        if crop.get("method") is not None and crop["method"] not in METHODS:
            return f"crop.method={crop['method']!r:.60}: expected one of {', '.join(METHODS)}"
        for key in ("eps_mm", "merge_radius", "n_clusters", "jitter"):
            if crop.get(key) is not None and not _number(crop[key], 0, 1e4):
                return f"crop.{key}={crop[key]!r:.60}: expected a number from 0 to 10000, or null"
    return _locator_problem(cfg["locator"])


def _locator_problem(loc) -> str | None:
    from coroseg.models.registry import grid_problem, network_problem

    if loc is None:
        return None
    if not isinstance(loc, dict):
        return f"locator: expected an object or null, found {type(loc).__name__}"
    problem = network_problem(loc["network"]) or grid_problem(loc["patch_size"], loc["spacing"], 3)
    if problem:
        return f"locator: {problem}"
    w = loc["weights"]
    if not (isinstance(w, str) and w and Path(w).name == w and w.endswith(".safetensors")):
        return f"locator.weights={w!r:.60}: expected a .safetensors file name inside the run folder"
    for key, lo, hi in (("threshold", 0, 1), ("keep_fraction", 0, 1), ("low_threshold", 0, 1), ("reach_mm", 0, 1e4)):
        if loc.get(key) is not None and not _number(loc[key], lo, hi):
            return f"locator.{key}={loc[key]!r:.60}: expected a number from {lo:g} to {hi:g}, or null"
    if loc.get("tta") is not None and not isinstance(loc["tta"], bool):
        return f"locator.tta={loc['tta']!r:.60}: expected true or false"
    return None


def _intensity_problem(inten) -> str | None:
    """Why ``inten`` is not ``{"clip": [lo, hi], "mean": m, "std": s > 0}`` (finite numbers), else None."""
    try:
        lo, hi = (float(v) for v in inten["clip"])
        mean, std = float(inten["mean"]), float(inten["std"])
    except (KeyError, TypeError, ValueError):
        return f"expected clip=[lo, hi], mean and std, found {inten!r}"
    if not all(np.isfinite([lo, hi, mean, std])) or hi < lo or std <= 0:
        return f"expected finite clip lo <= hi and std > 0, found clip=[{lo:g}, {hi:g}], std={std:g}"
    if max(abs(lo), abs(hi), abs(mean)) > 1e5 or not 1e-3 <= std <= 1e5:
        return (f"expected HU-scale values (|clip|, |mean| <= 1e5, 1e-3 <= std <= 1e5), found "
                f"clip=[{lo:g}, {hi:g}], mean={mean:g}, std={std:g}")
    return None


@dataclasses.dataclass
class LoadedRun:
    """A trained run: its config, the best model and (crop models) the locator, both in eval mode."""

    config: dict
    model: torch.nn.Module
    locator: torch.nn.Module | None
    run_dir: Path


def load_run(run_dir: str | Path, *, weights: str = "model.safetensors", device: str | torch.device = "cpu") -> LoadedRun:
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
        model = build_network(cfg["network"])
    except CorosegError as exc:
        raise InputError(f"bad 'network' settings: {exc}", run_dir / "config.json") from None
    load_weights(model, run_dir / weights)
    model.to(device).eval()
    locator = None
    if cfg["locator"] is not None:
        try:
            locator = build_network(cfg["locator"]["network"])
        except CorosegError as exc:
            raise InputError(f"bad 'locator.network' settings: {exc}", run_dir / "config.json") from None
        load_weights(locator, run_dir / cfg["locator"]["weights"])
        locator.to(device).eval()
    return LoadedRun(cfg, model, locator, run_dir)


__all__ = ["CONFIG_KEYS", "save_weights", "load_weights", "read_weights", "read_config", "load_run", "LoadedRun",
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

"""``train()``: fit one of the registry's models on a dataset folder and write a run folder.

The loop is short on purpose: an epoch is a deterministic *plan* of patches
(:mod:`coroseg.data.sampling`), batches come from a plain ``DataLoader`` over it, the step is
Dice+CE (optionally + soft clDice) with AdamW, linear warm-up then cosine decay, bf16 autocast
on GPU and gradient clipping. Whole-volume validation every ``val_every`` epochs picks the best
weights and drives early stopping; it runs the code ``predict`` runs on the whole validation
scans (:mod:`coroseg.train.validate`), so the checkpoint kept is the best at what ships. Crop
models first train their locator (a small coarse 3D grid U-Net) the same way, in the same run
folder, then the crop model, validated with the locator's centerline (``val_centerline`` =
``auto`` in ``metrics.csv``; ``reference`` for a run without a locator). The locator's target is the label resampled with
linear interpolation and a low threshold (:func:`coroseg.data.cache.coarse_label`): with
nearest neighbour, 1-2 mm coronaries fall apart into dozens of fragments on a coarser grid and
the locator learned nothing (validation Dice 0).

Resume: ``optimizer.pt`` stores the optimizer, scheduler, counters, history and RNG states
after each epoch (and on Ctrl-C mid-epoch, with the number of steps done), so a resumed run
replays exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

import coroseg
from coroseg.data.augment import build_augmentation
from coroseg.data.cache import PreparedCase, case_statistics, prepare_cases
from coroseg.data.preprocess import target_spacing
from coroseg.data.layouts import Case, discover_cases, load_dataset
from coroseg.data.sampling import PatchDataset, PatchItem, crop_centres_for_case, crop_plan, grid_plan, shard
from coroseg.errors import CorosegError
from coroseg.infer.stages import LOCATOR_KEEP_FRACTION, LOCATOR_REACH_MM, LOCATOR_THRESHOLD
from coroseg.io.atomic import atomic_path, write_json
from coroseg.models.registry import (CHANNELS, MAX_CHANNELS, MAX_LEVELS, MAX_PATCH, NORMS, SPACING_RANGE_MM,
                                     build_network, model_spec, network_config)
from coroseg.models.run import load_weights, read_config, save_weights, unwrap
from coroseg.train import distributed as D
from coroseg.train.curves import plot_curves, write_metrics

log = logging.getLogger("coroseg.train")

#: every tunable, with its default; ``train(**overrides)`` may set any of them
DEFAULTS: dict = {
    "weight_decay": 1e-4,
    "warmup_frac": 0.05,        # fraction of all steps with linear warm-up
    "grad_clip": 5.0,           # max global gradient norm
    "samples_per_case": 16,     # grid models: patches per training case per epoch
    "fg_fraction": 0.5,         # grid models: share of patches centred on a foreground voxel
    "crop_method": "kmeans",
    "crop_jitter": 0.125,       # crop models: random shift of crop centres, fraction of the patch size
    "crop_repeats": 1,          # crop models: times each crop centre is used per epoch
    "crops_per_case": None,     # crop models: at most this many crops of a case per epoch (None: all)
    "augment": 1.0,             # augmentation strength, 0 = off
    "cldice": 0.0,              # weight of MONAI soft clDice added to Dice+CE (0 = off)
    "num_workers": None,        # data-loader workers (None: 0 on CPU, min(8, cpus/world) on GPU)
    "channels": list(CHANNELS),
    "strides": None,
    "num_res_units": 2,
    "norm": "instance",
    "dropout": 0.0,
    "patch_size": None,         # [z, y, x]; default from the registry
    "spacing": None,            # model spacing: None/"median" (nnU-Net), "min" (finest training case), or [z, y, x] mm
    "attention_dilation_mm": 1.0,
    "attention_mode": "gaussian",
    "perturb": True,            # perturb the centerline for the attention channel while training
    "perturb_kwargs": None,     # arguments of coroseg.prior.perturb_centerline (None: its defaults)
    "spurious_branches": 0,     # fake centerline pieces added per case and epoch (teach: attention is not a vessel)
    "attention_dropout": 0.0,   # share of crops trained with an empty attention channel (teach: vessels
                                # the centerline missed are still vessels, so crops at its gaps find them)
    "val_overlap": 0.25,
    "val_batch": 4,
    "amp": True,                # bf16 autocast on GPU
    "locator": True,            # crop models: train the stage-1 locator too
    "locator_spacing": None,    # [z, y, x] mm; default: locator_spacing_factor x model spacing
    "locator_spacing_factor": 1.5,
    "locator_channels": [8, 16, 32, 64],
    "locator_patch": [64, 64, 64],
    "locator_samples_per_case": 16,
    "locator_budget": None,     # patches for the locator; default: same epochs as the main model
}



def check_options(opts: dict) -> None:
    """Refuse option values the trainer cannot use, naming the option (before any folder is made).

    A typo in ``--set`` (``crop_method=kmean``, ``patch_size=64``) otherwise surfaces minutes
    later as a traceback deep in sampling code.
    """
    from coroseg.prior.attention import MODES
    from coroseg.prior.crops import METHODS

    def fail(key: str, expected: str) -> None:
        raise CorosegError(f"training option {key}={opts[key]!r}: expected {expected}")

    def number(v, lo: float, hi: float = math.inf, *, integer: bool = False, lo_open: bool = False) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not float(v).is_integer()):
            return False
        return (v > lo if lo_open else v >= lo) and v <= hi

    def ints(v, n: int | None = None, lo: int = 1) -> bool:
        return (isinstance(v, (list, tuple)) and (n is None or len(v) == n) and len(v) > 0
                and all(number(x, lo, integer=True) for x in v))

    choices = {"crop_method": METHODS, "attention_mode": MODES}
    for key, allowed in choices.items():
        if opts[key] not in allowed:
            fail(key, "one of " + ", ".join(allowed))
    for key in ("patch_size", "locator_patch"):
        if opts[key] is not None and not (ints(opts[key], 3) and max(opts[key]) <= MAX_PATCH):
            fail(key, f"three positive whole numbers [z, y, x], at most {MAX_PATCH}")
    for key in ("channels", "locator_channels"):
        if not ints(opts[key]) or not 2 <= len(opts[key]) <= MAX_LEVELS or max(opts[key]) > MAX_CHANNELS:
            fail(key, f"a list of 2 to {MAX_LEVELS} whole numbers from 1 to {MAX_CHANNELS}")
    if opts["strides"] is not None and not (ints(opts["strides"]) and max(opts["strides"]) <= 4
                                            and len(opts["strides"]) == len(opts["channels"]) - 1):
        fail("strides", f"null or {len(opts['channels']) - 1} whole numbers from 1 to 4 (one per channel level "
                        "after the first)")
    if opts["norm"] not in NORMS:
        fail("norm", "one of " + ", ".join(NORMS))
    lo_mm, hi_mm = SPACING_RANGE_MM
    for key in ("spacing", "locator_spacing"):
        v = opts[key]
        if v is None or (key == "spacing" and v in ("median", "min")):
            continue
        if not (isinstance(v, (list, tuple)) and len(v) == 3 and all(number(x, lo_mm, hi_mm) for x in v)):
            fail(key, ('"median", "min" or ' if key == "spacing" else "null or ")
                 + f"three numbers [z, y, x] from {lo_mm:g} to {hi_mm:g} mm")
    ranges = {  # key: (low, high, whole number, low excluded); the highs keep a typo from running for days
        "weight_decay": (0, 10, False, False), "warmup_frac": (0, 1, False, False),
        "grad_clip": (0, 1e6, False, False), "samples_per_case": (1, 10_000, True, False),
        "fg_fraction": (0, 1, False, False), "crop_jitter": (0, 0.5, False, False),
        "crop_repeats": (1, 1000, True, False), "augment": (0, 10, False, False),
        "cldice": (0, 100, False, False), "num_res_units": (0, 8, True, False),
        "dropout": (0, 1, False, False), "attention_dilation_mm": (0, 50, False, False),
        "spurious_branches": (0, 100, True, False), "attention_dropout": (0, 1, False, False),
        "val_overlap": (0, 0.95, False, False),
        "val_batch": (1, 1024, True, False), "locator_spacing_factor": (0.1, 10, False, False),
        "locator_samples_per_case": (1, 10_000, True, False)}
    for key, (lo, hi, integer, lo_open) in ranges.items():
        if not number(opts[key], lo, hi, integer=integer, lo_open=lo_open):
            kind = "a whole number" if integer else "a number"
            fail(key, f"{kind} {'>' if lo_open else '>='} {lo:g}" + (f" and <= {hi:g}" if hi < math.inf else ""))
    for key, hi in (("crops_per_case", 100_000), ("locator_budget", 10_000_000)):
        if opts[key] is not None and not number(opts[key], 1, hi, integer=True):
            fail(key, f"a whole number from 1 to {hi}, or null")
    if opts["num_workers"] is not None and not number(opts["num_workers"], 0, 256, integer=True):
        fail("num_workers", "a whole number from 0 to 256, or null")
    for key in ("perturb", "amp", "locator"):
        if not isinstance(opts[key], bool):
            fail(key, "true or false")
    if opts["perturb_kwargs"] is not None:
        import inspect

        from coroseg.prior.perturb import sample_perturbation

        known = list(inspect.signature(sample_perturbation).parameters)[2:]
        if not isinstance(opts["perturb_kwargs"], dict) or set(opts["perturb_kwargs"]) - set(known):
            fail("perturb_kwargs", "null or an object with keys among " + ", ".join(known))


class TrainingInterrupted(CorosegError):
    """Ctrl-C (SIGINT): the state was saved; ``--resume`` continues."""

    exit_code = 130


@dataclasses.dataclass
class _Phase:
    """What one fit needs: the main model or the locator."""

    name: str
    net_cfg: dict
    cfg: dict                     # the run config (model) or its "locator" entry (locator): what predict reads
    train_cases: list[PreparedCase]
    val_cases: list[Case]         # validation scans, segmented whole by coroseg.infer (train/validate.py)
    plan: Callable[[int], list[PatchItem]]
    attention: dict | None
    best_file: str
    last_file: str
    budget: int | None            # total patches (None: epochs x plan size)
    epochs: int
    val_cache: list | None = None    # this rank's ValCase list (scan, label, prior), read at first use


def train(data_dir: str | Path, out_dir: str | Path, *, model: str = "unet3d_crop", epochs: int | None = None,
          batch_size: int = 2, attention: bool = True, patch_budget: int | None = None, device: str = "auto",
          resume: bool = False, seed: int = 0, val_every: int = 1, early_stop: int | None = 20, lr: float = 1e-3,
          progress: bool = True, **overrides) -> Path:
    """Train ``model`` on the dataset at ``data_dir``; write the run folder ``out_dir``.

    Parameters
    ----------
    data_dir : path
        Dataset in any layout :func:`coroseg.data.layouts.discover_cases` knows; train/val
        splits from its folders, else a seeded split saved as ``splits.json``.
    out_dir : path
        Run folder (created). Must not hold a run unless ``resume``.
    model : str
        One of :data:`coroseg.models.registry.MODEL_NAMES`.
    epochs : int, optional
        Number of epochs (default 100; on resume, the saved value). Ignored when a patch budget
        is in force.
    batch_size : int
        Patches per step per process.
    attention : bool
        Crop models: add the centerline attention channel (``False``: the ablation).
    patch_budget : int, optional
        Total number of training patches (all processes together), so experiments compare at
        equal budgets; the number of epochs follows from the plan size.
    device : {"auto", "cpu", "cuda"}
    resume : bool
        Continue from ``last.safetensors`` + ``optimizer.pt`` in ``out_dir``. The saved config
        wins (model options, batch size, lr, seed, attention), except ``epochs``/``patch_budget``
        when given, which may extend the run (this changes the cosine schedule's length).
    seed : int
        Seeds weights, splits, patch plans, augmentation and perturbation.
    val_every : int
        Validate (whole volumes, Dice) every this many epochs and after the last.
    early_stop : int or None
        Stop after this many validations without improvement (None or 0: never).
    lr : float
        Peak AdamW learning rate.
    progress : bool
        Show a tqdm bar (rank 0).
    **overrides
        Any key of :data:`DEFAULTS`.

    Returns
    -------
    Path
        The run folder.
    """
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise CorosegError(f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    if batch_size < 1 or (epochs is not None and epochs < 1) or val_every < 1:
        raise CorosegError(f"batch size, epochs and val-every must be >= 1, found {batch_size}, {epochs}, {val_every}")
    if patch_budget is not None and patch_budget < 1:
        raise CorosegError(f"patch budget must be >= 1, found {patch_budget}")
    check_options({**DEFAULTS, **overrides})
    run_dir = Path(out_dir)
    info = D.setup(device)
    handler = None
    created = False
    try:
        if info.is_main:
            _check_run_dir(run_dir, resume)
            created = not run_dir.exists()
            run_dir.mkdir(parents=True, exist_ok=True)
            handler = _start_log(run_dir / "train.log")
        D.barrier(info)
        with _sigint_flag() as interrupted:
            _train(Path(data_dir), run_dir, info, interrupted, model=model, epochs=epochs, batch_size=batch_size,
                   attention=attention, patch_budget=patch_budget, resume=resume, seed=seed, val_every=val_every,
                   early_stop=early_stop, lr=lr, progress=progress, opts={**DEFAULTS, **overrides})
        D.barrier(info)
        return run_dir
    except Exception as exc:
        if created and not isinstance(exc, TrainingInterrupted) and not (run_dir / "last.safetensors").exists():
            # the run never reached a checkpoint (e.g. bad data): leave no folder, no stale splits.json
            _close_log(handler)
            handler = None
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        _close_log(handler)
        D.teardown(info)


def _close_log(handler: logging.Handler | None) -> None:
    if handler is not None:
        logging.getLogger("coroseg").removeHandler(handler)
        handler.close()


def _load_state(path: Path) -> dict:
    """The optimizer/RNG checkpoint, loaded with ``weights_only=True`` (never arbitrary pickles)."""
    if not path.exists():
        raise CorosegError("cannot resume: no optimizer state (the run never saved a checkpoint)", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, EOFError...: all mean "not ours"
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise CorosegError(f"cannot resume: optimizer state is corrupt or not a coroseg checkpoint ({reason})",
                           path) from None
    if not isinstance(state, dict):
        raise CorosegError("cannot resume: optimizer state is not a coroseg checkpoint", path)
    return state


def _check_run_dir(run_dir: Path, resume: bool) -> None:
    if resume:
        for name in ("config.json", "last.safetensors", "optimizer.pt"):
            if not (run_dir / name).is_file():
                raise CorosegError(f"cannot resume: {name} is missing", run_dir)
    elif (run_dir / "config.json").exists():
        raise CorosegError("folder already holds a run; pass --resume to continue it or choose another --out",
                           run_dir)
    elif run_dir.exists() and not run_dir.is_dir():
        raise CorosegError("not a folder", run_dir)


def _start_log(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    h = logging.FileHandler(path, encoding="utf-8")
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    lg = logging.getLogger("coroseg")
    lg.addHandler(h)
    if lg.level == logging.NOTSET or lg.level > logging.INFO:
        lg.setLevel(logging.INFO)
    return h


@contextlib.contextmanager
def _sigint_flag():
    """Yield a one-element list set to True on the first Ctrl-C (a second one aborts at once)."""
    flag = [False]
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):  # noqa: ARG001
        if flag[0]:
            raise KeyboardInterrupt
        flag[0] = True
        log.warning("interrupt: saving state after this step (Ctrl-C again to abort now)")

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, old)


def _train(data_dir: Path, run_dir: Path, info: D.DistInfo, interrupted: list, *, model: str, epochs: int,
           batch_size: int, attention: bool, patch_budget: int | None, resume: bool, seed: int, val_every: int,
           early_stop: int | None, lr: float, progress: bool, opts: dict) -> None:
    state = None
    if resume:
        config = read_config(run_dir)
        if config["model"] != model:
            raise CorosegError(f"cannot resume: the run trains {config['model']}, not {model}", run_dir / "config.json")
        state = _load_state(run_dir / "optimizer.pt")
        opts = {**opts, **config["train"]["options"]}
        attention, seed = bool(config["attention"]), int(config["seed"])
        batch_size, lr = int(config["train"]["batch_size"]), float(config["train"]["lr"])
        epochs = int(config["train"]["epochs"]) if epochs is None else epochs
        patch_budget = config["train"]["patch_budget"] if patch_budget is None else patch_budget
    epochs = 100 if epochs is None else epochs
    layout, _ = discover_cases(data_dir)
    splits_file = run_dir / "splits.json"
    cases = load_dataset(data_dir, seed=seed, splits_file=splits_file if splits_file.exists() else None)
    train_cases = [c for c in cases if c.split == "train"]
    val_cases = [c for c in cases if c.split == "val"]
    if not train_cases:
        raise CorosegError("no training cases (split 'train' is empty)", data_dir)
    if info.is_main and not splits_file.exists():
        write_json(splits_file, {s: [c.case_id for c in cases if c.split == s] for s in ("train", "val", "test")})

    spec = model_spec(model, attention=attention)
    if opts["patch_size"] is not None:
        spec["patch_size"] = [int(v) for v in opts["patch_size"]]
    if state is None:
        spacings, intensity = case_statistics(train_cases, seed=seed)
        spacing = _model_spacing(opts["spacing"], spacings)
        config = _make_config(spec, spacing, intensity, data_dir, layout, seed, epochs, batch_size, lr,
                              patch_budget, info, opts)
        if info.is_main:
            write_json(run_dir / "config.json", config)
    spacing, intensity = tuple(config["spacing"]), config["intensity"]
    config["train"].update(epochs=epochs, patch_budget=patch_budget)
    config["status"] = "running"
    log.info("coroseg %s: training %s on %d cases (%d validation) from %s, spacing %s mm, world size %d, %s",
             coroseg.__version__, model, len(train_cases), len(val_cases), data_dir, spacing, info.world, info.device)

    need_cl = spec["sampler"] == "crop"
    tr = prepare_cases(train_cases, spacing, intensity, centerline=need_cl)
    torch.manual_seed(seed)
    phases = {"model": _main_phase(config, spec, tr, val_cases, seed, epochs, patch_budget, opts)}
    if config["locator"] is not None:
        phases["locator"] = _locator_phase(config, train_cases, val_cases, seed, epochs, patch_budget, opts)
    # the locator trains first, so the crop model is validated with the centerline predict will use
    # (runs written before this order was introduced resume in their own order)
    order = config["train"].get("phase_order", ["model", "locator"])
    phases = [phases[name] for name in order if name in phases]
    start = 0 if state is None else [p.name for p in phases].index(state["phase"])
    history = [] if state is None else list(state["history"])
    for n, phase in enumerate(phases[start:]):
        _fit(phase, run_dir, info, interrupted, config, history, state=state if n == 0 else None, seed=seed,
             batch_size=batch_size, lr=lr, val_every=val_every, early_stop=early_stop, progress=progress, opts=opts,
             next_phase=phases[start + n + 1].name if start + n + 1 < len(phases) else None)
    if info.is_main:
        config["status"] = "complete"
        write_json(run_dir / "config.json", config)
        log.info("done: run folder %s", run_dir)


def _model_spacing(choice, spacings: Sequence[Sequence[float]]) -> tuple[float, float, float]:
    """The model spacing (array order, mm) for the ``spacing`` option.

    ``None``/``"median"``: the training cases' median (nnU-Net's choice). ``"min"``: the finest
    spacing per axis over the training cases, so no training case is down-sampled; worth its
    cost for vessels one or two voxels wide, where resampling to a coarser grid and back alone
    loses several Dice points. A number or ``[z, y, x]``: that spacing.
    """
    if choice is None or choice == "median":
        return target_spacing(spacings)
    if choice == "min":
        return tuple(float(round(v, 6)) for v in np.asarray(spacings, float).min(0))
    try:
        vals = [float(choice)] * 3 if np.isscalar(choice) else [float(v) for v in choice]
    except (TypeError, ValueError):
        vals = []
    if len(vals) != 3 or min(vals) <= 0:
        raise CorosegError(f"spacing must be 'median', 'min', a positive number or [z, y, x] mm, found {choice!r}")
    return tuple(vals)


def _make_config(spec: dict, spacing, intensity: dict, data_dir: Path, layout: str, seed: int, epochs: int,
                 batch_size: int, lr: float, patch_budget: int | None, info: D.DistInfo, opts: dict) -> dict:
    net = network_config(spec, channels=opts["channels"], strides=opts["strides"],
                         num_res_units=opts["num_res_units"], norm=opts["norm"], dropout=opts["dropout"])
    locator = None
    if spec["sampler"] == "crop" and opts["locator"]:
        factor = float(opts["locator_spacing_factor"])
        lsp = opts["locator_spacing"] or [factor * s for s in spacing]
        lspec = {"dims": 3, "in_channels": 1}
        locator = {"spacing": [float(s) for s in lsp], "patch_size": [int(v) for v in opts["locator_patch"]],
                   "network": network_config(lspec, channels=opts["locator_channels"], num_res_units=1,
                                             norm=opts["norm"]),
                   "intensity": intensity, "weights": "locator.safetensors", "threshold": LOCATOR_THRESHOLD,
                   "label": "coverage", "keep_fraction": LOCATOR_KEEP_FRACTION, "reach_mm": LOCATOR_REACH_MM}
    return {
        "coroseg_version": coroseg.__version__,
        "status": "running",
        "model": spec["name"], "dims": spec["dims"], "sampler": spec["sampler"], "attention": spec["attention"],
        "in_channels": spec["in_channels"], "patch_size": spec["patch_size"],
        "spacing": [float(s) for s in spacing], "intensity": intensity, "network": net,
        "attention_cfg": {"mode": opts["attention_mode"], "dilation_mm": float(opts["attention_dilation_mm"]),
                          "weight": 1.0, "perturb_in_training": bool(opts["perturb"])},
        "crop": {"method": opts["crop_method"], "jitter": opts["crop_jitter"]},
        "locator": locator,
        "seed": int(seed),
        "val_overlap": float(opts["val_overlap"]),
        "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "patch_budget": patch_budget,
                  "world_size": info.world, "device": info.device.type,
                  "loss": "DiceCE" + (f"+{opts['cldice']}*clDice" if opts["cldice"] else ""),
                  "optimizer": "AdamW", "schedule": "warmup+cosine", "options": opts,
                  "phase_order": ["locator", "model"] if locator is not None else ["model"]},
        "data": {"root": str(data_dir), "layout": layout},
    }


def _main_phase(config: dict, spec: dict, tr: list[PreparedCase], val_cases: Sequence[Case], seed: int, epochs: int,
                patch_budget: int | None, opts: dict) -> _Phase:
    patch = spec["patch_size"]
    att = attention_settings(opts) if spec["attention"] else None
    if spec["sampler"] == "crop":
        centres = [crop_centres_for_case(c, patch, method=opts["crop_method"], seed=seed) for c in tr]
        log.info("crop centres per training case: %s", [len(c) for c in centres])

        def plan(epoch: int) -> list[PatchItem]:
            return crop_plan(tr, centres, patch, seed=seed, epoch=epoch, jitter=opts["crop_jitter"],
                             repeats=opts["crop_repeats"], per_case=opts["crops_per_case"])
    else:
        def plan(epoch: int) -> list[PatchItem]:
            return grid_plan(tr, patch, samples_per_case=opts["samples_per_case"], seed=seed, epoch=epoch,
                             fg_fraction=opts["fg_fraction"])
    return _Phase("model", config["network"], config, tr, list(val_cases), plan, att, "model.safetensors",
                  "last.safetensors", patch_budget, epochs)


def attention_settings(opts: dict) -> dict:
    """The attention-channel settings PatchDataset takes, from the training options."""
    return {"mode": opts["attention_mode"], "dilation_mm": float(opts["attention_dilation_mm"]),
            "perturb": bool(opts["perturb"]), "spurious": int(opts["spurious_branches"]),
            "dropout": float(opts["attention_dropout"]),
            "perturb_kwargs": dict(opts["perturb_kwargs"] or {})}


def _locator_phase(config: dict, train_cases: Sequence[Case], val_cases: Sequence[Case], seed: int, epochs: int,
                   patch_budget: int | None, opts: dict) -> _Phase:
    loc = config["locator"]
    mode = loc.get("label", "nearest")
    tr = prepare_cases(train_cases, loc["spacing"], loc["intensity"], centerline=False, label_mode=mode)
    cfg = {**loc, "dims": 3}  # what locate() reads, and the patch geometry training needs

    def plan(epoch: int) -> list[PatchItem]:
        return grid_plan(tr, loc["patch_size"], samples_per_case=opts["locator_samples_per_case"], seed=seed + 1,
                         epoch=epoch, fg_fraction=opts["fg_fraction"])
    budget = opts["locator_budget"] if opts["locator_budget"] is not None else patch_budget
    return _Phase("locator", loc["network"], cfg, tr, list(val_cases), plan, None, loc["weights"],
                  "locator_last.safetensors", budget, epochs)


def _epoch_len(phase: _Phase, epoch: int, plan_size: int) -> int:
    """Patches in ``epoch``: the plan size, cut by the remaining patch budget."""
    return plan_size if phase.budget is None else min(plan_size, max(0, phase.budget - epoch * plan_size))


def _epoch_items(phase: _Phase, epoch: int, plan_size: int) -> list[PatchItem]:
    items = phase.plan(epoch)
    if phase.budget is not None:
        items = items[: max(0, phase.budget - epoch * plan_size)]
    return items


def _fit(phase: _Phase, run_dir: Path, info: D.DistInfo, interrupted: list, config: dict, history: list,
         *, state: dict | None, seed: int, batch_size: int, lr: float, val_every: int, early_stop: int | None,
         progress: bool, opts: dict, next_phase: str | None) -> None:
    from monai.losses import DiceCELoss, SoftclDiceLoss
    from tqdm import tqdm

    dev = info.device
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(seed)
    net = build_network(phase.net_cfg).to(dev)
    plan_size = len(phase.plan(0))
    if plan_size == 0:
        raise CorosegError(f"{phase.name}: no training patches (no centerline points / empty cases?)",
                           run_dir / "config.json")
    n_epochs = phase.epochs if phase.budget is None else max(1, math.ceil(phase.budget / plan_size))
    # every epoch's plan has the same size, so steps follow from it without building the plans
    steps = [math.ceil(math.ceil(_epoch_len(phase, e, plan_size) / info.world) / batch_size)
             for e in range(n_epochs)]
    total_steps = max(1, sum(steps))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=float(opts["weight_decay"]))
    warm = max(1, int(round(float(opts["warmup_frac"]) * total_steps)))

    def lr_lambda(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, total_steps - warm))
        return 0.5 * (1.0 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    counters = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "patches": 0, "best": -1.0, "best_epoch": -1,
                "bad": 0}
    if state is not None and state.get("optimizer") is not None:
        load_weights(net, run_dir / phase.last_file)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        counters.update({k: state[k] for k in counters})
        counters["epoch_losses"] = list(state.get("epoch_losses", []))
        torch.set_rng_state(state["torch_rng"])
        log.info("%s: resumed at epoch %d step %d", phase.name, counters["epoch"], counters["step_in_epoch"])
    model = net
    if info.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    cl_fn = SoftclDiceLoss(to_onehot_y=True, softmax=True, include_background=False) if opts["cldice"] else None
    amp = bool(opts["amp"]) and dev.type == "cuda"
    augment = build_augmentation(phase.cfg["dims"], strength=float(opts["augment"]),
                                 prior=phase.attention is not None)
    workers = opts["num_workers"]
    if workers is None:
        import os

        workers = 0 if dev.type == "cpu" else min(8, max(1, (os.cpu_count() or 2) // info.world))

    def save_state(epoch: int, step_in_epoch: int, losses_now: Sequence[float] = ()) -> None:
        if not info.is_main:
            return
        save_weights(net, run_dir / phase.last_file, config)
        st = {"phase": phase.name, **counters, "epoch": epoch, "step_in_epoch": step_in_epoch,
              "epoch_losses": list(losses_now) if step_in_epoch else [],
              "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "history": history,
              "torch_rng": torch.get_rng_state()}
        with atomic_path(run_dir / "optimizer.pt") as tmp:
            torch.save(st, tmp)

    net.train()
    while counters["epoch"] < n_epochs:
        epoch = counters["epoch"]
        items = shard(_epoch_items(phase, epoch, plan_size), info.rank, info.world)
        skip = counters["step_in_epoch"]
        ds = PatchDataset(phase.train_cases, items[skip * batch_size:], phase.cfg["patch_size"], phase.cfg["dims"],
                          attention=phase.attention, augment=augment, seed=seed, epoch=epoch)
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers,
                                             pin_memory=dev.type == "cuda")
        t0 = time.perf_counter()
        losses = list(counters.pop("epoch_losses", [])) if skip else []
        counters.pop("epoch_losses", None)
        seen = 0
        bar = tqdm(total=steps[epoch], initial=skip, desc=f"{phase.name} {epoch + 1}/{n_epochs}", unit="step",
                   disable=not (progress and info.is_main), leave=False, dynamic_ncols=True)
        stop_now = False
        for batch in loader:
            x = batch["image"].to(dev, non_blocking=True)
            y = batch["label"].to(dev, non_blocking=True)
            loss = forward_loss(model, x, y, loss_fn, cl_fn, float(opts["cldice"]), amp=amp)
            val = float(loss.detach())
            bad_loss, stop = D.all_sum(info, [0.0 if math.isfinite(val) else 1.0, 1.0 if interrupted[0] else 0.0])
            if bad_loss:
                bar.close()
                raise CorosegError(f"{phase.name}: training loss became {val} at epoch {epoch + 1} step "
                                   f"{counters['step_in_epoch'] + 1}; stopped, the last good checkpoint is kept "
                                   f"({phase.last_file}); try a lower --lr", run_dir)
            optimizer_step(loss, net, opt, sched, grad_clip=float(opts["grad_clip"] or 0.0))
            n = int(x.shape[0]) * info.world
            counters["step_in_epoch"] += 1
            counters["global_step"] += 1
            counters["patches"] += n
            seen += n
            losses.append(val)
            rate = seen / max(1e-9, time.perf_counter() - t0)
            bar.update(1)
            bar.set_postfix(loss=f"{val:.4f}", patches_s=f"{rate:.1f}")
            if stop:
                stop_now = True
                break
        bar.close()
        if stop_now:
            save_state(epoch, counters["step_in_epoch"], losses)
            D.barrier(info)
            raise TrainingInterrupted(f"interrupted at {phase.name} epoch {epoch + 1} step "
                                      f"{counters['step_in_epoch']}; state saved, continue with --resume", run_dir)
        secs = time.perf_counter() - t0
        mean_loss = D.all_sum(info, [float(np.mean(losses)) if losses else 0.0])[0] / info.world
        val_dice = float("nan")
        last_epoch = epoch + 1 == n_epochs
        if (epoch + 1) % val_every == 0 or last_epoch:
            val_dice = _validate(net, phase, info, amp, opts, run_dir)
        counters["epoch"] = epoch + 1
        counters["step_in_epoch"] = 0
        improved = False
        if not math.isnan(val_dice) and val_dice > counters["best"]:
            counters.update(best=val_dice, best_epoch=epoch + 1, bad=0)
            improved = True
        elif not math.isnan(val_dice):
            counters["bad"] += 1
        if not phase.val_cases:
            improved = True  # no validation cases: the latest weights are the "best"
        row = {"phase": phase.name, "epoch": epoch + 1, "step": counters["global_step"],
               "patches": counters["patches"], "train_loss": mean_loss, "val_dice": val_dice,
               "val_centerline": _val_centerline(phase) if not math.isnan(val_dice) else None,
               "lr": opt.param_groups[0]["lr"], "seconds": secs, "patches_per_s": seen / max(secs, 1e-9)}
        history.append(row)
        log.info("%s epoch %d/%d: loss %.4f, val Dice %s, %.1f patches/s", phase.name, epoch + 1, n_epochs,
                 mean_loss, "-" if math.isnan(val_dice) else f"{val_dice:.4f}", row["patches_per_s"])
        early = bool(early_stop) and counters["bad"] >= int(early_stop)
        if info.is_main:
            if improved:
                save_weights(net, run_dir / phase.best_file, config)
            save_state(epoch + 1, 0)
            write_metrics(run_dir / "metrics.csv", history)
            plot_curves(run_dir / "training_curves.png", history)
        if early:
            log.info("%s: early stop, no improvement in %d validations (best Dice %.4f at epoch %d)", phase.name,
                     int(early_stop), counters["best"], counters["best_epoch"])
            break
    if info.is_main:
        if not (run_dir / phase.best_file).exists():
            save_weights(net, run_dir / phase.best_file, config)
        if next_phase is not None:  # the next phase starts from scratch on resume
            st = _load_state(run_dir / "optimizer.pt")
            st.update(phase=next_phase, epoch=0, step_in_epoch=0, global_step=0, patches=0, best=-1.0,
                      best_epoch=-1, bad=0, history=history)
            st.pop("optimizer"), st.pop("scheduler")
            st["optimizer"], st["scheduler"] = None, None
            with atomic_path(run_dir / "optimizer.pt") as tmp:
                torch.save(st, tmp)
    D.barrier(info)


def forward_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn, cl_fn=None,
                 cldice_weight: float = 0.0, *, amp: bool = False) -> torch.Tensor:
    """The training loss of one batch: DiceCE on the logits (+ weighted clDice), bf16 autocast on CUDA."""
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=amp):
        logits = model(x)
    loss = loss_fn(logits.float(), y)
    if cl_fn is not None:
        loss = loss + cldice_weight * cl_fn(logits.float(), y)
    return loss


def optimizer_step(loss: torch.Tensor, net: torch.nn.Module, opt: torch.optim.Optimizer, sched=None, *,
                   grad_clip: float = 0.0) -> None:
    """Backward, optional gradient-norm clipping, optimizer and scheduler step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    opt.step()
    if sched is not None:
        sched.step()


def _val_centerline(phase: _Phase) -> str | None:
    """``metrics.csv`` ``val_centerline``: the prior a crop model is validated with."""
    if phase.attention is None:
        return None
    return "auto" if phase.cfg.get("locator") is not None else "reference"


def _validate(net: torch.nn.Module, phase: _Phase, info: D.DistInfo, amp: bool, opts: dict,
              run_dir: Path | None = None) -> float:
    """Mean Dice over the validation scans (this rank's share, summed over ranks), segmented by
    the code ``coroseg predict`` runs (:mod:`coroseg.train.validate`)."""
    from coroseg.train.validate import read_val_cases, validate_locator, validate_model

    batch = int(opts["val_batch"])
    if phase.val_cache is None:
        mine = phase.val_cases[info.rank::info.world]
        source = _val_centerline(phase) if phase.name == "model" and phase.cfg["sampler"] == "crop" else None
        locator = None
        if source == "auto":  # the trained locator (it trains first and is fixed from here on)
            locator = build_network(phase.cfg["locator"]["network"]).to(info.device)
            load_weights(locator, run_dir / phase.cfg["locator"]["weights"])
            locator.eval()
        phase.val_cache = read_val_cases(mine, centerline=source, locator=locator,
                                         loc_cfg=phase.cfg.get("locator"), device=info.device)
    if phase.name == "locator":
        scores = validate_locator(unwrap(net), phase.cfg, phase.val_cache, device=info.device, batch=batch)
    else:
        scores = validate_model(unwrap(net), phase.cfg, phase.val_cache, device=info.device, batch=batch,
                                centerline_source=_val_centerline(phase))
    total, count = D.all_sum(info, [float(sum(scores)), float(len(scores))])
    return total / count if count else float("nan")


__all__ = ["train", "DEFAULTS", "TrainingInterrupted", "forward_loss", "optimizer_step", "attention_settings"]

"""``train()``: fit one of the registry's models on a dataset folder and write a run folder.

This module is the orchestration: check the options (:class:`~coroseg.train.options.TrainOptions`),
set up the run folder, its log and Ctrl-C handling, read the dataset and its splits, write the
config (:func:`coroseg.train.phases.make_config`), and fit the run's phases in order
(:func:`coroseg.train.loop.fit`). Crop models first train their locator (a small coarse 3D grid
U-Net) in the same run folder, then the crop model, validated with the locator's centerline
(``val_centerline`` = ``auto`` in ``metrics.csv``; ``reference`` for a run without a locator),
so the checkpoint kept is the best at what ``predict`` ships.

Resume: ``optimizer.pt`` (:class:`~coroseg.train.state.TrainState`) holds the optimizer,
scheduler, counters, history and RNG state after each epoch (and on Ctrl-C mid-epoch, with the
number of steps done), so a resumed run replays exactly the batches the uninterrupted run would
have seen.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
from pathlib import Path

import torch

import coroseg
from coroseg.data.cache import case_statistics, prepare_cases
from coroseg.data.layouts import discover_cases, load_dataset
from coroseg.errors import CorosegError
from coroseg.io.atomic import atomic_path, write_json
from coroseg.models.registry import model_spec
from coroseg.models.run import read_config, write_config
from coroseg.train import distributed as D
from coroseg.train.loop import FitContext, TrainingInterrupted, fit, forward_loss, optimizer_step
from coroseg.train.options import DEFAULTS, TrainOptions, saved_options
from coroseg.train.phases import (
    FROM_INITIAL_MODEL,
    attention_input,
    fine_tune_config,
    locator_phase,
    main_phase,
    make_config,
    model_spacing,
    train_record,
)
from coroseg.train.state import TrainState

log = logging.getLogger("coroseg.train")

#: epochs when neither the command nor a resumed run says
DEFAULT_EPOCHS = 100
#: where a fine-tuned run keeps the weights it started from
INIT_FOLDER = "init"


def train(data_dir: str | Path, out_dir: str | Path, *, model: str = "unet3d_crop", epochs: int | None = None,
          batch_size: int = 2, attention: bool = True, patch_budget: int | None = None, device: str = "auto",
          resume: bool = False, seed: int = 0, val_every: int = 1, early_stop: int | None = 20, lr: float = 1e-3,
          progress: bool = True, init: str | Path | None = None, **overrides) -> Path:
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
    init : str or path, optional
        Fine-tune: start from this model's weights (``"builtin"``, an installed model's name or
        a run folder). The network, grid (spacing, patch size), intensity normalisation,
        attention, crop and locator settings come from it
        (:data:`~coroseg.train.phases.FROM_INITIAL_MODEL`); the data, splits, budget, learning
        rate, augmentation and the other training options from this call. Its weights are
        copied into the run folder (``init/``), so the run never depends on it again.
    **overrides
        Any field of :class:`~coroseg.train.options.TrainOptions` (:data:`DEFAULTS`).

    Returns
    -------
    Path
        The run folder.
    """
    if batch_size < 1 or (epochs is not None and epochs < 1) or val_every < 1:
        raise CorosegError(f"batch size, epochs and val-every must be >= 1, found {batch_size}, {epochs}, {val_every}")
    if patch_budget is not None and patch_budget < 1:
        raise CorosegError(f"patch budget must be >= 1, found {patch_budget}")
    opts = TrainOptions.from_dict(overrides)  # every value checked before any folder is made
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
                   early_stop=early_stop, lr=lr, progress=progress, opts=opts, init=init)
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


def _train(data_dir: Path, run_dir: Path, info: D.DistInfo, interrupted: list, *, model: str, epochs: int | None,
           batch_size: int, attention: bool, patch_budget: int | None, resume: bool, seed: int, val_every: int,
           early_stop: int | None, lr: float, progress: bool, opts: TrainOptions, init=None) -> None:
    state = None
    config = None
    if resume and init is not None:
        raise CorosegError("--init starts a new run from a model; --resume continues this one: give one of them")
    if resume:
        config = read_config(run_dir)
        if config.model != model:
            raise CorosegError(f"cannot resume: the run trains {config.model}, not {model}", run_dir / "config.json")
        state = TrainState.load(run_dir / "optimizer.pt")
        saved = saved_options(config.train.get("options", {}))
        opts = TrainOptions.from_dict(saved, base=opts)  # the saved run's options win
        attention, seed = config.attention, config.seed
        batch_size, lr = int(config.train["batch_size"]), float(config.train["lr"])
        epochs = int(config.train["epochs"]) if epochs is None else epochs
        patch_budget = config.train["patch_budget"] if patch_budget is None else patch_budget
    epochs = DEFAULT_EPOCHS if epochs is None else epochs
    layout, _ = discover_cases(data_dir)
    splits_file = run_dir / "splits.json"
    cases = load_dataset(data_dir, seed=seed, splits_file=splits_file if splits_file.exists() else None)
    train_cases = [c for c in cases if c.split == "train"]
    val_cases = [c for c in cases if c.split == "val"]
    if not train_cases:
        raise CorosegError("no training cases (split 'train' is empty)", data_dir)
    if info.is_main and not splits_file.exists():
        write_json(splits_file, {s: [c.case_id for c in cases if c.split == s] for s in ("train", "val", "test")})

    if config is None and init is not None:
        config = _fine_tune(init, run_dir, info, model=model, attention=attention, data_dir=data_dir, layout=layout,
                            seed=seed, record=dict(epochs=epochs, batch_size=batch_size, lr=lr,
                                                   patch_budget=patch_budget, world=info.world,
                                                   device=info.device.type, opts=opts))
    elif config is None:
        spec = model_spec(model, attention=attention)
        if opts.patch_size is not None:
            spec["patch_size"] = [int(v) for v in opts.patch_size]
        spacings, intensity = case_statistics(train_cases, seed=seed, reference=opts.reference_levels)
        config = make_config(spec, model_spacing(opts.spacing, spacings), intensity, data_dir, layout, seed, epochs,
                             batch_size, lr, patch_budget, info.world, info.device.type, opts)
        if info.is_main:
            write_config(run_dir, config)
    config = config.replace(status="running", train={**config.train, "epochs": epochs, "patch_budget": patch_budget})
    log.info("coroseg %s: training %s on %d cases (%d validation) from %s, spacing %s mm, world size %d, %s",
             coroseg.__version__, model, len(train_cases), len(val_cases), data_dir, list(config.spacing), info.world,
             info.device)

    tr = prepare_cases(train_cases, config.spacing, config.intensity, centerline=config.is_crop)
    torch.manual_seed(seed)
    init_dir = run_dir / INIT_FOLDER if "init" in config.train else None
    phases = {"model": main_phase(config, tr, val_cases, seed, epochs, patch_budget, opts, init_dir)}
    if config.locator is not None:
        phases["locator"] = locator_phase(config, train_cases, val_cases, seed, epochs, patch_budget, opts, init_dir)
    # the locator trains first, so the crop model is validated with the centerline predict will use
    # (runs written before this order was introduced resume in their own order)
    order = [phases[name] for name in config.train["phase_order"] if name in phases]
    start = 0 if state is None else [p.name for p in order].index(state.phase)
    state = TrainState(order[start].name) if state is None else state
    ctx = FitContext(run_dir, info, interrupted, config, opts, seed, batch_size, lr, val_every, early_stop, progress)
    stopped = dict(config.train.get("stopped", {}))  # a resumed run keeps what earlier phases said
    for n, phase in enumerate(order[start:], start):
        state, stopped[phase.name] = fit(phase, ctx, state)
        config = config.replace(train={**config.train, "stopped": dict(stopped)})
        if info.is_main:  # kept at once: a run resumed in its next phase still says why this one ended
            write_config(run_dir, config)
        if n + 1 < len(order):  # the next phase starts from scratch, also on resume
            state = state.next_phase(order[n + 1].name)
            if info.is_main:
                state.save(run_dir / "optimizer.pt")
            D.barrier(info)
    if info.is_main:
        write_config(run_dir, config.replace(status="complete"))
        log.info("done: run folder %s", run_dir)


def _fine_tune(init, run_dir: Path, info: D.DistInfo, *, model: str, attention: bool, data_dir: Path, layout: str,
               seed: int, record: dict):
    """The config of a run started from ``init``'s weights, which are copied into ``run_dir/init/``.

    ``record``: the keyword arguments of :func:`~coroseg.train.phases.train_record` but the locator's.
    """
    from coroseg.models.store import model_identity, resolve_model

    source = resolve_model(init)
    base = read_config(source)
    files = ["model.safetensors"] + ([base.locator.weights] if base.locator is not None else [])
    init_record = {"from": str(init), **model_identity(source), "kept": list(FROM_INITIAL_MODEL)}
    config = fine_tune_config(base, model=model, attention=attention, data_dir=data_dir, layout=layout, seed=seed,
                              record=train_record(**record, has_locator=base.locator is not None, init=init_record))
    if info.is_main:
        (run_dir / INIT_FOLDER).mkdir(parents=True, exist_ok=True)
        for name in files:
            with atomic_path(run_dir / INIT_FOLDER / name) as tmp:
                shutil.copyfile(source / name, tmp)
        write_config(run_dir, config)
    D.barrier(info)
    log.info("fine-tuning from %s (%s): %s from the initial model, everything else from this run", init, source,
             ", ".join(FROM_INITIAL_MODEL))
    return config

__all__ = ["train", "DEFAULTS", "DEFAULT_EPOCHS", "TrainingInterrupted", "forward_loss", "optimizer_step",
           "attention_input"]

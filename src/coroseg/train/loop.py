"""The training loop of one phase: :func:`fit` = set-up, then per epoch a train pass and its end.

An epoch is a deterministic *plan* of patches (:mod:`coroseg.data.sampling`) served by a plain
``DataLoader``; the step is Dice+CE (optionally + soft clDice) with AdamW, linear warm-up then
cosine decay, the arithmetic of the ``precision`` option (bf16 autocast on GPU by default; fp16
with a gradient scaler) and gradient clipping; one loader per phase keeps its workers
(:mod:`coroseg.train.loader`); ``compile`` and ``channels_last`` are opt-in. At the end of an epoch the phase is
validated on whole scans by the code ``predict`` runs (:mod:`coroseg.train.validate`), the best
weights are kept, ``optimizer.pt`` (:class:`~coroseg.train.state.TrainState`) is saved and
early stopping is decided. Ctrl-C stops after the current step with the state saved; a loss
that stops being finite stops every rank at the same step, with the last good checkpoint kept.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from coroseg.data.augment import build_augmentation
from coroseg.data.sampling import PatchDataset, shard
from coroseg.errors import CorosegError
from coroseg.models.config import RunConfig
from coroseg.models.registry import build_network
from coroseg.models.run import load_weights, save_weights, unwrap
from coroseg.train import distributed as D
from coroseg.train.curves import plot_curves, write_metrics
from coroseg.train.loader import PlanSampler, default_workers, make_loader
from coroseg.train.options import TrainOptions
from coroseg.train.phases import Phase
from coroseg.train.precision import autocast, autocast_dtype, grad_scaler
from coroseg.train.state import TrainState

log = logging.getLogger("coroseg.train")


class TrainingInterrupted(CorosegError):
    """Ctrl-C (SIGINT): the state was saved; ``--resume`` continues."""

    exit_code = 130


@dataclasses.dataclass
class FitContext:
    """What every phase of a run shares: where it writes, the processes, and the run's settings."""

    run_dir: Path
    info: D.DistInfo
    interrupted: list             # [True] once Ctrl-C was pressed
    config: RunConfig
    opts: TrainOptions
    seed: int
    batch_size: int
    lr: float
    val_every: int
    early_stop: int | None
    progress: bool


@dataclasses.dataclass
class _Fitting:
    """The live objects of one phase's fit."""

    net: torch.nn.Module
    model: torch.nn.Module        # net, or its DDP / torch.compile wrapper
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    steps: list[int]              # optimizer steps of each epoch
    plan_size: int
    dtype: torch.dtype | None     # autocast dtype (None: fp32)
    scaler: torch.amp.GradScaler | None
    memory_format: torch.memory_format


def fit(phase: Phase, ctx: FitContext, state: TrainState) -> tuple[TrainState, str]:
    """Train ``phase`` from ``state`` (fresh or resumed) to its end.

    Returns the state it ends in and why it stopped (early stopping, its patch budget or its
    epochs), the line ``config.json`` keeps under ``train.stopped``.
    """
    from monai.losses import DiceCELoss, SoftclDiceLoss

    info, opts = ctx.info, ctx.opts
    run = _set_up(phase, ctx, state)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    cl_fn = (SoftclDiceLoss(to_onehot_y=True, softmax=True, include_background=False)
             if phase_cldice_weight(phase.name, opts) else None)
    strength = opts.augment
    if phase.name == "locator" and opts.locator_augment is not None:
        strength = opts.locator_augment
    augment = build_augmentation(phase.cfg.dims, strength=strength, prior=phase.attention is not None)
    workers = opts.num_workers
    if workers is None:
        workers = default_workers(info.device, info.world, os.cpu_count())
    dataset = PatchDataset(phase.train_cases, [], phase.cfg.patch_size, phase.cfg.dims, attention=phase.attention,
                           augment=augment, seed=ctx.seed)
    loader, sampler = make_loader(dataset, batch_size=ctx.batch_size, device=info.device, workers=workers,
                                  seed=ctx.seed)
    run.net.train()
    reason = (f"patch budget reached ({phase.budget} patches)" if phase.budget is not None
              else f"all {len(run.steps)} epochs done")
    try:
        while state.epoch < len(run.steps):
            losses, seen, secs, stopped = _train_epoch(phase, ctx, state, run, loss_fn, cl_fn, loader, sampler)
            if stopped:
                _save(phase, ctx, state, run, losses)
                D.barrier(info)
                raise TrainingInterrupted(f"interrupted at {phase.name} epoch {state.epoch + 1} step "
                                          f"{state.step_in_epoch}; state saved, continue with --resume", ctx.run_dir)
            if _end_epoch(phase, ctx, state, run, losses, seen, secs):
                reason = (f"early stop at epoch {state.epoch}: no improvement in {ctx.early_stop} validations "
                          f"(best Dice {state.best:.4f} at epoch {state.best_epoch})")
                break
    finally:
        del loader  # its persistent workers end with it
    if info.is_main and not (ctx.run_dir / phase.best_file).exists():
        save_weights(run.net, ctx.run_dir / phase.best_file, ctx.config)
    D.barrier(info)
    log.info("%s: %s", phase.name, reason)
    if phase.val_cases and state.best == 0.0:
        log.warning("%s: validation Dice stayed 0 — the network predicts no vessel (loss %.3f); give it more "
                    "patches (--patch-budget), another --lr or another --seed", phase.name,
                    state.history[-1]["train_loss"] if state.history else float("nan"))
    return state, reason


def _set_up(phase: Phase, ctx: FitContext, state: TrainState) -> _Fitting:
    """Network, optimizer and warm-up + cosine schedule; restored from ``state`` when it holds them."""
    dev = ctx.info.device
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(ctx.seed)
    net = build_network(phase.net_cfg).to(dev)
    plan_size = len(phase.plan(0))
    if plan_size == 0:
        raise CorosegError(f"{phase.name}: no training patches (no centerline points / empty cases?)",
                           ctx.run_dir / "config.json")
    n_epochs = phase.epochs if phase.budget is None else max(1, math.ceil(phase.budget / plan_size))
    # every epoch's plan has the same size, so steps follow from it without building the plans
    steps = [math.ceil(math.ceil(phase.epoch_len(e, plan_size) / ctx.info.world) / ctx.batch_size)
             for e in range(n_epochs)]
    total_steps = max(1, sum(steps))
    opt = torch.optim.AdamW(net.parameters(), lr=ctx.lr, weight_decay=ctx.opts.weight_decay)
    warm = max(1, int(round(ctx.opts.warmup_frac * total_steps)))

    def lr_lambda(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, total_steps - warm))
        return 0.5 * (1.0 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    dtype = autocast_dtype(ctx.opts.precision, dev)
    scaler = grad_scaler(dev, dtype)
    if state.optimizer is None and phase.init_weights is not None:  # fine-tuning: start from the initial model
        load_weights(net, phase.init_weights)
        log.info("%s: starting from %s", phase.name, phase.init_weights)
    if state.optimizer is not None:
        load_weights(net, ctx.run_dir / phase.last_file)
        opt.load_state_dict(state.optimizer)
        sched.load_state_dict(state.scheduler)
        torch.set_rng_state(state.torch_rng)
        if scaler is not None and state.scaler:
            scaler.load_state_dict(state.scaler)
        log.info("%s: resumed at epoch %d step %d", phase.name, state.epoch, state.step_in_epoch)
    memory_format = torch.contiguous_format
    if ctx.opts.channels_last:
        memory_format = torch.channels_last_3d if phase.cfg.dims == 3 else torch.channels_last
        net = net.to(memory_format=memory_format)
    model = net
    if ctx.info.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)
    if ctx.opts.compile:
        model = torch.compile(model)
    return _Fitting(net, model, opt, sched, steps, plan_size, dtype, scaler, memory_format)


def _train_epoch(phase: Phase, ctx: FitContext, state: TrainState, run: _Fitting, loss_fn, cl_fn,
                 loader: torch.utils.data.DataLoader, sampler: PlanSampler) -> tuple[list[float], int, float, bool]:
    """One pass over this rank's share of the epoch's plan (from the step a resume stopped at).

    Returns the step losses, patches seen (all ranks), seconds, and whether Ctrl-C stopped it.
    """
    from tqdm import tqdm

    info, dev, bs = ctx.info, ctx.info.device, ctx.batch_size
    epoch, skip = state.epoch, state.step_in_epoch
    items = shard(phase.epoch_items(epoch, run.plan_size), info.rank, info.world)
    sampler.set_epoch(epoch, items[skip * bs:])
    losses = list(state.epoch_losses) if skip else []
    state.epoch_losses = []
    seen, t0 = 0, time.perf_counter()
    bar = tqdm(total=run.steps[epoch], initial=skip, desc=f"{phase.name} {epoch + 1}/{len(run.steps)}", unit="step",
               disable=None if (ctx.progress and info.is_main) else True,  # None: off when stderr is no TTY
               leave=False, dynamic_ncols=True)
    try:
        for batch in loader:
            x = batch["image"].to(dev, non_blocking=True).contiguous(memory_format=run.memory_format)
            y = batch["label"].to(dev, non_blocking=True)
            loss = forward_loss(run.model, x, y, loss_fn, cl_fn, phase_cldice_weight(phase.name, ctx.opts),
                                dtype=run.dtype)
            val = float(loss.detach())
            bad_loss, stop = D.all_sum(info, [0.0 if math.isfinite(val) else 1.0, 1.0 if ctx.interrupted[0] else 0.0])
            if bad_loss:
                raise CorosegError(f"{phase.name}: training loss became {val} at epoch {epoch + 1} step "
                                   f"{state.step_in_epoch + 1}; stopped, the last good checkpoint is kept "
                                   f"({phase.last_file}); try a lower --lr", ctx.run_dir)
            optimizer_step(loss, run.net, run.opt, run.sched, grad_clip=ctx.opts.grad_clip, scaler=run.scaler)
            n = int(x.shape[0]) * info.world
            state.step_in_epoch += 1
            state.global_step += 1
            state.patches += n
            seen += n
            losses.append(val)
            bar.update(1)
            bar.set_postfix(loss=f"{val:.4f}", patches_s=f"{seen / max(1e-9, time.perf_counter() - t0):.1f}")
            if stop:
                return losses, seen, time.perf_counter() - t0, True
    finally:
        bar.close()  # before any error line, so the bar does not redraw after it
    return losses, seen, time.perf_counter() - t0, False


def _end_epoch(phase: Phase, ctx: FitContext, state: TrainState, run: _Fitting, losses: Sequence[float], seen: int,
               secs: float) -> bool:
    """Validate, record, checkpoint; True when early stopping ends the phase."""
    info, epoch = ctx.info, state.epoch
    mean_loss = D.all_sum(info, [float(np.mean(losses)) if losses else 0.0])[0] / info.world
    val_dice = float("nan")
    if (epoch + 1) % ctx.val_every == 0 or epoch + 1 == len(run.steps):
        val_dice = validate_phase(run.net, phase, ctx)
    state.epoch, state.step_in_epoch = epoch + 1, 0
    improved = not phase.val_cases  # no validation cases: the latest weights are the "best"
    if not math.isnan(val_dice) and val_dice > state.best:
        state.best, state.best_epoch, state.bad = val_dice, epoch + 1, 0
        improved = True
    elif not math.isnan(val_dice):
        state.bad += 1
    row = {"phase": phase.name, "epoch": epoch + 1, "step": state.global_step, "patches": state.patches,
           "train_loss": mean_loss, "val_dice": val_dice,
           "val_centerline": phase.val_centerline if not math.isnan(val_dice) else None,
           "lr": run.opt.param_groups[0]["lr"], "seconds": secs, "patches_per_s": seen / max(secs, 1e-9)}
    state.history.append(row)
    log.info("%s epoch %d/%d: loss %.4f, %s %s, %.1f patches/s", phase.name, epoch + 1, len(run.steps), mean_loss,
             phase.val_label, "-" if math.isnan(val_dice) else f"{val_dice:.4f}",
             row["patches_per_s"])
    if info.is_main:
        if improved:
            save_weights(run.net, ctx.run_dir / phase.best_file, ctx.config)
        _save(phase, ctx, state, run)
        write_metrics(ctx.run_dir / "metrics.csv", state.history)
        plot_curves(ctx.run_dir / "training_curves.png", state.history)
    if ctx.early_stop and state.bad >= int(ctx.early_stop):
        log.info("%s: early stop, no improvement in %d validations (best Dice %.4f at epoch %d)", phase.name,
                 int(ctx.early_stop), state.best, state.best_epoch)
        return True
    return False


def _save(phase: Phase, ctx: FitContext, state: TrainState, run: _Fitting, losses_now: Sequence[float] = ()) -> None:
    """The last weights and ``optimizer.pt`` (rank 0); ``losses_now``: those of a half-finished epoch."""
    if not ctx.info.is_main:
        return
    save_weights(run.net, ctx.run_dir / phase.last_file, ctx.config)
    state.epoch_losses = list(losses_now) if state.step_in_epoch else []
    state.optimizer, state.scheduler = run.opt.state_dict(), run.sched.state_dict()
    state.scaler = run.scaler.state_dict() if run.scaler is not None else None
    state.torch_rng = torch.get_rng_state()
    state.save(ctx.run_dir / "optimizer.pt")


def phase_cldice_weight(phase_name: str, opts) -> float:
    """The soft clDice weight of a phase: ``locator_cldice`` for the locator when set, else ``cldice``."""
    if phase_name == "locator" and opts.locator_cldice is not None:
        return float(opts.locator_cldice)
    return float(opts.cldice)


def forward_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn, cl_fn=None,
                 cldice_weight: float = 0.0, *, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The training loss of one batch: DiceCE on the logits (+ weighted clDice), the network under
    ``dtype`` autocast (None: fp32); the losses are computed in fp32."""
    with autocast(x.device, dtype):
        logits = model(x)
    loss = loss_fn(logits.float(), y)
    if cl_fn is not None:
        loss = loss + cldice_weight * cl_fn(logits.float(), y)
    return loss


def optimizer_step(loss: torch.Tensor, net: torch.nn.Module, opt: torch.optim.Optimizer, sched=None, *,
                   grad_clip: float = 0.0, scaler: torch.amp.GradScaler | None = None) -> None:
    """Backward, optional gradient-norm clipping, optimizer and scheduler step.

    With a ``scaler`` (fp16) the loss is scaled before backward and the gradients unscaled
    before clipping; a step whose gradients overflowed is skipped and the scale lowered.
    """
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
    else:
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    if scaler is None:
        opt.step()
    else:
        scaler.step(opt)
        scaler.update()
    if sched is not None:
        sched.step()


def validate_phase(net: torch.nn.Module, phase: Phase, ctx: FitContext) -> float:
    """Mean Dice over the validation scans (this rank's share, summed over ranks), segmented by
    the code ``coroseg predict`` runs (:mod:`coroseg.train.validate`)."""
    from coroseg.train.validate import read_val_cases, validate_locator, validate_model

    info, batch = ctx.info, ctx.opts.val_batch
    if phase.val_cache is None:
        mine = phase.val_cases[info.rank::info.world]
        source = phase.val_centerline if phase.name == "model" and phase.cfg.is_crop else None
        locator = None
        if source == "auto":  # the trained locator (it trains first and is fixed from here on)
            locator = build_network(phase.cfg.locator.network).to(info.device)
            load_weights(locator, ctx.run_dir / phase.cfg.locator.weights)
            locator.eval()
        phase.val_cache = read_val_cases(mine, centerline=source, locator=locator,
                                         loc_cfg=phase.cfg.locator if phase.name == "model" else None,
                                         device=info.device)
    if phase.name == "locator":
        scores = validate_locator(unwrap(net), phase.cfg, phase.val_cache, device=info.device, batch=batch)
    else:
        scores = validate_model(unwrap(net), phase.cfg, phase.val_cache, device=info.device, batch=batch,
                                centerline_source=phase.val_centerline)
    total, count = D.all_sum(info, [float(sum(scores)), float(len(scores))])
    return total / count if count else float("nan")


__all__ = ["fit", "FitContext", "TrainingInterrupted", "forward_loss", "optimizer_step", "validate_phase"]

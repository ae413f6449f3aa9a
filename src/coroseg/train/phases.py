"""What a run trains: its config (:func:`make_config`) and its phases (the model, and crop models' locator).

A :class:`Phase` is everything one fit needs: the network settings, the config ``predict``
will read (the run's :class:`~coroseg.models.config.RunConfig`, or its
:class:`~coroseg.models.config.LocatorConfig`), the prepared training cases, the deterministic
patch plan of each epoch, the validation scans and the file names of its weights. The
locator's target is the label resampled with linear interpolation and a low threshold
(:func:`coroseg.data.cache.coarse_label`): with nearest neighbour, 1-2 mm coronaries fall apart
into dozens of fragments on a coarser grid and the locator learned nothing (validation Dice 0).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

import coroseg
from coroseg.data.cache import PreparedCase, prepare_cases
from coroseg.data.layouts import Case
from coroseg.data.preprocess import target_spacing
from coroseg.data.sampling import AttentionInput, PatchItem, crop_centres_for_case, crop_plan, grid_plan
from coroseg.errors import CorosegError
from coroseg.models.config import AttentionSettings, CropSettings, LocatorConfig, RunConfig
from coroseg.models.registry import network_config
from coroseg.train.options import TrainOptions

log = logging.getLogger("coroseg.train")


@dataclasses.dataclass
class Phase:
    """What one fit needs: the main model or the locator."""

    name: str                     # "model" or "locator"
    net_cfg: dict
    cfg: RunConfig | LocatorConfig  # what predict reads for this network
    train_cases: list[PreparedCase]
    val_cases: list[Case]         # validation scans, segmented whole by coroseg.infer (train/validate.py)
    plan: Callable[[int], list[PatchItem]]
    attention: AttentionInput | None
    best_file: str
    last_file: str
    budget: int | None            # total patches (None: epochs x plan size)
    epochs: int
    val_cache: list | None = None    # this rank's ValCase list (scan, label, prior), read at first use
    init_weights: Path | None = None  # fine-tuning: the initial model's weights for this network

    @property
    def val_centerline(self) -> str | None:
        """``metrics.csv`` ``val_centerline``: the prior a crop model is validated with."""
        if self.attention is None:
            return None
        return "auto" if self.cfg.locator is not None else "reference"

    @property
    def val_label(self) -> str:
        """``"val Dice (automatic centerline)"``, ``"(ORACLE centerline)"`` or ``"(whole volume)"``: how the
        epoch line names this phase's validation Dice, as the curves and the report do."""
        from coroseg.train.curves import val_label

        return val_label([{"val_centerline": self.val_centerline}])

    def epoch_len(self, epoch: int, plan_size: int) -> int:
        """Patches in ``epoch``: the plan size, cut by the remaining patch budget."""
        return plan_size if self.budget is None else min(plan_size, max(0, self.budget - epoch * plan_size))

    def epoch_items(self, epoch: int, plan_size: int) -> list[PatchItem]:
        return self.plan(epoch)[: self.epoch_len(epoch, plan_size)]


def model_spacing(choice, spacings: Sequence[Sequence[float]]) -> tuple[float, float, float]:
    """The model spacing (array order, mm) for the ``spacing`` option.

    ``None``/``"median"``: the training cases' median (nnU-Net's choice). ``"min"``: the finest
    spacing per axis over the training cases, so no training case is down-sampled; worth its
    cost for vessels one or two voxels wide, where resampling to a coarser grid and back alone
    loses several Dice points. ``[z, y, x]``: that spacing.
    """
    if choice is None or choice == "median":
        return target_spacing(spacings)
    if choice == "min":
        return tuple(float(round(v, 6)) for v in np.asarray(spacings, float).min(0))
    return tuple(float(v) for v in choice)


def make_config(spec: dict, spacing, intensity: dict, data_dir: Path, layout: str, seed: int, epochs: int,
                batch_size: int, lr: float, patch_budget: int | None, world: int, device: str,
                opts: TrainOptions) -> RunConfig:
    """The run's config (what ``predict`` reads and ``--resume`` restores) for a new run."""
    net = network_config(spec, channels=opts.channels, strides=opts.strides, num_res_units=opts.num_res_units,
                         norm=opts.norm, dropout=opts.dropout)
    locator = None
    if spec["sampler"] == "crop" and opts.locator:
        lsp = opts.locator_spacing or [opts.locator_spacing_factor * s for s in spacing]
        locator = LocatorConfig(
            spacing=tuple(float(s) for s in lsp), patch_size=tuple(int(v) for v in opts.locator_patch),
            network=network_config({"dims": 3, "in_channels": 1}, channels=opts.locator_channels, num_res_units=1,
                                   norm=opts.norm),
            intensity=intensity, label="coverage")
    record = train_record(epochs=epochs, batch_size=batch_size, lr=lr, patch_budget=patch_budget, world=world,
                          device=device, opts=opts, has_locator=locator is not None)
    raw = RunConfig(
        model=spec["name"], dims=spec["dims"], sampler=spec["sampler"], attention=spec["attention"],
        in_channels=spec["in_channels"], patch_size=tuple(spec["patch_size"]),
        spacing=tuple(float(s) for s in spacing), intensity=intensity, network=net, locator=locator,
        attention_cfg=AttentionSettings(mode=opts.attention_mode, dilation_mm=float(opts.attention_dilation_mm),
                                        perturb_in_training=opts.perturb),
        crop=CropSettings(method=opts.crop_method, jitter=opts.crop_jitter), seed=int(seed), status="running",
        coroseg_version=coroseg.__version__, train=record, data={"root": str(data_dir), "layout": layout})
    return RunConfig.from_dict(raw.to_dict())  # checked (and typed) as every reader will see it


def train_record(*, epochs: int, batch_size: int, lr: float, patch_budget: int | None, world: int, device: str,
                 opts: TrainOptions, has_locator: bool, init: dict | None = None) -> dict:
    """``config.json``'s ``train`` block: how the run was trained (``--resume`` reads it back)."""
    def term(weight: float) -> str:
        return "DiceCE" + (f"+{weight}*clDice" if weight else "")

    loss = term(opts.cldice)
    if opts.locator_cldice not in (None, opts.cldice):
        loss += f" (locator: {term(opts.locator_cldice)})"
    record = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "patch_budget": patch_budget,
              "world_size": world, "device": device, "loss": loss,
              "optimizer": "AdamW", "schedule": "warmup+cosine", "options": opts.to_dict(),
              "phase_order": ["locator", "model"] if has_locator else ["model"]}
    if init is not None:
        record["init"] = init
    return record


#: what a fine-tuned run takes from its initial model (everything that shapes the network or
#: its input); the data, splits, budget, learning rate, augmentation and every other training
#: option come from the new run
FROM_INITIAL_MODEL = ("network", "patch_size", "spacing", "intensity", "attention_cfg", "crop", "locator")


def fine_tune_config(base: RunConfig, *, model: str, attention: bool, data_dir: Path, layout: str, seed: int,
                     record: dict) -> RunConfig:
    """The config of a run that starts from ``base``'s weights (``coroseg train --init``).

    Keeps :data:`FROM_INITIAL_MODEL` of ``base``; refuses another architecture in one line.
    """
    def name(arch: str, with_attention: bool) -> str:
        return arch + (" without attention" if arch.endswith("_crop") and not with_attention else "")

    wanted = attention and model.endswith("_crop")
    if base.model != model or base.attention != wanted:
        raise CorosegError(f"--init: the initial model is a {name(base.model, base.attention)}; it cannot start a "
                           f"{name(model, wanted)} (--model, --no-attention)")
    return base.replace(status="running", seed=int(seed), coroseg_version=coroseg.__version__, train=record,
                        data={"root": str(data_dir), "layout": layout})

def attention_input(opts: TrainOptions) -> AttentionInput:
    """The attention-channel settings PatchDataset takes, from the training options."""
    return AttentionInput(mode=opts.attention_mode, dilation_mm=float(opts.attention_dilation_mm),
                          perturb=opts.perturb, spurious=opts.spurious_branches, dropout=float(opts.attention_dropout),
                          perturb_kwargs=dict(opts.perturb_kwargs or {}))


def main_phase(config: RunConfig, tr: list[PreparedCase], val_cases: Sequence[Case], seed: int, epochs: int,
               patch_budget: int | None, opts: TrainOptions, init_dir: Path | None = None) -> Phase:
    patch = list(config.patch_size)
    att = attention_input(opts) if config.attention else None
    if config.is_crop:
        centres = [crop_centres_for_case(c, patch, method=opts.crop_method, seed=seed) for c in tr]
        log.info("crop centres per training case: %s", [len(c) for c in centres])

        def plan(epoch: int) -> list[PatchItem]:
            return crop_plan(tr, centres, patch, seed=seed, epoch=epoch, jitter=opts.crop_jitter,
                             repeats=opts.crop_repeats, per_case=opts.crops_per_case)
    else:
        def plan(epoch: int) -> list[PatchItem]:
            return grid_plan(tr, patch, samples_per_case=opts.samples_per_case, seed=seed, epoch=epoch,
                             fg_fraction=opts.fg_fraction)
    return Phase("model", config.network, config, tr, list(val_cases), plan, att, "model.safetensors",
                 "last.safetensors", patch_budget, epochs,
                 init_weights=None if init_dir is None else init_dir / "model.safetensors")


def locator_phase(config: RunConfig, train_cases: Sequence[Case], val_cases: Sequence[Case], seed: int, epochs: int,
                  patch_budget: int | None, opts: TrainOptions, init_dir: Path | None = None) -> Phase:
    loc = config.locator
    if loc is None:
        raise CorosegError("this run has no locator to train (config 'locator' is null)")
    tr = prepare_cases(train_cases, loc.spacing, loc.intensity, centerline=False, label_mode=loc.label)

    def plan(epoch: int) -> list[PatchItem]:
        return grid_plan(tr, list(loc.patch_size), samples_per_case=opts.locator_samples_per_case, seed=seed + 1,
                         epoch=epoch, fg_fraction=opts.fg_fraction)
    budget = opts.locator_budget if opts.locator_budget is not None else patch_budget
    return Phase("locator", loc.network, loc, tr, list(val_cases), plan, None, loc.weights,
                 "locator_last.safetensors", budget, epochs,
                 init_weights=None if init_dir is None else init_dir / loc.weights)


__all__ = ["Phase", "make_config", "model_spacing", "attention_input", "main_phase", "locator_phase", "train_record",
           "fine_tune_config", "FROM_INITIAL_MODEL"]

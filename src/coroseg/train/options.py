"""Training options: :class:`TrainOptions` (every tunable, its default and its check, once) and ``--set``.

``--set KEY=VALUE`` values are JSON (``--set channels=[8,16,32]``, ``--set cldice=0.5``); a
value that is not JSON is taken as a string (``--set crop_method=dbscan``). Keys are the fields
of :class:`TrainOptions`; a key that is an argument of its own (``--model``, ``--seed``) is
refused with a pointer to that option rather than reaching :func:`coroseg.train.train` twice.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
from collections.abc import Mapping
from typing import Any

from coroseg.errors import CorosegError
from coroseg.models.registry import CHANNELS, MAX_CHANNELS, MAX_LEVELS, MAX_PATCH, MAX_STRIDE, NORMS, SPACING_RANGE_MM

#: keyword arguments of :func:`coroseg.train.train` that have options of their own
TRAIN_OPTIONS = ("data", "out", "model", "epochs", "batch_size", "attention", "patch_budget", "device", "resume",
                 "seed", "lr", "val_every", "early_stop", "progress", "init")
#: longest --set value accepted (a JSON list of a few hundred numbers fits many times over)
MAX_VALUE_CHARS = 10_000
#: options older run folders may carry that no longer exist (dropped on resume): they had no effect
REMOVED_OPTIONS = ("val_overlap",)
#: options replaced by others: old name -> (new name, the new value for an old one)
RENAMED_OPTIONS = {"amp": ("precision", lambda amp: "auto" if amp else "fp32")}


def _range(lo: float, hi: float, *, whole: bool = False, nullable: bool = False) -> dict:
    return {"range": (lo, hi, whole, nullable)}


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Every training option with its default; construction checks every value.

    ``TrainOptions(cldice="x")`` raises ``CorosegError("training option cldice='x': expected a
    number >= 0 and <= 100")``: a typo in ``--set`` fails before any folder is made, not
    minutes later as a traceback deep in sampling code. The upper bounds keep a typo from
    running for days.
    """

    weight_decay: float = dataclasses.field(default=1e-4, metadata=_range(0, 10))
    warmup_frac: float = dataclasses.field(default=0.05, metadata=_range(0, 1))   # share of steps warming up
    grad_clip: float = dataclasses.field(default=5.0, metadata=_range(0, 1e6))    # max global gradient norm
    # grid models: patches per training case per epoch, share centred on a foreground voxel
    samples_per_case: int = dataclasses.field(default=16, metadata=_range(1, 10_000, whole=True))
    fg_fraction: float = dataclasses.field(default=0.5, metadata=_range(0, 1))
    # crop models: clustering, random shift of the centres (fraction of the patch size), times each
    # centre is used per epoch, at most this many crops of a case per epoch (None: all)
    crop_method: str = dataclasses.field(default="kmeans", metadata={"choices": "crop_methods"})
    crop_jitter: float = dataclasses.field(default=0.125, metadata=_range(0, 0.5))
    crop_repeats: int = dataclasses.field(default=1, metadata=_range(1, 1000, whole=True))
    crops_per_case: int | None = dataclasses.field(default=None, metadata=_range(1, 100_000, whole=True,
                                                                                   nullable=True))
    augment: float = dataclasses.field(default=1.0, metadata=_range(0, 10))       # strength, 0 = off
    # map every scan's fat and blood-pool levels onto fixed HU before normalising (coroseg.data.levels)
    reference_levels: bool = dataclasses.field(default=False, metadata={"bool": True})
    cldice: float = dataclasses.field(default=0.0, metadata=_range(0, 100))       # soft clDice weight (0 = off)
    # data-loader workers (None: 0 on CPU, min(8, cpus/world) on GPU)
    num_workers: int | None = dataclasses.field(default=None, metadata=_range(0, 256, whole=True, nullable=True))
    channels: list = dataclasses.field(default_factory=lambda: list(CHANNELS), metadata={"levels": True})
    strides: list | None = dataclasses.field(default=None, metadata={"strides": True})
    num_res_units: int = dataclasses.field(default=2, metadata=_range(0, 8, whole=True))
    norm: str = dataclasses.field(default="instance", metadata={"choices": "norms"})
    dropout: float = dataclasses.field(default=0.0, metadata=_range(0, 1))
    patch_size: list | None = dataclasses.field(default=None, metadata={"patch": True})  # [z, y, x]; None: registry
    # model spacing: None/"median" (nnU-Net), "min" (finest training case), or [z, y, x] mm
    spacing: Any = dataclasses.field(default=None, metadata={"spacing": ("median", "min")})
    attention_dilation_mm: float = dataclasses.field(default=1.0, metadata=_range(0, 50))
    attention_mode: str = dataclasses.field(default="gaussian", metadata={"choices": "attention_modes"})
    perturb: bool = dataclasses.field(default=True, metadata={"bool": True})  # perturb the training centerline
    # arguments of coroseg.prior.sample_perturbation (None: its defaults)
    perturb_kwargs: dict | None = dataclasses.field(default=None, metadata={"perturb": True})
    # fake centerline pieces added per case and epoch (teach: attention is not a vessel)
    spurious_branches: int = dataclasses.field(default=0, metadata=_range(0, 100, whole=True))
    # share of crops trained with an empty attention channel (teach: vessels the centerline
    # missed are still vessels, so crops at its gaps find them)
    attention_dropout: float = dataclasses.field(default=0.0, metadata=_range(0, 1))
    val_batch: int = dataclasses.field(default=4, metadata=_range(1, 1024, whole=True))
    # training arithmetic: auto = bf16 autocast on CUDA, fp32 on CPU; bf16 / fp16 (+ gradient scaler) / fp32
    precision: str = dataclasses.field(default="auto", metadata={"choices": "precisions"})
    compile: bool = dataclasses.field(default=False, metadata={"bool": True})  # torch.compile the training step
    # channels-last memory layout (NDHWC): faster convolutions on tensor-core GPUs, not on CPUs
    channels_last: bool = dataclasses.field(default=False, metadata={"bool": True})
    locator: bool = dataclasses.field(default=True, metadata={"bool": True})       # crop models: train a locator
    # [z, y, x] mm; None: locator_spacing_factor x model spacing
    locator_spacing: list | None = dataclasses.field(default=None, metadata={"spacing": ()})
    locator_spacing_factor: float = dataclasses.field(default=1.5, metadata=_range(0.1, 10))
    locator_channels: list = dataclasses.field(default_factory=lambda: [8, 16, 32, 64], metadata={"levels": True})
    locator_patch: list = dataclasses.field(default_factory=lambda: [64, 64, 64], metadata={"patch": True})
    locator_samples_per_case: int = dataclasses.field(default=16, metadata=_range(1, 10_000, whole=True))
    # patches for the locator; None: the same epochs / budget as the main model
    locator_budget: int | None = dataclasses.field(default=None, metadata=_range(1, 10_000_000, whole=True,
                                                                                   nullable=True))
    # the locator's augmentation strength; None: ``augment`` (the locator alone must detect vessels
    # on a scan unlike the training set, the crop model is guided by its attention channel)
    locator_augment: float | None = dataclasses.field(default=None, metadata=_range(0, 10, nullable=True))
    # the locator's soft clDice weight; None: ``cldice`` (a topology term against the locator's mask
    # breaking into pieces along thin segments, which the size rule then drops)
    locator_cldice: float | None = dataclasses.field(default=None, metadata=_range(0, 100, nullable=True))

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            problem = _field_problem(f, getattr(self, f.name), self)
            if problem:
                raise CorosegError(f"training option {f.name}={getattr(self, f.name)!r:.80}: expected {problem}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, base: TrainOptions | None = None) -> TrainOptions:
        """``base`` (default: the defaults) with ``values`` set; unknown keys are refused by name."""
        unknown = sorted(set(values) - set(OPTION_NAMES))
        if unknown:
            raise CorosegError(f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(OPTION_NAMES)}")
        return dataclasses.replace(base or cls(), **dict(values))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _whole_numbers(v, n: int | None = None, lo: int = 1, hi: float = math.inf) -> bool:
    return (isinstance(v, (list, tuple)) and (n is None or len(v) == n) and len(v) > 0
            and all(_is_number(x, lo, hi, whole=True) for x in v))


def _is_number(v, lo: float, hi: float = math.inf, *, whole: bool = False) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (whole and not float(v).is_integer()):
        return False
    return lo <= v <= hi


def _choices(kind: str) -> tuple:
    from coroseg.prior.attention import MODES
    from coroseg.prior.crops import METHODS
    from coroseg.train.precision import PRECISIONS

    return {"crop_methods": METHODS, "attention_modes": MODES, "norms": NORMS, "precisions": PRECISIONS}[kind]


def _field_problem(f: dataclasses.Field, v, opts: TrainOptions) -> str | None:
    """What ``v`` should have been for option ``f`` (the ``expected ...`` text), or None when it is fine."""
    meta = f.metadata
    if "range" in meta:
        lo, hi, whole, nullable = meta["range"]
        if (v is None and nullable) or _is_number(v, lo, hi, whole=whole):
            return None
        text = f"{'a whole number' if whole else 'a number'} >= {lo:g}" + (f" and <= {hi:g}" if hi < math.inf else "")
        return text + (", or null" if nullable else "")
    if "choices" in meta:
        allowed = _choices(meta["choices"])
        return None if v in allowed else "one of " + ", ".join(allowed)
    if "bool" in meta:
        return None if isinstance(v, bool) else "true or false"
    if "levels" in meta:
        ok = _whole_numbers(v, hi=MAX_CHANNELS) and 2 <= len(v) <= MAX_LEVELS
        return None if ok else f"a list of 2 to {MAX_LEVELS} whole numbers from 1 to {MAX_CHANNELS}"
    if "strides" in meta:
        n = len(opts.channels) - 1 if isinstance(opts.channels, (list, tuple)) else None
        ok = v is None or (_whole_numbers(v, n, hi=MAX_STRIDE))
        return None if ok else (f"null or {n} whole numbers from 1 to {MAX_STRIDE} (one per channel level after "
                                "the first)")
    if "patch" in meta:
        ok = (v is None and f.name == "patch_size") or _whole_numbers(v, 3, hi=MAX_PATCH)
        return None if ok else f"three positive whole numbers [z, y, x], at most {MAX_PATCH}"
    if "spacing" in meta:
        words = meta["spacing"]
        lo, hi = SPACING_RANGE_MM
        if v is None or v in words or (isinstance(v, (list, tuple)) and len(v) == 3
                                       and all(_is_number(x, lo, hi) for x in v)):
            return None
        return (" or ".join(f'"{w}"' for w in words) + " or " if words else "null or ") + \
            f"three numbers [z, y, x] from {lo:g} to {hi:g} mm"
    if "perturb" in meta:
        from coroseg.prior.perturb import sample_perturbation

        known = list(inspect.signature(sample_perturbation).parameters)[2:]
        ok = v is None or (isinstance(v, dict) and not set(v) - set(known))
        return None if ok else "null or an object with keys among " + ", ".join(known)
    return None


#: the option names, in declaration order
OPTION_NAMES = tuple(f.name for f in dataclasses.fields(TrainOptions))
#: every option with its default (a plain dict, for documentation and ``--set`` listings)
DEFAULTS: dict = TrainOptions().to_dict()


def parse_overrides(items: list[str], *, known=None, own_options: tuple[str, ...] = ()) -> dict:
    """``["key=json", ...]`` -> ``{key: value}``.

    Parameters
    ----------
    items : list of str
        The ``--set`` arguments.
    known : iterable of str, optional
        The accepted keys (default: the fields of :class:`TrainOptions`).
    own_options : tuple of str
        Names of the command's own keyword options (``model``, ``seed``, ...): refused with a
        pointer to ``--<name>``.
    """
    known = set(OPTION_NAMES if known is None else known)
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CorosegError(f"--set expects KEY=VALUE, found {item!r:.60}")
        if key in RENAMED_OPTIONS:
            new = RENAMED_OPTIONS[key][0]
            raise CorosegError(f"--set {key}: replaced by {new} (--set {new}=...; see the training options)")
        if key in own_options:
            raise CorosegError(f"--set {key}: set it with the --{key.replace('_', '-')} option")
        if key not in known:
            raise CorosegError(f"--set {key}: unknown training option; known: {', '.join(sorted(known))}")
        if len(value) > MAX_VALUE_CHARS:
            raise CorosegError(f"--set {key}: value is {len(value)} characters long; at most {MAX_VALUE_CHARS}")
        try:
            out[key] = json.loads(value)
        except RecursionError:
            raise CorosegError(f"--set {key}: value is nested too deeply") from None
        except ValueError:
            out[key] = value
    return out


def saved_options(saved: Mapping[str, Any]) -> dict:
    """The options of a saved run (``config.json``) in today's names: removed ones dropped, renamed ones
    translated (``amp: false`` -> ``precision: fp32``)."""
    out = {k: v for k, v in saved.items() if k not in REMOVED_OPTIONS and k not in RENAMED_OPTIONS}
    for old, (new, convert) in RENAMED_OPTIONS.items():
        if old in saved and new not in saved:
            out[new] = convert(saved[old])
    return out


__all__ = ["TrainOptions", "DEFAULTS", "OPTION_NAMES", "REMOVED_OPTIONS", "RENAMED_OPTIONS", "saved_options",
           "parse_overrides", "TRAIN_OPTIONS",
           "MAX_VALUE_CHARS"]

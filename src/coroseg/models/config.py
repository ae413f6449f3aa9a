"""``RunConfig``: a run folder's ``config.json`` as typed, checked, frozen settings.

Everything ``predict`` (and resume) needs to rebuild a trained model lives here: the network,
the model grid (spacing, patch size), the intensity normalisation, the attention channel, the
crop clustering and the stage-1 locator. :meth:`RunConfig.from_dict` is the one place a config
is checked (types, ranges, shapes) and its defaults written; a tampered file becomes one
``expected ..., found ...`` line, never a traceback deep in inference.

Schema versions. ``config.json`` carries ``"schema": 2``. Files without the key (schema 1,
every run folder written before it was introduced) are migrated on read
(:func:`migrate`): the values they relied on as code defaults are written out, and the options
no trainer ever set are dropped (``attention_cfg.combine`` / ``weight``, ``val_overlap``).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from coroseg.errors import CorosegError

SCHEMA_VERSION = 2

#: the locator's probability threshold
LOCATOR_THRESHOLD = 0.5
#: the locator mask keeps its two largest trees and any other component at least this fraction
#: of the largest. Smaller islands are mostly distractors (cardiac veins, unlabelled twigs):
#: their skeleton would become a false prior, and the crop model segments what the attention
#: channel points at. On the phantom's validation cases 0.1 (the output post-processing
#: default) gave auto Dice 0.70, 0.3 gave 0.85 (oracle 0.85); branches this drops are mostly
#: found again by the iteration of :func:`coroseg.infer.stages.run_crops`.
LOCATOR_KEEP_FRACTION = 0.3
#: pieces of the locator mask within this distance (mm) of the kept trees are kept too
#: (:func:`coroseg.infer.postprocess.keep_main_components`); None: no such rule
LOCATOR_REACH_MM = None
#: hysteresis: the kept trees grow into every connected region of locator probability at least
#: this, so a branch the locator sees faintly stays attached to its tree while an island that no
#: such bridge joins to a tree stays out. On real tree geometry the locator's mask at 0.5 falls
#: into 100-311 pieces and the size rule kept 0.41 of the centerline; 0.02 was chosen on the
#: generalisation benchmark's dev sets (0.3-0.003 measured, docs/results/generalisation.md);
#: None: off
LOCATOR_LOW_THRESHOLD = 0.02

#: keys every config must have (schema 1 and 2)
REQUIRED_KEYS = ("model", "dims", "sampler", "attention", "in_channels", "patch_size", "spacing", "intensity",
                 "network", "locator")
#: keys a schema-1 file may hold that schema 2 dropped (no trainer wrote a value inference used)
DROPPED_KEYS = {"val_overlap": "top level", "combine": "attention_cfg", "weight": "attention_cfg"}


class ConfigError(CorosegError):
    """A config value inference cannot use; the message is ``key=value: expected ...``."""


@dataclasses.dataclass(frozen=True)
class AttentionSettings:
    """How the attention channel is drawn from a centerline (:func:`coroseg.prior.attention_channel`)."""

    mode: str = "gaussian"
    dilation_mm: float = 1.0
    perturb_in_training: bool = True


@dataclasses.dataclass(frozen=True)
class CropSettings:
    """How centerline points are clustered into crop centres (:func:`coroseg.prior.crop_centres`)."""

    method: str = "kmeans"
    jitter: float = 0.125            # training only: random shift, fraction of the patch size
    eps_mm: float | None = None      # dbscan neighbourhood (None: the method's default)
    merge_radius: float | None = None
    n_clusters: int | None = None

    def clustering(self) -> dict:
        """The keyword arguments of :func:`coroseg.prior.crop_centres` this config sets."""
        return {k: getattr(self, k) for k in ("eps_mm", "merge_radius", "n_clusters") if getattr(self, k) is not None}


@dataclasses.dataclass(frozen=True)
class LocatorConfig:
    """Stage 1 of a crop model: a coarse 3D grid U-Net whose mask becomes the centerline."""

    spacing: tuple[float, float, float]
    patch_size: tuple[int, int, int]
    network: dict
    intensity: dict
    weights: str = "locator.safetensors"
    label: str = "coverage"              # training target: "coverage" (linear + low threshold) or "nearest"
    threshold: float = LOCATOR_THRESHOLD
    low_threshold: float | None = LOCATOR_LOW_THRESHOLD
    keep_fraction: float = LOCATOR_KEEP_FRACTION
    reach_mm: float | None = LOCATOR_REACH_MM
    bridge_mm: float | None = None       # join pieces continuing a tree end across this gap (infer.bridging)
    tta: bool = False                    # average over mirrored copies of the scan
    dims = 3                             # not a field: the locator is always 3D


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A trained run's settings (``config.json``); build one with :meth:`from_dict`."""

    model: str
    dims: int
    sampler: str                         # "grid" or "crop"
    attention: bool                      # second input channel: the centerline attention map
    in_channels: int
    patch_size: tuple[int, int, int]     # [z, y, x] voxels; 2D models: [1, y, x]
    spacing: tuple[float, float, float]  # model grid, mm, array order
    intensity: dict                      # {"clip": [lo, hi], "mean", "std"} (HU)
    network: dict                        # build_network's arguments (MONAI UNet)
    locator: LocatorConfig | None = None
    attention_cfg: AttentionSettings = AttentionSettings()
    crop: CropSettings = CropSettings()
    seed: int = 0
    status: str = "complete"
    coroseg_version: str = ""
    train: dict = dataclasses.field(default_factory=dict)  # how it was trained (record; resume reads it)
    data: dict = dataclasses.field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    @classmethod
    def from_dict(cls, raw: Any) -> RunConfig:
        """Check and type a config dict (schema 1 is migrated first); :class:`ConfigError` if unusable."""
        cfg = migrate(raw)
        problem = config_problem(cfg)
        if problem:
            raise ConfigError(problem)
        loc = cfg["locator"]
        return cls(
            model=cfg["model"], dims=int(cfg["dims"]), sampler=cfg["sampler"], attention=cfg["attention"],
            in_channels=int(cfg["in_channels"]), patch_size=_ints(cfg["patch_size"]),
            spacing=_floats(cfg["spacing"]), intensity=_intensity(cfg["intensity"]),
            network=_network(cfg["network"]),
            locator=None if loc is None else LocatorConfig(
                spacing=_floats(loc["spacing"]), patch_size=_ints(loc["patch_size"]),
                network=_network(loc["network"]), intensity=_intensity(loc["intensity"]),
                **{k: loc[k] for k in ("weights", "label", "threshold", "low_threshold", "keep_fraction",
                                       "reach_mm", "bridge_mm", "tta") if k in loc}),
            attention_cfg=AttentionSettings(**cfg.get("attention_cfg", {})),
            crop=CropSettings(**cfg.get("crop", {})),
            seed=int(cfg.get("seed", 0)), status=cfg.get("status", "complete"),
            coroseg_version=str(cfg.get("coroseg_version", "")), train=dict(cfg.get("train", {})),
            data=dict(cfg.get("data", {})))

    def to_dict(self) -> dict:
        """The JSON form written to ``config.json`` (lists, not tuples)."""
        def plain(v):
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [plain(x) for x in v]
            return v
        return plain(dataclasses.asdict(self))

    def replace(self, **changes) -> RunConfig:
        return dataclasses.replace(self, **changes)

    @property
    def is_crop(self) -> bool:
        return self.sampler == "crop"


def migrate(raw: Any) -> dict:
    """A schema-2 dict from a schema-1 or -2 config dict (a copy; checks only the schema key)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"must be a JSON object, found {type(raw).__name__}")
    cfg = {k: v for k, v in raw.items()}
    version = cfg.pop("schema", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"schema={version!r:.40}: expected a whole number >= 1")
    if version > SCHEMA_VERSION:
        raise ConfigError(f"schema={version}: written by a newer coroseg (this one reads schema {SCHEMA_VERSION} "
                          "and older); upgrade coroseg")
    if version == 1:
        cfg.pop("val_overlap", None)
        att = cfg.get("attention_cfg")
        if isinstance(att, dict):
            att = dict(att)
            if att.pop("combine", "stack") not in ("stack", None):
                raise ConfigError("attention_cfg.combine: only 'stack' is supported (no coroseg trainer wrote "
                                  "another value)")
            att.pop("weight", None)
            cfg["attention_cfg"] = att
        loc = cfg.get("locator")
        if isinstance(loc, dict):
            # schema 1 read these as code defaults; "nearest" was the target before "coverage" existed
            cfg["locator"] = {"label": "nearest", **loc}
        train = cfg.get("train")
        if isinstance(train, dict):
            train = dict(train)
            train.setdefault("phase_order", ["model", "locator"])
            if isinstance(train.get("options"), dict):
                train["options"] = {k: v for k, v in train["options"].items() if k != "val_overlap"}
            cfg["train"] = train
    return cfg


def _number(v, lo: float = -math.inf, hi: float = math.inf) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and lo <= v <= hi


def _whole(v, lo: float = -math.inf, hi: float = math.inf) -> bool:
    return _number(v, lo, hi) and float(v).is_integer()


def config_problem(cfg: dict) -> str | None:
    """What in a (schema-2) config dict inference cannot use (``"key=value: expected ..."``), or None.

    Checks every value that loading and ``predict`` read: model, dims, sampler, attention,
    network, patch size and spacing (bounded, so a tampered file cannot ask for terabytes or
    a 0-mm grid), the locator block and the attention / crop / seed settings; unknown keys in
    those blocks are refused (a typo would otherwise be silently ignored).
    """
    from coroseg.models.registry import MODEL_NAMES, grid_problem, network_problem
    from coroseg.prior.attention import MODES
    from coroseg.prior.crops import METHODS

    problem = _keys_problem(cfg, RunConfig, "", REQUIRED_KEYS)
    if problem:
        return problem
    problem = _intensity_problem(cfg["intensity"])
    if problem:
        return f"intensity: {problem}"
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
    if cfg.get("seed") is not None and not _whole(cfg["seed"]):
        return f"seed={cfg['seed']!r:.60}: expected a whole number"
    for key in ("status", "coroseg_version"):
        if key in cfg and not isinstance(cfg[key], str):
            return f"{key}={cfg[key]!r:.60}: expected a string"
    for key in ("train", "data"):
        if key in cfg and not isinstance(cfg[key], dict):
            return f"{key}: expected an object, found {type(cfg[key]).__name__}"
    problem = _block_problem(cfg, "attention_cfg", AttentionSettings, {
        "mode": (lambda v: v in MODES, "one of " + ", ".join(MODES)),
        "dilation_mm": (lambda v: _number(v, 0, 50), "a number from 0 to 50"),
        "perturb_in_training": (lambda v: isinstance(v, bool), "true or false")})
    if problem:
        return problem
    optional = (lambda v: v is None or _number(v, 0, 1e4), "a number from 0 to 10000, or null")
    problem = _block_problem(cfg, "crop", CropSettings, {
        "method": (lambda v: v in METHODS, "one of " + ", ".join(METHODS)),
        "jitter": (lambda v: _number(v, 0, 0.5), "a number from 0 to 0.5"),
        "eps_mm": optional, "merge_radius": optional,
        "n_clusters": (lambda v: v is None or _whole(v, 1, 1e4), "a whole number from 1 to 10000, or null")})
    if problem:
        return problem
    problem = _locator_problem(cfg["locator"])
    if problem is None and isinstance(cfg["locator"], dict) and (
            bool(cfg["locator"]["intensity"].get("reference")) != bool(cfg["intensity"].get("reference"))):
        # the scan is referenced once for both networks
        return "locator.intensity.reference must equal intensity.reference"
    return problem


def _keys_problem(block: dict, kind: type, where: str, required: tuple = ()) -> str | None:
    """A missing required key or a key that is no field of ``kind`` (a typo would be ignored silently)."""
    for key in required:
        if key not in block:
            return f"lacks key {(where + '.' if where else '') + key!r}"
    fields = [f.name for f in dataclasses.fields(kind) if f.name != "schema"]
    unknown = sorted(set(block) - set(fields) - set(required))
    if unknown:
        return f"{where + ': ' if where else ''}unknown key {unknown[0]!r:.60}; known: {', '.join(fields)}"
    return None


def _block_problem(cfg: dict, key: str, kind: type, checks: dict) -> str | None:
    """Why the optional object ``cfg[key]`` (fields of ``kind``) is unusable, or None."""
    block = cfg.get(key)
    if block is None:
        cfg.pop(key, None)  # null means "the defaults"
        return None
    if not isinstance(block, dict):
        return f"{key}: expected an object, found {type(block).__name__}"
    problem = _keys_problem(block, kind, key)
    if problem:
        return problem
    for name, (ok, expected) in checks.items():
        if name in block and not ok(block[name]):
            return f"{key}.{name}={block[name]!r:.60}: expected {expected}"
    return None


def _locator_problem(loc) -> str | None:
    from coroseg.models.registry import grid_problem, network_problem

    if loc is None:
        return None
    if not isinstance(loc, dict):
        return f"locator: expected an object or null, found {type(loc).__name__}"
    problem = _keys_problem(loc, LocatorConfig, "locator", ("spacing", "patch_size", "network", "intensity",
                                                             "weights"))
    if problem:
        return problem
    problem = _intensity_problem(loc["intensity"])
    if problem:
        return f"locator.intensity: {problem}"
    problem = network_problem(loc["network"]) or grid_problem(loc["patch_size"], loc["spacing"], 3)
    if problem:
        return f"locator: {problem}"
    if loc["network"]["spatial_dims"] != 3 or loc["network"]["in_channels"] != 1:
        return "locator.network: expected a 3D network with 1 input channel"
    w = loc["weights"]
    if not (isinstance(w, str) and w and Path(w).name == w and w.endswith(".safetensors")):
        return f"locator.weights={w!r:.60}: expected a .safetensors file name inside the run folder"
    for key, lo, hi, nullable in (("threshold", 0, 1, False), ("keep_fraction", 0, 1, False),
                                  ("low_threshold", 0, 1, True), ("reach_mm", 0, 1e4, True),
                                  ("bridge_mm", 0, 100, True)):
        v = loc.get(key)
        if key in loc and not ((v is None and nullable) or _number(v, lo, hi)):
            return f"locator.{key}={v!r:.60}: expected a number from {lo:g} to {hi:g}" + (", or null" if nullable
                                                                                          else "")
    if "tta" in loc and not isinstance(loc["tta"], bool):
        return f"locator.tta={loc['tta']!r:.60}: expected true or false"
    if "label" in loc and loc["label"] not in ("coverage", "nearest"):
        return f"locator.label={loc['label']!r:.60}: expected coverage or nearest"
    return None


def _intensity_problem(inten) -> str | None:
    """Why ``inten`` is not ``{"clip": [lo, hi], "mean": m, "std": s > 0}`` (finite numbers), else None."""
    try:
        lo, hi = (float(v) for v in inten["clip"])
        mean, std = float(inten["mean"]), float(inten["std"])
    except (KeyError, TypeError, ValueError):
        return f"expected clip=[lo, hi], mean and std, found {inten!r:.80}"
    if not all(np.isfinite([lo, hi, mean, std])) or hi < lo or std <= 0:
        return f"expected finite clip lo <= hi and std > 0, found clip=[{lo:g}, {hi:g}], std={std:g}"
    if max(abs(lo), abs(hi), abs(mean)) > 1e5 or not 1e-3 <= std <= 1e5:
        return (f"expected HU-scale values (|clip|, |mean| <= 1e5, 1e-3 <= std <= 1e5), found "
                f"clip=[{lo:g}, {hi:g}], mean={mean:g}, std={std:g}")
    if not isinstance(inten.get("reference", False), bool):
        return f"reference={inten['reference']!r:.40}: expected true or false"
    return None


def _ints(v) -> tuple:
    return tuple(int(x) for x in v)


def _floats(v) -> tuple:
    return tuple(float(x) for x in v)


def _intensity(inten: dict) -> dict:
    lo, hi = inten["clip"]
    out = {"clip": [float(lo), float(hi)], "mean": float(inten["mean"]), "std": float(inten["std"])}
    if inten.get("reference"):  # per-scan fat / blood-pool referencing first (coroseg.data.levels)
        out["reference"] = True
    return out


def _network(net: dict) -> dict:
    """The network block with build_network's defaults written out."""
    out = {"arch": "unet", "out_channels": 2, "num_res_units": 2, "norm": "instance", "dropout": 0.0, **net}
    out["channels"], out["strides"] = [int(c) for c in out["channels"]], [int(s) for s in out["strides"]]
    return out


def as_run_config(cfg: RunConfig | dict) -> RunConfig:
    """``cfg`` as a :class:`RunConfig` (a dict is checked and typed)."""
    return cfg if isinstance(cfg, RunConfig) else RunConfig.from_dict(cfg)


__all__ = ["RunConfig", "LocatorConfig", "AttentionSettings", "CropSettings", "ConfigError", "SCHEMA_VERSION",
           "migrate", "config_problem", "as_run_config", "LOCATOR_THRESHOLD", "LOCATOR_KEEP_FRACTION",
           "LOCATOR_REACH_MM", "LOCATOR_LOW_THRESHOLD", "REQUIRED_KEYS"]

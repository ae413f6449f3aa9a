"""Whole-volume validation during training, by the code ``coroseg predict`` runs.

Every validation case is read once (HU image and label on their own grid) and segmented by
:mod:`coroseg.infer` exactly as a new scan would be, so the checkpoint kept is the best one at
what ships:

- grid models and crop models: :func:`coroseg.infer.predict_volume` (resampling, sliding window
  or crops with their iteration, resampling back, post-processing), scored with Dice on the
  case's own grid. A crop model's centerline is the run's trained locator's (``auto``; it is
  fixed while the crop model trains, so it is found once per case), or, for a run without a
  locator, the reference centerline (``reference``; ``val_centerline`` in ``metrics.csv``).
- the locator: :func:`coroseg.infer.stages.locator_probability` and
  :func:`~coroseg.infer.stages.locator_mask` (its trees, as stage 1 of ``predict`` selects them),
  scored with Dice against the label it is trained on, on its own grid.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Sequence

import numpy as np
import torch

from coroseg.data.layouts import Case
from coroseg.eval.metrics import dice
from coroseg.io.centerline import CenterlineGraph
from coroseg.io.volume import Volume
from coroseg.models.config import LocatorConfig, RunConfig


@dataclasses.dataclass
class ValCase:
    """One validation scan as read from disk, and the centerline prior its crop model gets."""

    image: Volume
    label: Volume
    prior: CenterlineGraph | str = "none"   # a graph, or "none" (grid models; nothing found)
    target: np.ndarray | None = None        # the locator's label on its grid, made at first use


def read_val_cases(cases: Sequence[Case], *, centerline: str | None = None, locator: torch.nn.Module | None = None,
                   loc_cfg: LocatorConfig | None = None, device: torch.device | str = "cpu") -> list[ValCase]:
    """Read ``cases`` and find each one's prior: ``"auto"`` (``locator``), ``"reference"``, or none."""
    from coroseg.data.cache import load_centerline, read_case
    from coroseg.infer.stages import locate
    from coroseg.io.volume import orient_lps

    out = []
    for case in cases:
        image, label = read_case(case)
        prior: CenterlineGraph | str = "none"
        if centerline == "auto":
            with torch.no_grad():
                _, graph = locate(orient_lps(image), locator, loc_cfg, device=torch.device(device))
            prior = graph if graph is not None and len(graph) else "none"
        elif centerline == "reference":
            prior = load_centerline(case, label)[0]
        out.append(ValCase(image, label, prior))
    return out


def validate_model(model: torch.nn.Module, config: RunConfig, cases: Sequence[ValCase], *,
                   centerline_source: str | None, device: torch.device, batch: int = 4) -> list[float]:
    """Dice of each case segmented by :func:`coroseg.infer.predict_volume` with ``model``."""
    from coroseg.infer.pipeline import predict_volume

    run = types.SimpleNamespace(config=config, model=model, locator=None)
    with _eval_mode(model):
        segs = [predict_volume(run, c.image, centerline=c.prior, centerline_source=centerline_source, device=device,
                               batch_size=batch, extract_centerline=False, keep_prob=False).seg for c in cases]
    return [dice(seg.array > 0, c.label.array > 0) for seg, c in zip(segs, cases)]


def validate_locator(locator: torch.nn.Module, loc_cfg: LocatorConfig, cases: Sequence[ValCase], *,
                     device: torch.device, batch: int = 4) -> list[float]:
    """Dice of the locator's selected mask against its training label, on the locator grid."""
    from coroseg.infer.stages import locator_mask, locator_probability
    from coroseg.io.volume import orient_lps

    scores = []
    with _eval_mode(locator):
        for c in cases:
            prob = locator_probability(orient_lps(c.image), locator, loc_cfg, device=device, batch_size=batch)
            if c.target is None:  # the label does not change between validations: resample it once
                c.target = locator_target(c.label, prob, loc_cfg)
            scores.append(dice(locator_mask(prob, loc_cfg), c.target))
    return scores


def locator_target(label: Volume, grid: Volume, loc_cfg: LocatorConfig) -> np.ndarray:
    """The locator's training label on ``grid``: the mask resampled as training prepared it."""
    from coroseg.data.cache import coarse_label
    from coroseg.io.volume import orient_lps, resample_to_grid

    lab = orient_lps(label)
    if loc_cfg.label == "coverage" and lab.shape != grid.shape:
        return coarse_label(lab, grid) > 0
    return resample_to_grid(lab, grid, order=0).array > 0


class _eval_mode:
    """The network in eval mode for the block, back in its previous mode afterwards."""

    def __init__(self, net: torch.nn.Module):
        self.net, self.was = net, net.training

    def __enter__(self):
        self.net.eval()

    def __exit__(self, *exc):
        self.net.train(self.was)


__all__ = ["ValCase", "read_val_cases", "validate_model", "validate_locator", "locator_target"]

"""Realistic synthetic CTCA phantoms with exact coronary lumen labels and centerlines.

``sample_case_params(rng, preset, diseased)`` draws every random choice of a case;
``render_case(params)`` turns it into ``(image, label, centerlines)`` deterministically;
``synth_dataset(out_dir, n_cases, preset=..., anatomy_dir=..., seed=...)`` writes a dataset.
"""

from coroseg.synth.dataset import split_plan, synth_dataset
from coroseg.synth.params import CaseParams, sample_case_params
from coroseg.synth.render import Phantom, render_case, render_phantom

__all__ = ["CaseParams", "Phantom", "render_case", "render_phantom", "sample_case_params", "split_plan",
           "synth_dataset"]

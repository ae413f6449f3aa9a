"""Whole-volume inference: ``predict`` (files) and ``predict_volume`` (in memory).

Modules: :mod:`.windows` (sliding window, grid models), :mod:`.crops` (crop inference and
Gaussian stitching), :mod:`.stages` (locator -> centerline -> crops, iterated),
:mod:`.postprocess`, :mod:`.outputs` (files, mesh, summary), :mod:`.pipeline`
(geometry and orchestration), :mod:`.files` (``predict`` over scans on disk).
"""

from coroseg.infer.files import predict
from coroseg.infer.pipeline import Prediction, find_inputs, predict_volume, resolve_device
from coroseg.infer.postprocess import PostprocessOptions, postprocess

__all__ = ["predict", "predict_volume", "Prediction", "PostprocessOptions", "postprocess", "find_inputs",
           "resolve_device"]

"""coroseg: coronary artery segmentation in CTCA with a centerline prior.

The Python API (imported on first use, so ``import coroseg`` stays fast)::

    coroseg.predict(image, model, output)    # path, SimpleITK image or Volume in, the same kind out
    coroseg.Predictor(model)(image)          # the weights loaded once, for many scans
    coroseg.train_model(data, out, model="unet3d_crop")   # = coroseg.train.train
    coroseg.test_model(run, data, out)       # = coroseg.eval.testing.test_run (auto vs ORACLE)
    coroseg.evaluate_folders(pred, gt)       # Dice, HD95, clDice, ... per case
    coroseg.read_volume(path), coroseg.write_volume(vol, path), coroseg.Volume
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> (module, attribute); the training and test functions are named so that they do
#: not hide the ``coroseg.train`` subpackage
_LAZY = {
    "predict": ("coroseg.api", "predict"),
    "Predictor": ("coroseg.api", "Predictor"),
    "Result": ("coroseg.api", "Result"),
    "train_model": ("coroseg.train.trainer", "train"),
    "test_model": ("coroseg.eval.testing", "test_run"),
    "evaluate_folders": ("coroseg.eval.evaluate", "evaluate_folders"),
    "read_volume": ("coroseg.io.volume", "read_volume"),
    "write_volume": ("coroseg.io.volume", "write_volume"),
    "Volume": ("coroseg.io.volume", "Volume"),
    "CenterlineGraph": ("coroseg.io.centerline", "CenterlineGraph"),
    "PostprocessOptions": ("coroseg.infer.postprocess", "PostprocessOptions"),
    "CorosegError": ("coroseg.errors", "CorosegError"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'coroseg' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # cached: the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

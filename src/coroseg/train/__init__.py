"""Training: ``train(data_dir, out_dir, model=...)`` writes a run folder (see :mod:`coroseg.models.run`)."""

from coroseg.train.trainer import DEFAULTS, TrainingInterrupted, train

__all__ = ["train", "DEFAULTS", "TrainingInterrupted"]

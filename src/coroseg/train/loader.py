"""The training data loader of one phase: one ``DataLoader`` for all of its epochs.

The main process decides what each epoch serves (:class:`PlanSampler`, set before every
epoch with that epoch's plan, this rank's share and the steps a resume skips); the workers
(``num_workers`` > 0) are started once per phase and kept (``persistent_workers``), so an
epoch does not pay for forking them and copying the cases again. Every sample is drawn from
its own seed (:class:`~coroseg.data.sampling.PatchItem`), so the batches are the same with
any number of workers; worker RNGs are seeded from the run's seed as well, for anything a
transform draws outside those seeds. Host memory is pinned only when batches go to a GPU.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from coroseg.data.sampling import PatchDataset, PatchItem


class PlanSampler(torch.utils.data.Sampler):
    """Yields ``(epoch, PatchItem)`` keys of the epoch set last (:meth:`set_epoch`)."""

    def __init__(self) -> None:
        self.keys: list[tuple[int, PatchItem]] = []

    def set_epoch(self, epoch: int, items: Sequence[PatchItem]) -> None:
        self.keys = [(int(epoch), item) for item in items]

    def __iter__(self) -> Iterator[tuple[int, PatchItem]]:
        return iter(list(self.keys))

    def __len__(self) -> int:
        return len(self.keys)


def loader_settings(device: torch.device, workers: int) -> dict:
    """DataLoader keywords for ``workers`` processes feeding ``device``."""
    settings = {"num_workers": int(workers), "pin_memory": device.type == "cuda"}
    if workers > 0:
        settings.update(persistent_workers=True, prefetch_factor=4, worker_init_fn=seed_worker)
    return settings


def seed_worker(worker_id: int) -> None:  # noqa: ARG001  (DataLoader's signature)
    """numpy's and ``random``'s global RNGs follow torch's per-worker seed (set from the loader's generator)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def default_workers(device: torch.device, world: int, cpus: int | None) -> int:
    """0 on a CPU (the step needs the cores), else up to 8 per GPU process."""
    return 0 if device.type == "cpu" else min(8, max(1, (cpus or 2) // max(1, world)))


def make_loader(dataset: PatchDataset, *, batch_size: int, device: torch.device, workers: int,
                seed: int) -> tuple[torch.utils.data.DataLoader, PlanSampler]:
    """The phase's loader and its sampler (call ``sampler.set_epoch`` before iterating)."""
    sampler = PlanSampler()
    gen = torch.Generator().manual_seed(int(seed))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False,
                                         generator=gen, **loader_settings(device, workers))
    return loader, sampler


__all__ = ["PlanSampler", "make_loader", "loader_settings", "seed_worker", "default_workers"]

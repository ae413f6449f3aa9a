"""Process-group setup for single-process and ``torchrun`` (DDP) training.

``torchrun --nproc_per_node G -m coroseg train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup` then joins the process group
(NCCL on GPU, gloo on CPU) and pins each process to GPU ``LOCAL_RANK``. Multi-node: run the same
``torchrun`` on every node with ``--nnodes N --node_rank R --rdzv_endpoint HOST:PORT``
(or ``--master_addr/--master_port``); nothing else changes. Only rank 0 writes files.
"""

from __future__ import annotations

import dataclasses
import os

import torch
import torch.distributed as dist

from coroseg.device import resolve_device


@dataclasses.dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1), else single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local)
    if world <= 1:
        return DistInfo(0, 1, 0, dev, False)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    initialised = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        initialised = True
    if dev.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    return DistInfo(rank, world, local, dev, initialised)


def teardown(info: DistInfo) -> None:
    if info.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.world > 1:
        dist.barrier()


def all_sum(info: DistInfo, values: list[float]) -> list[float]:
    """Sum a few floats over all ranks (float64 on the training device)."""
    if info.world <= 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return t.tolist()


__all__ = ["DistInfo", "resolve_device", "setup", "teardown", "barrier", "all_sum"]

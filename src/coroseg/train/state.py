"""``TrainState``: what ``--resume`` restores, saved as ``optimizer.pt`` after every epoch.

One record of the phase being fitted (``"locator"`` or ``"model"``), its counters (epoch, step
within the epoch, patches seen, best validation Dice and its epoch, validations without
improvement), the losses of a half-finished epoch, the training history, the optimizer and
scheduler states and the torch RNG, so a resumed run replays exactly the batches the
uninterrupted run would have seen. Plain tensors and containers only: it is read with
``torch.load(weights_only=True)``, never as an arbitrary pickle.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from coroseg.errors import CorosegError
from coroseg.io.atomic import atomic_path


def _on_cpu(obj):
    """``obj`` with every tensor in it copied to the CPU: a state saved on a GPU loads on any machine."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _on_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_on_cpu(v) for v in obj)
    return obj


@dataclasses.dataclass
class TrainState:
    """The resumable state of one training phase (and the history of the whole run)."""

    phase: str
    epoch: int = 0                 # epochs finished
    step_in_epoch: int = 0         # steps done of the epoch in progress (an interrupted epoch)
    global_step: int = 0
    patches: int = 0
    best: float = -1.0             # best validation Dice so far
    best_epoch: int = -1
    bad: int = 0                   # validations since the best one (early stopping)
    epoch_losses: list = dataclasses.field(default_factory=list)
    history: list = dataclasses.field(default_factory=list)  # metrics.csv rows, every phase
    optimizer: dict | None = None
    scheduler: dict | None = None
    torch_rng: torch.Tensor | None = None
    scaler: dict | None = None     # fp16 gradient scaler (precision=fp16)

    def save(self, path: Path) -> None:
        """Write the state atomically (a crash mid-write leaves the previous file)."""
        with atomic_path(path) as tmp:
            torch.save(_on_cpu(dataclasses.asdict(self)), tmp)

    @classmethod
    def load(cls, path: Path) -> TrainState:
        """Read ``optimizer.pt`` (``weights_only=True``); :class:`CorosegError` when it is not ours."""
        if not path.exists():
            raise CorosegError("cannot resume: no optimizer state (the run never saved a checkpoint)", path)
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError, RuntimeError, EOFError...: all mean "not ours"
            reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
            raise CorosegError(f"cannot resume: optimizer state is corrupt or not a coroseg checkpoint ({reason})",
                               path) from None
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(raw, dict) or "phase" not in raw or set(raw) - names:
            raise CorosegError("cannot resume: optimizer state is not a coroseg checkpoint", path)
        return cls(**raw)

    def next_phase(self, name: str) -> TrainState:
        """The state the next phase starts from: fresh counters and optimizer, the history kept."""
        return TrainState(phase=name, history=self.history, torch_rng=self.torch_rng)


__all__ = ["TrainState"]

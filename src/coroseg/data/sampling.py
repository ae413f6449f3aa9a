"""Patch sampling for training: grid (foreground-aware random tiles) or centerline crops.

An epoch is a *plan*: a list of :class:`PatchItem` ``(case, centre, seed)`` that depends only on
``(seed, epoch)``. :class:`PatchDataset` turns an item into a sample deterministically (patch
extraction, attention channel from a perturbed centerline, augmentation all seeded by the
item's seed), so batches are identical whatever the number of data-loader workers, and a
resumed run replays exactly the batches it would have seen.

Patch centres are array indices ``(k, j, i)`` on the model grid; 2D models use patch size
``[1, H, W]``: a single axial slice ``k``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from coroseg.data.cache import PreparedCase
from coroseg.io.volume import Volume
from coroseg.prior.attention import centerline_points  # re-exported: the points attention maps use


@dataclasses.dataclass(frozen=True)
class PatchItem:
    """One training sample to draw: case index, centre ``(k, j, i)`` and its own seed."""

    case: int
    centre: tuple[int, int, int]
    seed: int


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 31-bit seed for item ``index`` of ``epoch`` (independent streams via SeedSequence)."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1)[0] & 0x7FFFFFFF)


def crop_centres_for_case(case: PreparedCase, patch_size: Sequence[int], *, method: str = "kmeans",
                          seed: int = 0) -> np.ndarray:
    """Crop centres ``(M, 3)`` int covering the case's centerline (see :mod:`coroseg.prior`)."""
    pts = case.centerline_index()
    if len(pts) == 0:
        return np.zeros((0, 3), dtype=int)
    from coroseg.prior import crop_centres, crop_centres_2d

    if patch_size[0] == 1:
        return np.asarray(crop_centres_2d(pts, size_2d=tuple(int(s) for s in patch_size[1:]), method=method,
                                          spacing=case.grid.spacing, seed=seed, shape=case.image.shape),
                          dtype=int).reshape(-1, 3)
    return np.asarray(crop_centres(pts, size=tuple(int(s) for s in patch_size), method=method,
                                   spacing=case.grid.spacing, seed=seed, shape=case.image.shape),
                      dtype=int).reshape(-1, 3)


def grid_plan(cases: Sequence[PreparedCase], patch_size: Sequence[int], *, samples_per_case: int, seed: int,  # noqa: ARG001 - same signature as crop_plan; callers pass it positionally
              epoch: int, fg_fraction: float = 0.5) -> list[PatchItem]:
    """Random patches: a fraction ``fg_fraction`` centred on a random foreground voxel, the rest
    uniform over the volume. Shuffled across cases."""
    rng = np.random.default_rng([int(seed), int(epoch), 1])
    raw: list[tuple[int, tuple[int, int, int]]] = []
    for ci, case in enumerate(cases):
        shape = np.array(case.image.shape)
        fg = None
        for _ in range(samples_per_case):
            if rng.random() < fg_fraction and case.label.any():
                if fg is None:
                    fg = np.argwhere(case.label > 0)
                c = fg[rng.integers(len(fg))]
            else:
                c = np.array([rng.integers(0, s) for s in shape])
            raw.append((ci, tuple(int(v) for v in c)))
    order = rng.permutation(len(raw))
    return [PatchItem(raw[o][0], raw[o][1], item_seed(seed, epoch, n)) for n, o in enumerate(order)]


def crop_plan(cases: Sequence[PreparedCase], centres: Sequence[np.ndarray], patch_size: Sequence[int], *, seed: int,
              epoch: int, jitter: float = 0.125, repeats: int = 1, per_case: int | None = None) -> list[PatchItem]:
    """Every crop centre of every case ``repeats`` times, each moved by a uniform random offset of
    at most ``jitter * patch_size`` voxels per axis (none along z for 2D). Shuffled.

    ``per_case`` caps the crops of a case per epoch (a random subset each epoch; useful for 2D
    models, whose per-slice crops are many)."""
    rng = np.random.default_rng([int(seed), int(epoch), 2])
    amp = np.floor(np.asarray(patch_size) * jitter).astype(int)
    raw: list[tuple[int, tuple[int, int, int]]] = []
    for ci, (case, cc) in enumerate(zip(cases, centres)):
        hi = np.array(case.image.shape) - 1
        for _ in range(repeats):
            chosen = cc if per_case is None or len(cc) <= per_case else cc[np.sort(rng.choice(len(cc), per_case,
                                                                                                replace=False))]
            for c in chosen:
                off = np.array([rng.integers(-a, a + 1) if a > 0 else 0 for a in amp])
                raw.append((ci, tuple(int(v) for v in np.clip(c + off, 0, hi))))
    order = rng.permutation(len(raw))
    return [PatchItem(raw[o][0], raw[o][1], item_seed(seed, epoch, n)) for n, o in enumerate(order)]


def shard(items: Sequence[PatchItem], rank: int, world: int) -> list[PatchItem]:
    """Rank ``rank``'s share of ``items``, DistributedSampler style: padded by repeating from
    the start so every rank gets the same count, then strided."""
    items = list(items)
    if world <= 1 or not items:
        return items
    total = -(-len(items) // world) * world
    padded = items + items[: total - len(items)]
    return padded[rank::world]


def patch_grid(grid: Volume, centre: Sequence[int], size: Sequence[int]) -> Volume:
    """The geometry of the patch of ``size`` centred at ``centre`` (same convention as
    :func:`coroseg.prior.extract_patch`: start = centre - size // 2)."""
    start = np.asarray(centre) - np.asarray(size) // 2
    origin = grid.index_to_world(start[None].astype(float))[0]
    return Volume(np.zeros(tuple(int(s) for s in size), np.uint8), grid.spacing, tuple(origin), grid.direction)


@dataclasses.dataclass(frozen=True)
class AttentionInput:
    """How training draws a patch's attention channel from its case's centerline."""

    mode: str = "gaussian"
    dilation_mm: float = 1.0
    perturb: bool = False        # perturb each case's centerline once per epoch (as an automatic one is)
    perturb_kwargs: dict = dataclasses.field(default_factory=dict)  # of coroseg.prior.perturb_centerline
    spurious: int = 0            # fake centerline pieces added per case and epoch
    dropout: float = 0.0         # share of patches given an empty attention channel


class PatchDataset(torch.utils.data.Dataset):
    """Map-style dataset over a plan of :class:`PatchItem`.

    Returns dicts ``{"image": float32 (C, [D,] H, W), "label": int64 (1, [D,] H, W)}`` where
    ``C`` is 1 (CT) or 2 (CT + centerline attention). 2D models get the singleton z axis removed.

    Parameters
    ----------
    cases : list of PreparedCase
    items : list of PatchItem
    patch_size : [z, y, x]
    dims : 2 or 3
    attention : AttentionInput or None
        ``None`` for models without the attention channel. With ``perturb``, each case's centerline is
        perturbed once per epoch (seeded by ``(seed, epoch, case)``): every crop of a case in
        an epoch sees the same degraded centerline, as at inference with an automatic one.
    augment : MONAI Compose or None
    seed, epoch : int
        Seed the per-epoch centerline perturbation.

    An index is a position in ``items`` (of ``epoch``) or an ``(epoch, PatchItem)`` pair: the
    trainer's one loader per phase (:mod:`coroseg.train.loader`) passes pairs, so workers kept
    across epochs serve each epoch's plan without being restarted.
    """

    def __init__(self, cases: Sequence[PreparedCase], items: Sequence[PatchItem], patch_size: Sequence[int], dims: int,
                 *, attention: AttentionInput | None = None, augment=None, seed: int = 0, epoch: int = 0):
        self.cases = list(cases)
        self.items = list(items)
        self.patch_size = tuple(int(s) for s in patch_size)
        self.dims = dims
        self.attention = attention
        self.augment = augment
        self.seed, self.epoch = int(seed), int(epoch)
        self.pad = [float(c.image.min()) if c.image.size else 0.0 for c in self.cases]
        self._points: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def case_points(self, ci: int, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Dense (perturbed when asked) centerline points of case ``ci`` in ``epoch`` (default: the
        dataset's; cached for the latest epoch asked)."""
        epoch = self.epoch if epoch is None else int(epoch)
        key = (epoch, ci)
        if key not in self._points:
            if any(e != epoch for e, _ in self._points):  # a new epoch: the old perturbations are done with
                self._points.clear()
            graph = self.cases[ci].graph
            if graph is not None and len(graph) and self.attention.perturb:
                from coroseg.prior import perturb_centerline

                rng = np.random.default_rng(item_seed(self.seed, epoch, 1_000_000 + ci))
                graph = perturb_centerline(graph, rng, **self.attention.perturb_kwargs)
            pts, rad = centerline_points(graph, self.cases[ci].grid)
            n_fake = self.attention.spurious
            if n_fake > 0 and len(pts):
                rng = np.random.default_rng(item_seed(self.seed, epoch, 2_000_000 + ci))
                fpts, frad = spurious_points(pts, rad, self.cases[ci].grid.spacing, rng, n_fake)
                pts, rad = np.concatenate([pts, fpts]), np.concatenate([rad, frad])
            self._points[key] = (pts, rad)
        return self._points[key]

    def __getitem__(self, index: int | tuple[int, PatchItem]) -> dict:
        from coroseg.prior import extract_patch

        if isinstance(index, tuple):
            epoch, item = int(index[0]), index[1]
        else:
            epoch, item = self.epoch, self.items[index]
        case = self.cases[item.case]
        img = extract_patch(case.image, item.centre, self.patch_size, pad_value=self.pad[item.case])
        lab = extract_patch(case.label, item.centre, self.patch_size, pad_value=0)
        sample = {"image": np.asarray(img, np.float32)[None], "label": np.asarray(lab, np.float32)[None]}
        if self.attention is not None:
            pts, rad = self.case_points(item.case, epoch)
            sample["prior"] = attention_patch(pts, rad, item.centre, self.patch_size, case.grid.spacing,
                                              mode=self.attention.mode, dilation_mm=self.attention.dilation_mm)[None]
            drop = self.attention.dropout
            if drop > 0 and np.random.default_rng([item.seed, 7]).random() < drop:
                sample["prior"] = np.zeros_like(sample["prior"])
        if self.dims == 2:
            sample = {k: v[:, 0] for k, v in sample.items()}
        if self.augment is not None:
            self.augment.set_random_state(seed=item.seed)
            sample = self.augment(sample)
        image = torch.as_tensor(np.asarray(sample["image"]), dtype=torch.float32)
        if self.attention is not None:
            image = torch.cat([image, torch.as_tensor(np.asarray(sample["prior"]), dtype=torch.float32)], 0)
        label = (torch.as_tensor(np.asarray(sample["label"])) > 0.5).long()
        return {"image": image.contiguous(), "label": label.contiguous()}


def spurious_points(points_idx: np.ndarray, radii: np.ndarray, spacing: Sequence[float], rng: np.random.Generator,
                    n_curves: int, *, length_mm: tuple[float, float] = (10.0, 40.0), offset_mm: float = 15.0,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Fake centerline pieces near a real one: what an imperfect locator adds.

    Training the crop model with these in its attention channel teaches it that attention
    without image evidence is not a vessel, so false centerline branches from the automatic
    locator do not turn into false vessels.

    Parameters
    ----------
    points_idx : (N, 3) ndarray
        Real centerline points, fractional indices (k, j, i); N >= 1.
    radii : (N,) ndarray, mm
        Their radii; fake points get radii drawn from these.
    spacing : (3,) mm, array order
    rng : numpy.random.Generator
    n_curves : int
        Number of fake pieces.
    length_mm : (float, float)
        Each piece's length is uniform in this range.
    offset_mm : float
        A piece starts at a random real point moved by up to this much per axis.

    Returns
    -------
    points : (M, 3) ndarray, fractional indices
    radii : (M,) ndarray, mm
        Smooth random curves sampled every half the smallest voxel side.
    """
    sp = np.asarray(spacing, float)
    step = 0.5 * float(sp.min())
    out_p, out_r = [], []
    for _ in range(int(n_curves)):
        start = points_idx[rng.integers(len(points_idx))] * sp + rng.uniform(-offset_mm, offset_mm, 3)
        direction = rng.normal(size=3)
        direction /= max(float(np.linalg.norm(direction)), 1e-9)
        n = max(2, int(rng.uniform(*length_mm) / step))
        pos = np.empty((n, 3))
        cur = start
        for k in range(n):
            pos[k] = cur
            direction = direction + rng.normal(scale=0.05, size=3)  # a gentle bend
            direction /= max(float(np.linalg.norm(direction)), 1e-9)
            cur = cur + step * direction
        out_p.append(pos / sp)
        r = float(radii[rng.integers(len(radii))]) if len(radii) else 1.0
        out_r.append(np.full(n, r))
    if not out_p:
        return np.zeros((0, 3)), np.zeros(0)
    return np.concatenate(out_p), np.concatenate(out_r)


def attention_patch(points_idx: np.ndarray, radii: np.ndarray, centre: Sequence[int], size: Sequence[int],
                    spacing: Sequence[float], *, mode: str = "gaussian", dilation_mm: float = 1.0) -> np.ndarray:
    """The attention channel on one patch, float32 ``size``.

    Equal to :func:`coroseg.prior.attention_channel` on the patch grid, computed from the
    case's dense centerline points (``attention_from_points`` uses only those that reach it).
    """
    from coroseg.prior import attention_from_points

    size = np.asarray(size, dtype=int)
    start = np.asarray(centre, dtype=int) - size // 2
    return np.asarray(attention_from_points(np.asarray(points_idx, float).reshape(-1, 3) - start, tuple(size),
                                            spacing, dilation_mm=float(dilation_mm),
                                            mode=mode, radii=radii), np.float32)


__all__ = ["PatchItem", "item_seed", "crop_centres_for_case", "grid_plan", "crop_plan", "shard", "patch_grid",
           "PatchDataset", "AttentionInput", "centerline_points", "attention_patch", "spurious_points"]

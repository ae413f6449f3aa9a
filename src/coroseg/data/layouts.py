"""Find cases (image, label, optional centerline) in the dataset layouts users have on disk.

Supported layouts, tried in this order:

- **split**: ``ROOT/{train,val,test}/{Normal,Diseased}/{CTCA,Annotations,Centerlines}/<id>.*``
  (what ``coroseg synth`` writes; the prior work's ``dataset/`` folder);
- **asoca**: ``ROOT/{Normal,Diseased}/{CTCA,Annotations,Centerlines}/<id>.*`` (the ASOCA
  download), or a single ``ROOT/{CTCA,Annotations,Centerlines}`` group;
- **imagecas**: ``ROOT/<n>.img.nii.gz`` + ``ROOT/<n>.label.nii.gz`` (possibly in sub-folders);
- **nnunet**: ``ROOT/imagesTr/<id>_0000.nii.gz`` + ``ROOT/labelsTr/<id>.nii.gz`` (+ ``imagesTs``).

Layouts without split folders get a deterministic seeded split, saved as ``splits.json``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from coroseg.errors import InputError
from coroseg.io.atomic import write_json
from coroseg.io.volume import strip_extension, volume_extension

SPLITS = ("train", "val", "test")
GROUPS = ("Normal", "Diseased")
CENTERLINE_EXTENSIONS = (".vtp", ".gml")


@dataclasses.dataclass(frozen=True)
class Case:
    """One case on disk. ``label``/``centerline`` are ``None`` when the dataset has none."""

    case_id: str
    image: Path
    label: Path | None = None
    centerline: Path | None = None
    group: str | None = None
    split: str | None = None

    def to_json(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}


def discover_cases(root: str | Path) -> tuple[str, list[Case]]:
    """Return ``(layout_name, cases)`` for the dataset at ``root``, sorted by case id.

    Raises :class:`InputError` when ``root`` is missing or matches no known layout.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError("dataset folder not found" if not root.exists() else "not a folder", root)
    for name, finder in (("split", _split_layout), ("asoca", _asoca_layout),
                         ("nnunet", _nnunet_layout), ("imagecas", _imagecas_layout)):
        cases = finder(root)
        if cases:
            return name, sorted(cases, key=lambda c: (SPLITS.index(c.split) if c.split in SPLITS else 9,
                                                      natural_key(c.case_id)))
    raise InputError(
        "no cases found; expected a split layout (train/val/test/Normal|Diseased/CTCA...), "
        "ASOCA (Normal|Diseased/CTCA, Annotations), ImageCAS (*.img.nii.gz + *.label.nii.gz) "
        "or nnU-Net raw (imagesTr/, labelsTr/)", root)


def natural_key(s: str) -> tuple:
    """Sort key putting ``case_2`` before ``case_10`` (digit runs compare as numbers)."""
    import re

    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", s) if t)


def _volumes(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {strip_extension(p): p for p in sorted(folder.iterdir())
            if p.is_file() and volume_extension(p) and not p.name.startswith(".")}


def _centerlines(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    if folder.is_dir():
        # prefer .vtp (the ASOCA format) when both exist
        for ext in CENTERLINE_EXTENSIONS[::-1]:
            for p in sorted(folder.glob(f"*{ext}")):
                out[p.name[: -len(ext)]] = p
    return out


def _group_cases(folder: Path, group: str | None, split: str | None) -> list[Case]:
    images = _volumes(folder / "CTCA")
    labels = _volumes(folder / "Annotations")
    lines = _centerlines(folder / "Centerlines")
    return [Case(cid, img, labels.get(cid), lines.get(cid), group, split) for cid, img in images.items()]


def _split_layout(root: Path) -> list[Case]:
    cases: list[Case] = []
    for split in SPLITS:
        for group in GROUPS:
            cases += _group_cases(root / split / group, group, split)
        cases += _group_cases(root / split, None, split)
    return cases


def _asoca_layout(root: Path) -> list[Case]:
    cases: list[Case] = []
    for group in GROUPS:
        cases += _group_cases(root / group, group, None)
    return cases or _group_cases(root, None, None)


def _nnunet_layout(root: Path) -> list[Case]:
    cases: list[Case] = []
    for img_dir, lab_dir, split in (("imagesTr", "labelsTr", None), ("imagesTs", "labelsTs", "test")):
        labels = _volumes(root / lab_dir)
        for key, img in _volumes(root / img_dir).items():
            if not key.endswith("_0000"):
                continue  # other channels; coroseg is single-channel CT
            cid = key[: -len("_0000")]
            cases.append(Case(cid, img, labels.get(cid), None, None, split))
    return cases


def _imagecas_layout(root: Path) -> list[Case]:
    cases: list[Case] = []
    for img in sorted(root.rglob("*.img.nii.gz")):
        cid = img.name[: -len(".img.nii.gz")]
        lab = img.with_name(f"{cid}.label.nii.gz")
        cases.append(Case(cid, img, lab if lab.exists() else None))
    return cases


def assign_splits(cases: list[Case], *, seed: int = 0, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
                  splits_file: str | Path | None = None) -> list[Case]:
    """Give cases without a split one, deterministically from ``seed``.

    Cases that already have a split (from folders) keep it. When ``splits_file`` exists it is
    read and obeyed (so a run is reproducible from its folder); otherwise, when given, the
    split is written there. At least one case goes to val and to test when there are >= 3.
    """
    if all(c.split for c in cases):
        return cases
    if splits_file is not None and Path(splits_file).exists():
        try:
            saved = json.loads(Path(splits_file).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read splits ({exc})", splits_file) from None
        lookup = {cid: s for s in SPLITS for cid in saved.get(s, [])}
        missing = [c.case_id for c in cases if not c.split and c.case_id not in lookup]
        if missing:
            raise InputError(f"case {missing[0]} is not in the saved splits", splits_file)
        return [c if c.split else dataclasses.replace(c, split=lookup[c.case_id]) for c in cases]
    free = [c for c in cases if not c.split]
    order = np.random.default_rng(seed).permutation(len(free))
    n = len(free)
    n_test = max(1, round(fractions[2] * n)) if n >= 3 else 0
    n_val = max(1, round(fractions[1] * n)) if n >= 3 else 0
    assigned: dict[str, str] = {}
    for rank, idx in enumerate(order):
        assigned[free[idx].case_id] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    out = [c if c.split else dataclasses.replace(c, split=assigned[c.case_id]) for c in cases]
    if splits_file is not None:
        write_json(splits_file, {s: [c.case_id for c in out if c.split == s] for s in SPLITS})
    return out


def load_dataset(root: str | Path, *, seed: int = 0, splits_file: str | Path | None = None,
                 require_labels: bool = True) -> list[Case]:
    """Discover cases, check labels exist, and assign splits (see :func:`assign_splits`)."""
    _, cases = discover_cases(root)
    if require_labels:
        missing = [c for c in cases if c.label is None]
        if missing:
            raise InputError(f"case {missing[0].case_id} has no label file (found image {missing[0].image.name})", root)
    return assign_splits(cases, seed=seed, splits_file=splits_file)

"""Find cases (image, label, optional centerline) in the dataset layouts users have on disk.

Supported layouts, tried in this order:

- **split**: ``ROOT/{train,val,test}/{Normal,Diseased}/{CTCA,Annotations,Centerlines}/<id>.*``
  (what ``coroseg synth`` writes; the prior work's ``dataset/`` folder);
- **asoca**: ``ROOT/{Normal,Diseased}/{CTCA,Annotations,Centerlines}/<id>.*`` (the ASOCA
  download), or a single ``ROOT/{CTCA,Annotations,Centerlines}`` group;
- **imagecas**: ``ROOT/<n>.img.nii.gz`` + ``ROOT/<n>.label.nii.gz`` (possibly in sub-folders);
- **nnunet**: nnU-Net's raw layout, ``ROOT/imagesTr/<id>_0000<ending>`` +
  ``ROOT/labelsTr/<id><ending>`` (+ ``imagesTs``, the test split), read as nnU-Net does: see
  :func:`read_nnunet_dataset` (``dataset.json``) and :func:`read_nnunet_splits`
  (``splits_final.json``).

Centerlines (split and asoca layouts), one per case, the first found of:
``Centerlines/<id>.vtp``, ``.vtk``, ``.gml``, ``.mrk.json``, a folder ``Centerlines/<id>/`` of
``.mrk.json`` curves (3D Slicer saves one curve per file), then the prior work's HCATNetwork
graphs ``Centerlines_graphs/<id>.GML`` (else its resampled ``<id>_0.5mm.GML``). Extensions
match in any case. A case without one gets its centerline extracted from the mask
(:func:`coroseg.data.cache.load_centerline`).

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
#: the prior work's HCATNetwork graphs, beside ``CTCA/``; ``<id>.GML``, else ``<id>_0.5mm.GML``
GRAPH_FOLDER = "Centerlines_graphs"
GRAPH_SUFFIXES = ("", "_0.5mm")


@dataclasses.dataclass(frozen=True)
class Case:
    """One case on disk. ``label``/``centerline`` are ``None`` when the dataset has none.

    ``centerline`` is a file or a folder of ``.mrk.json`` curves. ``label_values`` are the
    label file's values that mean coronary artery when the dataset says so (nnU-Net's
    ``dataset.json``; every other value is background); ``None``: the label is a 0/1 mask.
    """

    case_id: str
    image: Path
    label: Path | None = None
    centerline: Path | None = None
    group: str | None = None
    split: str | None = None
    label_values: tuple[int, ...] | None = None

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


def _volumes(folder: Path, ending: str | None = None) -> dict[str, Path]:
    """``{case id: file}`` of the volume files in ``folder`` (only names ending in ``ending`` if given)."""
    if not folder.is_dir():
        return {}
    return {(p.name[: -len(ending)] if ending else strip_extension(p)): p for p in sorted(folder.iterdir())
            if p.is_file() and volume_extension(p) and not p.name.startswith(".")
            and (ending is None or p.name.endswith(ending))}


def _centerlines(folder: Path) -> dict[str, Path]:
    """``{case id: centerline}`` of a ``Centerlines/`` folder (see the module docstring)."""
    if not folder.is_dir():
        return {}
    from coroseg.io.centerline_files import READ_EXTENSIONS, centerline_extension
    from coroseg.io.slicer import markups_files

    # preferred in READ_EXTENSIONS' order (.vtp: the ASOCA format), then a folder of curves
    best: dict[str, tuple[int, Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            rank, cid = (len(READ_EXTENSIONS), p.name) if markups_files(p) else (None, "")
        else:
            ext = centerline_extension(p)
            rank, cid = (None, "") if ext is None else (READ_EXTENSIONS.index(ext), p.name[: -len(ext)])
        if rank is not None and (cid not in best or rank < best[cid][0]):
            best[cid] = (rank, p)
    return {cid: p for cid, (_, p) in best.items()}


def _graphs(folder: Path) -> dict[str, Path]:
    """``{case id: GML}`` of the prior work's ``Centerlines_graphs/`` (``<id>.GML`` before ``<id>_0.5mm.GML``)."""
    if not folder.is_dir():
        return {}
    out: dict[str, Path] = {}
    for suffix in GRAPH_SUFFIXES[::-1]:
        for p in sorted(folder.iterdir()):
            stem = p.name[:-4]
            if p.is_file() and p.name.lower().endswith(".gml") and not p.name.startswith(".") and stem.endswith(suffix):
                out[stem[: len(stem) - len(suffix)]] = p
    return out


def _group_cases(folder: Path, group: str | None, split: str | None) -> list[Case]:
    images = _volumes(folder / "CTCA")
    labels = _volumes(folder / "Annotations")
    lines = {**_graphs(folder / GRAPH_FOLDER), **_centerlines(folder / "Centerlines")}
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
    if not ((root / "imagesTr").is_dir() or (root / "imagesTs").is_dir()):
        return []
    info = read_nnunet_dataset(root)
    channel = f"_{info.channel:04d}"
    cases: list[Case] = []
    for img_dir, lab_dir, split in (("imagesTr", "labelsTr", None), ("imagesTs", "labelsTs", "test")):
        labels = _volumes(root / lab_dir, info.file_ending)
        for key, img in _volumes(root / img_dir, info.file_ending).items():
            if not key.endswith(channel) or len(key) == len(channel):
                continue  # other channels; coroseg is single-channel CT
            cid = key[: -len(channel)]
            cases.append(Case(cid, img, labels.get(cid), None, None, split, info.label_values))
    splits = read_nnunet_splits(root, [c.case_id for c in cases if c.split is None])
    return [c if c.split or splits is None else dataclasses.replace(c, split=splits[c.case_id]) for c in cases]


# ---- nnU-Net raw datasets ------------------------------------------------------------------------
NNUNET_DATASET = "dataset.json"
NNUNET_SPLITS = "splits_final.json"
#: label names that mean the coronary arteries (lower case, matched as substrings)
VESSEL_WORDS = ("coronar", "vessel", "arter", "lumen", "foreground")
#: channel names that mean CT
CT_CHANNELS = ("CT", "CTA", "CTCA", "CCTA")


@dataclasses.dataclass(frozen=True)
class NnunetDataset:
    """What coroseg takes from an nnU-Net ``dataset.json``.

    Attributes
    ----------
    file_ending : str or None
        ``file_ending`` (``.nii.gz``, ``.nrrd``, ...): only files ending in it are cases.
    channel : int
        The CT channel (file suffix ``_0000`` for channel 0).
    label_values : tuple of int or None
        Label values of the coronary arteries; ``None`` when the file declares no labels.
    """

    file_ending: str | None = None
    channel: int = 0
    label_values: tuple[int, ...] | None = None


def read_nnunet_dataset(root: str | Path) -> NnunetDataset:
    """Read ``ROOT/dataset.json`` as nnU-Net v2 (and v1) writes it; defaults when it is absent.

    - ``file_ending``: the extension of every image and label file;
    - ``channel_names`` (v1: ``modality``), e.g. ``{"0": "CT"}``: the one channel, else the one
      named CT;
    - ``labels``, e.g. ``{"background": 0, "coronary_artery": 1}`` (v1: ``{"0": "background",
      "1": "vessel"}``; a region is a list of values): the values of every label named like
      coronary / vessel / artery / lumen / foreground (:data:`VESSEL_WORDS`), else of the one
      label other than background and ``ignore``.

    Raises
    ------
    InputError
        Unreadable JSON, a field of the wrong kind, an unsupported ``file_ending``, several
        channels none of which is CT, several labels none of which names the vessels. The
        message names ``dataset.json``.
    """
    path = Path(root) / NNUNET_DATASET
    if not path.is_file():
        return NnunetDataset()
    doc = _json(path)
    if not isinstance(doc, dict):
        raise InputError(f"expected a JSON object, found {type(doc).__name__}", path)
    ending = doc.get("file_ending")
    if ending is not None and (not isinstance(ending, str) or volume_extension(f"x{ending}") != ending.lower()):
        raise InputError(f"file_ending {ending!r} is not a volume format coroseg reads (.nii.gz, .nrrd, .mha, ...)",
                         path)
    return NnunetDataset(ending, _ct_channel(doc.get("channel_names", doc.get("modality")), path),
                         _vessel_values(doc.get("labels"), path))


def _ct_channel(channels: object, path: Path) -> int:
    if channels is None:
        return 0
    if not isinstance(channels, dict) or not channels:
        raise InputError("channel_names must be an object such as {\"0\": \"CT\"}", path)
    try:
        named = {int(k): str(v) for k, v in channels.items()}
    except ValueError:
        raise InputError(f"channel_names keys must be channel numbers, found {sorted(channels)!r:.60}", path) from None
    if len(named) == 1:
        return next(iter(named))
    ct = [k for k, v in named.items() if v.strip().upper() in CT_CHANNELS]
    if len(ct) != 1:
        shown = ", ".join(f"{k}: {v}" for k, v in sorted(named.items()))
        raise InputError(f"{len(named)} channels ({shown}) and {'none' if not ct else 'several'} named CT; "
                         "coroseg segments single-channel CT", path)
    return ct[0]


def _vessel_values(labels: object, path: Path) -> tuple[int, ...] | None:
    if labels is None:
        return None
    if not isinstance(labels, dict) or not labels:
        raise InputError("labels must be an object such as {\"background\": 0, \"vessel\": 1}", path)
    if all(isinstance(k, str) and k.strip().isdigit() for k in labels) and all(isinstance(v, str)
                                                                               for v in labels.values()):
        labels = {v: int(k) for k, v in labels.items()}  # nnU-Net v1: {"1": "vessel"}
    values: dict[str, tuple[int, ...]] = {}
    for name, v in labels.items():
        vs = v if isinstance(v, list) else [v]
        if not vs or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 255 for x in vs):
            raise InputError(f"label {name!r} has value {v!r}; expected a whole number 0..255 (or a list of them)",
                             path)
        values[str(name)] = tuple(vs)
    fg = {n: v for n, v in values.items() if n.lower() not in ("background", "ignore") and v != (0,)}
    picked = [v for n, v in fg.items() if any(w in n.lower() for w in VESSEL_WORDS)]
    if not picked and len(fg) == 1:
        picked = list(fg.values())
    if not picked:
        raise InputError(f"labels {', '.join(fg) or '(none but background)'}: none is named like coronary, vessel, "
                         "artery or foreground; rename the vessel label", path)
    return tuple(sorted({x for v in picked for x in v}))


def read_nnunet_splits(root: str | Path, case_ids: list[str]) -> dict[str, str] | None:
    """``{case id: "train" | "val"}`` from fold 0 of ``ROOT/splits_final.json``; ``None`` when absent.

    ``case_ids`` are the cases of ``imagesTr``: each must be in fold 0's train or val list, and
    every case listed there must exist (as nnU-Net requires).

    Raises
    ------
    InputError
        Not a list of ``{"train": [...], "val": [...]}`` folds, a case missing from fold 0, or
        a listed case that ``imagesTr`` does not hold.
    """
    path = Path(root) / NNUNET_SPLITS
    if not path.is_file():
        return None
    folds = _json(path)
    fold = folds[0] if isinstance(folds, list) and folds else None
    if not (isinstance(fold, dict) and all(isinstance(fold.get(k), list) for k in ("train", "val"))):
        raise InputError('expected a list of folds such as [{"train": [...], "val": [...]}, ...]', path)
    lookup = {str(cid): s for s in ("train", "val") for cid in fold[s]}
    missing = [c for c in case_ids if c not in lookup]
    if missing:
        raise InputError(f"case {missing[0]} of imagesTr is in neither train nor val of fold 0", path)
    extra = sorted(set(lookup) - set(case_ids))
    if extra:
        raise InputError(f"fold 0 lists case {extra[0]}, which imagesTr does not hold", path)
    return lookup


def _json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"cannot read JSON ({str(exc)[:120]})", path) from None


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

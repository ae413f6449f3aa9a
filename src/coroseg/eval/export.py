"""Export a dataset in nnU-Net v2 raw format, so users can compare coroseg against nnU-Net.

Layout written (``out_dir/Dataset<ID>_<name>/``)::

    dataset.json                 channel_names {"0": "CT"}, labels, numTraining, file_ending
    imagesTr/<case>_0000.nii.gz  train + val cases (nnU-Net runs its own cross-validation)
    labelsTr/<case>.nii.gz       uint8 {0, 1}
    imagesTs/<case>_0000.nii.gz  test cases
    labelsTs/<case>.nii.gz       test labels when present (nnU-Net ignores them; handy for
                                 ``coroseg evaluate --pred <nnunet output> --gt labelsTs``)
    splits_final.json            coroseg's train/val split as one nnU-Net fold; copy it to
                                 ``nnUNet_preprocessed/Dataset<ID>_<name>/`` to train fold 0 on
                                 exactly coroseg's split

Which cases go where: each case's ``split`` (train and val to ``imagesTr``, test to
``imagesTs``). :func:`export_dataset` takes the dataset's own split (its split folders, nnU-Net's
``splits_final.json``, else the seeded draw of :func:`coroseg.data.layouts.assign_splits`) or,
given ``run=``, the split a training run used (its ``splits.json``, :func:`run_split`): then
nnU-Net trains on exactly the cases the coroseg run trained on (fold 0 of ``splits_final.json``
= the run's train/val) and both are tested on the same held-out cases.

Images and labels are read with :func:`coroseg.io.volume.read_volume` (any supported format,
DICOM folders included) and written as NIfTI with their geometry unchanged. Each label must
share its image's grid and hold only {0, 1}. The dataset folder is built beside its target and
swapped in when complete: a re-export replaces an earlier one whole, and a failed one leaves it
untouched.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import numpy as np

from coroseg.errors import GeometryError, InputError
from coroseg.io.atomic import staged_folder, write_json
from coroseg.io.volume import grid_mismatch, read_volume, write_volume

log = logging.getLogger(__name__)

__all__ = ["CaseLike", "export_dataset", "export_nnunet", "run_split"]


class CaseLike(Protocol):
    """What :func:`export_nnunet` needs of a case (``coroseg.data.layouts.Case`` fits)."""

    case_id: str
    image: Path
    label: Path | None
    split: str | None


_ID_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def export_nnunet(cases: Iterable[CaseLike], out_dir: str | Path, *, dataset_id: int = 501,
                  name: str = "Coronary", progress: bool = True) -> Path:
    """Write ``cases`` as an nnU-Net v2 raw dataset.

    Parameters
    ----------
    cases : iterable of CaseLike
        Objects with ``case_id``, ``image`` (path), ``label`` (path or None) and ``split``
        (``"train"``, ``"val"`` or ``"test"``; ``None`` counts as train). Train/val cases
        need a label.
    out_dir : path
        The ``nnUNet_raw`` folder (created if needed).
    dataset_id : int
        nnU-Net dataset id, 1..999.
    name : str
        Dataset name (letters, digits, ``_``, ``-``).
    progress : bool
        Show a tqdm progress bar (on a terminal).

    Returns
    -------
    Path
        ``out_dir/Dataset<ID:03d>_<name>``.

    Raises
    ------
    InputError
        Bad id/name, duplicate or unsafe case ids, a train case without label, a label with
        values other than {0, 1}, unreadable files.
    GeometryError
        A label's grid differs from its image's (expected vs found).
    """
    from tqdm import tqdm

    cases = list(cases)
    if not 1 <= int(dataset_id) <= 999:
        raise InputError(f"nnU-Net dataset id must be 1..999, not {dataset_id}")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise InputError(f"dataset name {name!r} must use letters, digits, '_' or '-'")
    if not cases:
        raise InputError("no cases to export")
    seen: set[str] = set()
    for c in cases:
        if not _ID_OK.match(c.case_id):
            raise InputError(f"case id {c.case_id!r} is not a safe file name", c.image)
        if c.case_id in seen:
            raise InputError(f"case id {c.case_id!r} appears twice", c.image)
        seen.add(c.case_id)
        split = c.split or "train"
        if split not in ("train", "val", "test"):
            raise InputError(f"split must be train, val or test, not {c.split!r}", c.image)
        if split != "test" and c.label is None:
            raise InputError(f"{split} case {c.case_id!r} has no label; nnU-Net needs one", c.image)

    root = Path(out_dir) / f"Dataset{int(dataset_id):03d}_{name}"
    n_train = 0
    folds: dict[str, list[str]] = {"train": [], "val": []}
    # built beside the target and swapped in when complete: a failed or interrupted re-run
    # leaves an earlier export of the same dataset exactly as it was
    with staged_folder(root) as stage:
        for c in tqdm(cases, desc="export", unit="case", disable=None if progress else True):
            split = c.split or "train"
            tr = split != "test"
            img = read_volume(c.image)
            lab = None
            if c.label is not None:
                lab = read_volume(c.label, is_label=True)
                problem = grid_mismatch(img, lab)
                if problem:
                    raise GeometryError(f"label grid does not match image {Path(c.image).name}: {problem}", c.label)
                bad = np.setdiff1d(np.unique(lab.array), [0, 1])
                if bad.size:
                    raise InputError(f"label values {sorted(int(v) for v in bad)} found; expected only 0 and 1",
                                     c.label)
                lab.array = lab.array.astype(np.uint8)
            write_volume(img, stage / ("imagesTr" if tr else "imagesTs") / f"{c.case_id}_0000.nii.gz")
            if lab is not None:
                write_volume(lab, stage / ("labelsTr" if tr else "labelsTs") / f"{c.case_id}.nii.gz")
            if tr:
                n_train += 1
                folds[split].append(c.case_id)
        write_json(stage / "dataset.json", {
            "name": name,
            "description": "Coronary artery lumen segmentation in CT coronary angiography (exported by coroseg)",
            "channel_names": {"0": "CT"},
            "labels": {"background": 0, "coronary": 1},
            "numTraining": n_train,
            "file_ending": ".nii.gz",
            "overwrite_image_reader_writer": "SimpleITKIO",
        })
        if folds["val"]:
            write_json(stage / "splits_final.json", [folds])
    log.info("exported %d training and %d test cases to %s", n_train, len(cases) - n_train, root)
    return root


def export_dataset(data_dir: str | Path, out_dir: str | Path, *, run: str | Path | None = None,
                   dataset_id: int = 501, name: str = "Coronary", progress: bool = True) -> Path:
    """Export the dataset at ``data_dir`` as nnU-Net v2 raw data (``coroseg export --to nnunet``).

    Parameters
    ----------
    data_dir : path
        A dataset folder in any layout :func:`coroseg.data.layouts.load_dataset` reads; every
        case needs a label (with ``run``: every train and val case).
    out_dir : path
        The ``nnUNet_raw`` folder.
    run : path, optional
        A training run folder (``coroseg train --out``). Its own split (``RUN/splits.json``,
        see :func:`run_split`) decides which cases go to ``imagesTr`` (train + val, with the
        run's train/val as fold 0 of ``splits_final.json``) and which to ``imagesTs`` (test),
        instead of the dataset's split. Default: the dataset's own split.
    dataset_id, name, progress
        As :func:`export_nnunet`.

    Returns
    -------
    Path
        ``out_dir/Dataset<ID:03d>_<name>``.

    Raises
    ------
    InputError
        As :func:`export_nnunet`, and for ``run``: a folder without a readable
        ``config.json`` or ``splits.json``, or a split whose case ids are not the dataset's
        (the run was trained on other data).
    """
    from coroseg.data.layouts import discover_cases, load_dataset

    if run is None:
        cases = load_dataset(data_dir)
    else:  # the cases as found (split folders, if any), then the run's split; test cases need no label
        cases = run_split(run, discover_cases(data_dir)[1], data_dir=data_dir)
    return export_nnunet(cases, out_dir, dataset_id=dataset_id, name=name, progress=progress)


def run_split(run_dir: str | Path, cases: Iterable[CaseLike], *, data_dir: str | Path | None = None) -> list:
    """``cases`` with the split the training run in ``run_dir`` used (``RUN/splits.json``).

    ``coroseg train`` writes ``splits.json`` (``{"train": [ids], "val": [ids], "test": [ids]}``)
    into every run folder: the split folders' assignment, or the seeded draw for a dataset
    without them. Here it overrides whatever split the cases carry.

    Parameters
    ----------
    run_dir : path
        The run folder; its ``config.json`` is checked (:func:`coroseg.models.run.read_config`).
    cases : iterable of CaseLike
        The dataset's cases as found (:func:`coroseg.data.layouts.discover_cases`: ``split``
        from split folders, else ``None``); dataclasses, each copied with its new ``split``.
        A case in another split folder than the run's split says is moved, with a warning.
    data_dir : path, optional
        Where ``cases`` come from. When the run's ``config.json`` names another data folder
        (``data.root``) and the case ids still match, a warning says so (a moved or copied
        dataset); when they do not match, the error names both folders.

    Returns
    -------
    list of CaseLike
        The cases in their order, ``split`` replaced by the run's.

    Raises
    ------
    InputError
        Naming the file: no run folder, no or a bad ``config.json``, no ``splits.json`` (a
        model package, or a hand-made folder: its split is unknown), a ``splits.json`` that is
        not ``{"train": [...], "val": [...], "test": [...]}`` of distinct case ids, or case ids
        that differ from the dataset's (in either direction: a partial or another dataset).
    """
    from coroseg.models.run import read_config

    run_dir = Path(run_dir)
    config = read_config(run_dir)  # InputError naming the folder or config.json when it is no run
    path = run_dir / "splits.json"
    if not path.is_file():
        raise InputError("not found: the run's split is unknown (coroseg train writes it into every run folder; "
                         "a model package has none): export without --run", path)
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"cannot read splits ({str(exc)[:120]})", path) from None
    if not (isinstance(saved, dict) and set(saved) <= {"train", "val", "test"}
            and all(isinstance(v, list) and all(isinstance(i, str) for i in v) for v in saved.values())):
        raise InputError('expected {"train": [case ids], "val": [...], "test": [...]}', path)
    lookup: dict[str, str] = {}
    for split in ("train", "val", "test"):
        for cid in saved.get(split, []):
            if cid in lookup:
                raise InputError(f"case {cid!r} is in both {lookup[cid]} and {split}", path)
            lookup[cid] = split
    if not any(s == "train" for s in lookup.values()):
        raise InputError("the split has no training case", path)

    cases = list(cases)
    ids = {c.case_id for c in cases}
    root = config.data.get("root")  # the record of what the run was trained on (absent in hand-made runs)
    other = root is not None and data_dir is not None and Path(root).resolve() != Path(data_dir).resolve()
    only_data, only_run = sorted(ids - set(lookup)), sorted(set(lookup) - ids)
    if only_data or only_run:
        where = "" if data_dir is None else f" of {data_dir}"
        parts = [f"{len(only_data)} case(s){where} not in it (e.g. {only_data[0]})" if only_data else "",
                 f"{len(only_run)} of its case(s) missing from the data (e.g. {only_run[0]})" if only_run else ""]
        trained = f"; the run was trained on {root}" if other else ""
        raise InputError("the run's split does not match the dataset: "
                         + ", ".join(p for p in parts if p) + trained, path)
    if other:
        log.warning("%s: the run was trained on %s, not %s; the case ids match, so its split is used",
                    path, root, data_dir)
    moved = [c for c in cases if c.split and c.split != lookup[c.case_id]]
    if moved:
        log.warning("%s: %d case(s) lie in other split folders than the run's split says (e.g. %s: folder %s, "
                    "run %s); the run's split is used", path, len(moved), moved[0].case_id, moved[0].split,
                    lookup[moved[0].case_id])
    counts = {s: sum(v == s for v in lookup.values()) for s in ("train", "val", "test")}
    log.info("split of %s: %d train, %d val, %d test", run_dir, counts["train"], counts["val"], counts["test"])
    return [dataclasses.replace(c, split=lookup[c.case_id]) for c in cases]

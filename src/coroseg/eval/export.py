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

Images and labels are read with :func:`coroseg.io.volume.read_volume` (any supported format,
DICOM folders included) and written as NIfTI with their geometry unchanged. Each label must
share its image's grid and hold only {0, 1}. The dataset folder is built beside its target and
swapped in when complete: a re-export replaces an earlier one whole, and a failed one leaves it
untouched.
"""

from __future__ import annotations

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

__all__ = ["CaseLike", "export_nnunet"]


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

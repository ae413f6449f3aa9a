"""Write a phantom dataset in the split layout, with a manifest of every random parameter.

Layout::

    out_dir/
      manifest.json
      {train,val,test}/{Normal,Diseased}/CTCA/<case_id>.nrrd         int16 HU
      {train,val,test}/{Normal,Diseased}/Annotations/<case_id>.nrrd  uint8 lumen label
      {train,val,test}/{Normal,Diseased}/Centerlines/<case_id>.vtp   LPS mm (+ .gml)

Split rule (:func:`split_plan`): case ``i`` is ``Normal`` when ``i`` is even and ``Diseased``
when odd; the first 60 % of the cases go to ``train``, the next 20 % to ``val``, the rest to
``test``, with at least one ``val`` and one ``test`` case once there are 3 cases or more (2
cases: train + test; 1 case: train). Case ``i``'s parameters come from
``numpy.random.default_rng([seed, i])``, so a case does not depend on how many are written.

Real trees (``anatomy_dir``, :func:`anatomy_plan`) never straddle splits: with at most one case
per tree, case ``i`` renders tree ``i`` (name order); with more cases than trees, the trees are
split first (the same rule, over a permutation drawn from ``default_rng([seed, 7])``, so each seed
redraws it) and each split's cases cycle through that split's trees only. :func:`resplit_by_tree`
re-uses renders under a fresh tree split (hard links), so a new split needs no new rendering.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from coroseg.errors import InputError
from coroseg.io.atomic import write_json
from coroseg.io.centerline_files import write_centerline
from coroseg.io.volume import write_volume
from coroseg.synth.params import PRESETS, CaseParams, sample_case_params
from coroseg.synth.render import Phantom, render_phantom

log = logging.getLogger(__name__)
GENERATOR_VERSION = "1"


def split_plan(n_cases: int) -> list[tuple[str, str]]:
    """``(split, group)`` for each case index; see the module docstring for the rule."""
    if n_cases < 1:
        return []
    if n_cases == 1:
        counts = (1, 0, 0)
    elif n_cases == 2:
        counts = (1, 0, 1)
    else:
        n_val = max(1, int(round(0.2 * n_cases)))
        n_test = max(1, int(round(0.2 * n_cases)))
        counts = (n_cases - n_val - n_test, n_val, n_test)
    splits = ["train"] * counts[0] + ["val"] * counts[1] + ["test"] * counts[2]
    return [(s, "Normal" if i % 2 == 0 else "Diseased") for i, s in enumerate(splits)]


def tree_splits(n_trees: int, *, seed: int) -> list[tuple[int, str]]:
    """``(tree index, split)`` for each of ``n_trees`` trees: :func:`split_plan` over a permutation
    drawn from ``default_rng([seed, 7])``, so each seed redraws which trees are held out."""
    order = np.random.default_rng([seed, 7]).permutation(n_trees)
    return [(int(t), split) for t, (split, _) in zip(order, split_plan(n_trees))]


def anatomy_plan(plan: list[tuple[str, str]], trees: list[Path], *, seed: int,
                 source: Path | None = None) -> list[Path]:
    """The real tree each case of ``plan`` renders, no tree in two splits (module docstring).

    Raises :class:`~coroseg.errors.InputError` (naming ``source``) when a split has cases but
    the trees are too few to give it one of its own.
    """
    if len(plan) <= len(trees):
        return list(trees[:len(plan)])
    own: dict[str, list[Path]] = {"train": [], "val": [], "test": []}
    for t, split in tree_splits(len(trees), seed=seed):
        own[split].append(trees[t])
    used = dict.fromkeys(own, 0)
    out = []
    for split, _ in plan:
        if not own[split]:
            raise InputError(f"{len(plan)} cases need a {split} split, but {len(trees)} tree(s) cannot give "
                             f"train, val and test trees of their own: give at least 3 trees or at most "
                             f"{len(trees)} case(s)", source)
        out.append(own[split][used[split] % len(own[split])])
        used[split] += 1
    return out


def case_params(i: int, *, seed: int, preset: str, group: str, anatomy_case: str | None = None,
                shift: bool = False) -> CaseParams:
    """Case ``i``'s parameters; ``shift`` redraws its appearance outside the training ranges
    (:func:`coroseg.synth.shift.shift_appearance`, from its own generator ``[seed, i, 1]``)."""
    rng = np.random.default_rng([seed, i])
    params = sample_case_params(rng, preset, group == "Diseased", case_id=f"synth_{i:04d}", anatomy_case=anatomy_case)
    if shift:
        from coroseg.synth.shift import shift_appearance

        params = shift_appearance(params, np.random.default_rng([seed, i, 1]))
    return params


def write_case(ph: Phantom, base: Path, case_id: str, written: list[Path] | None = None) -> dict[str, str]:
    """Write image, label and centerlines (.vtp and .gml) of one case under ``base``.

    Each path is appended to ``written`` as soon as it exists, so a caller can undo a failed run.
    """
    files = {"image": base / "CTCA" / f"{case_id}.nrrd", "label": base / "Annotations" / f"{case_id}.nrrd",
             "centerline_vtp": base / "Centerlines" / f"{case_id}.vtp",
             "centerline_gml": base / "Centerlines" / f"{case_id}.gml"}
    for key, path in files.items():
        if key in ("image", "label"):
            write_volume(ph.image if key == "image" else ph.label, path)
        else:
            write_centerline(ph.centerlines, path)
        if written is not None:
            written.append(path)
    return {k: str(v) for k, v in files.items()}


def _remove(files: list[Path], root: Path) -> None:
    """Delete ``files`` and the folders under ``root`` that this left empty."""
    for f in files:
        f.unlink(missing_ok=True)
    for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        try:
            d.rmdir()
        except OSError:
            pass


def synth_dataset(out_dir: str | Path, n_cases: int, *, preset: str = "small", anatomy_dir: str | Path | None = None,
                  seed: int = 0, shift: bool = False, progress: bool = True) -> dict:
    """Generate ``n_cases`` phantom cases under ``out_dir`` and write ``manifest.json``.

    Parameters
    ----------
    out_dir : str or Path
        Created if needed; existing case files with the same names are replaced.
    n_cases : int
        At least 1.
    preset : {"small", "asoca"}
        ``asoca``: 512 x 512 x 160-260 voxels, 0.33-0.45 mm in-plane, 0.625 mm slices
        (about 10-25 s per case on 2 cores). ``small``: 0.8-1.0 mm, at most 160 voxels per
        axis (about 1-3 s per case), for demos and tests.
    anatomy_dir : str or Path, optional
        ASOCA-style folder with ``Annotations/*.nrrd`` and ``Centerlines/*.vtp``: each case
        renders CT around a real tree instead of a procedural one; a tree's renders all go to one
        split (:func:`anatomy_plan`).
    seed : int
        Same seed -> byte-identical files.
    shift : bool
        Appearance outside the training ranges (:mod:`coroseg.synth.shift`): a test set for
        generalisation, never training data.
    progress : bool
        Show a tqdm progress bar over cases.

    Returns
    -------
    dict
        The manifest (also written to ``out_dir/manifest.json``).
    """
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    if int(n_cases) < 1:
        raise InputError(f"number of cases must be at least 1, found {n_cases}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("output exists and is not a folder", out)
    try:  # fail before rendering anything when the folder cannot be created
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot write output folder ({exc.strerror})", out) from None
    plan = split_plan(int(n_cases))
    real = None
    if anatomy_dir is not None:
        from coroseg.synth.realtree import list_anatomy_cases

        real = anatomy_plan(plan, list_anatomy_cases(anatomy_dir), seed=seed, source=Path(anatomy_dir))
    cases = []
    it = range(len(plan))
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="synth", unit="case", disable=None)  # None: off when stderr is no TTY
    t_all = time.perf_counter()
    written: list[Path] = []
    try:
        for i in it:
            split, group = plan[i]
            anat = real[i] if real else None
            params = case_params(i, seed=seed, preset=preset, group=group,
                                 anatomy_case=None if anat is None else anat.stem, shift=shift)
            if anat is not None:
                from coroseg.synth.realtree import render_anatomy_case

                ph = render_anatomy_case(params, anat)
            else:
                ph = render_phantom(params)
            files = write_case(ph, out / split / group, params.case_id, written)
            derived = {k: v for k, v in ph.derived.items() if k != "seconds"}
            log.info("%s: %s s", params.case_id, ph.derived.get("seconds"))
            cases.append({"case_id": params.case_id, "split": split, "group": group,
                          "files": {k: str(Path(v).relative_to(out)) for k, v in files.items()},
                          "params": params.to_dict(), "derived": derived})
    except BaseException:
        # nothing half-written: a dataset without its manifest would look valid
        _remove(written, out)
        raise
    manifest = {"generator": "coroseg.synth", "generator_version": GENERATOR_VERSION, "seed": int(seed),
                "preset": preset, "n_cases": int(n_cases),
                "anatomy_dir": None if anatomy_dir is None else str(anatomy_dir),
                "appearance": "shifted (coroseg.synth.shift)" if shift else "training ranges",
                "split_rule": "case i: Normal if i even else Diseased; first 60% train, next 20% val, rest test "
                              "(>=1 val and >=1 test from 3 cases); params from default_rng([seed, i]); real trees: "
                              "one split each (coroseg.synth.dataset.anatomy_plan)",
                "cases": cases}
    if real:
        manifest["anatomy_splits"] = {p.stem: split for p, (split, _) in zip(real, plan)}
    write_json(out / "manifest.json", manifest)
    log.info("wrote %d cases to %s in %.1f s", len(cases), out, time.perf_counter() - t_all)
    return manifest


def resplit_by_tree(sources: Sequence[str | Path], out_dir: str | Path, *, seed: int) -> dict:
    """The renders of the anatomy-mode datasets ``sources`` as one dataset under ``out_dir``, split by tree afresh.

    Every real tree the renders come from gets a split (:func:`tree_splits` with ``seed``) and all its
    renders go there, so a tree never straddles splits and another ``seed`` redraws the split without
    rendering again. Files are hard links (copies across file systems; every coroseg writer
    replaces a file rather than writing into it, so a render is never changed through its link); a
    case's id becomes ``<source folder name>_<case id>`` so the renders of several sources stay
    apart. ``out_dir`` must be new or empty. Returns the manifest (also written to
    ``out_dir/manifest.json``): ``seed`` lists the sources' render seeds, ``split_seed`` is ``seed``.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError("expected a new or empty folder (files left from another split would join this one)", out)
    names = [Path(s).name for s in sources]
    if len(set(names)) < len(names):
        raise InputError(f"source folders need distinct names (they prefix the case ids), found {names}",
                         Path(sources[0]))
    renders, first, render_seeds = [], {}, []
    for src in map(Path, sources):
        manifest_path = src / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read the dataset's manifest ({exc})", manifest_path) from None
        first = first or manifest
        render_seeds.append(manifest.get("seed"))
        for case in manifest.get("cases", []):
            tree = (case.get("derived") or {}).get("anatomy_case")
            if not tree:
                raise InputError(f"case {case.get('case_id')!r} was not rendered around a real tree "
                                 "(no derived.anatomy_case): expected an anatomy-mode dataset", manifest_path)
            renders.append((src, case, tree))
    trees = sorted({tree for _, _, tree in renders})
    if len(trees) < 3:
        raise InputError(f"{len(trees)} tree(s) cannot give train, val and test trees of their own: "
                         "give renders of at least 3 trees", Path(sources[0]))
    split_of = {trees[t]: split for t, split in tree_splits(len(trees), seed=seed)}
    cases, written = [], []
    for src, case, tree in renders:
        new_id = f"{src.name}_{case['case_id']}"
        split = split_of[tree]
        files = {}
        for key, rel in case["files"].items():
            old = src / rel
            dst = out / split / case["group"] / old.parent.name / old.name.replace(case["case_id"], new_id, 1)
            if not old.is_file():
                _remove(written, out)  # nothing half-laid-out: the split layout would look valid
                raise InputError(f"case {case['case_id']!r}: its {key} file is missing", old)
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(old, dst)
            except OSError:  # another file system: copy
                shutil.copy2(old, dst)
            written.append(dst)
            files[key] = str(dst.relative_to(out))
        params = {**case["params"], "case_id": new_id} if isinstance(case.get("params"), dict) else case.get("params")
        cases.append({**case, "case_id": new_id, "split": split, "files": files, "params": params,
                      "rendered_in": str(src)})
    manifest = {"generator": "coroseg.synth", "generator_version": GENERATOR_VERSION, "seed": render_seeds,
                "split_seed": int(seed),
                **{k: first.get(k) for k in ("preset", "anatomy_dir", "appearance")},
                "resplit_from": [str(s) for s in sources], "n_cases": len(cases),
                "split_rule": "real trees split by coroseg.synth.dataset.tree_splits(seed); each render goes to "
                              "its tree's split",
                "anatomy_splits": dict(sorted(split_of.items())), "cases": cases}
    write_json(out / "manifest.json", manifest)
    return manifest

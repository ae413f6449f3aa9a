"""Load, preprocess and keep training cases in memory.

Each case is read once, resampled to the model spacing, normalised with the training-set
intensity statistics and kept as a :class:`PreparedCase` (float32 image, uint8 label and the
centerline graph in world mm), so sampling patches never touches the disk.

Inside :func:`reuse_prepared` the prepared cases and the training statistics are also kept
across training runs in one process, keyed by the case files (path, size, modification time)
and the preparation settings: an experiment whose arms train on the same cases then reads and
resamples each case once per setting instead of once per run. Kept arrays are made read-only,
so a caller that changed one in place would fail at once instead of corrupting the next run.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
from collections.abc import Iterator, Sequence

import numpy as np

from coroseg.data.layouts import Case
from coroseg.data.levels import reference_volume
from coroseg.data.preprocess import intensity_from_samples, intensity_samples, normalise, target_spacing, to_model_grid
from coroseg.errors import GeometryError, InputError
from coroseg.io.centerline import CenterlineGraph
from coroseg.io.volume import Volume, grid_mismatch, read_volume, resample_to_grid

log = logging.getLogger(__name__)

#: :func:`coarse_label`: minimum linearly interpolated label value that counts as vessel
COVERAGE_THRESHOLD = 0.15

#: what :func:`reuse_prepared` keeps (``None``: not inside one)
_kept: dict | None = None


@dataclasses.dataclass
class PreparedCase:
    """One case at the model spacing.

    Attributes
    ----------
    case_id : str
    image : (Z, Y, X) ndarray of float32
        Normalised CT (see :func:`coroseg.data.preprocess.normalise`).
    label : (Z, Y, X) ndarray of uint8, {0, 1}
    grid : Volume
        Geometry of ``image`` (its array is ``label``), for index <-> world mapping.
    graph : CenterlineGraph or None
        Centerline in LPS mm (from the dataset file, else extracted from the label); ``None``
        when not needed (grid models).
    centerline_source : str
        ``"file"``, ``"label"`` or ``"none"``.
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray
    grid: Volume
    graph: CenterlineGraph | None = None
    centerline_source: str = "none"

    def centerline_index(self, step_mm: float | None = None) -> np.ndarray:
        """Dense centerline points as fractional array indices ``(N, 3)`` (k, j, i) on ``grid``."""
        from coroseg.prior.attention import centerline_points

        return centerline_points(self.graph, self.grid, step_mm=step_mm)[0]


def read_case(case: Case) -> tuple[Volume, Volume]:
    """Read a case's image and label, checking they share a grid (label is resampled onto the
    image grid when only its geometry differs by rounding; a different shape is an error)."""
    image = read_volume(case.image)
    label = read_volume(case.label, is_label=True)
    problem = grid_mismatch(image, label)
    if problem is not None:
        if image.shape != label.shape:
            raise GeometryError(f"label does not match image {case.image.name}: {problem}", case.label)
        label = resample_to_grid(label, image)
    if case.label_values is not None:  # nnU-Net's dataset.json named the vessel label(s); others are background
        label = label.with_array(np.isin(label.array, case.label_values).astype(np.uint8), is_label=True)
    values = np.unique(label.array)
    if not set(values.tolist()) <= {0, 1}:
        # a multi-class or 0/255 mask is a choice for the user, not something to guess
        shown = ", ".join(str(int(v)) for v in values[:8]) + (", ..." if len(values) > 8 else "")
        raise InputError(f"label values {{{shown}}} found; expected {{0, 1}} (a binary coronary mask)", case.label)
    return image, label


def load_centerline(case: Case, label: Volume) -> tuple[CenterlineGraph, str]:
    """The case's centerline: from its file (or folder of Slicer curves) when present, else
    extracted from ``label``.

    A file whose frame (``.vtp``/``.vtk``/``.gml`` may not state it) is resolved against
    ``label``; one that still lies outside the label's grid is refused
    (:func:`coroseg.io.centerline_files.check_centerline_in_image`), so a frame mix-up stops
    here instead of training on a wrong prior.
    """
    if case.centerline is not None:
        from coroseg.io.centerline_files import check_centerline_in_image, read_centerline

        graph = read_centerline(case.centerline, reference=label)
        check_centerline_in_image(graph, label, case.centerline)
        return graph, "file"
    from coroseg.prior import centerline_from_mask

    return centerline_from_mask(label), "label"


def training_statistics(cases: Sequence[Case], *, seed: int = 0,
                        reference: bool = False) -> tuple[tuple[float, float, float], dict]:
    """``(spacing, intensity)`` from the TRAINING cases: median spacing and HU statistics."""
    spacings, intensity = case_statistics(cases, seed=seed, reference=reference)
    return target_spacing(spacings), intensity


def case_statistics(cases: Sequence[Case], *, seed: int = 0,
                    reference: bool = False) -> tuple[list[tuple[float, float, float]], dict]:
    """Each case's native spacing and the HU statistics of :func:`intensity_stats`.

    ``reference``: each image is first mapped onto the fixed fat / blood-pool levels
    (:func:`coroseg.data.levels.reference_volume`), as training and inference will then see it;
    the returned intensity carries ``"reference": True`` so both apply that map.

    Cases are read one at a time and only their samples kept (not every volume at once). The
    intensity statistics are computed at each case's native spacing (resampling does not
    change the HU distribution materially and this avoids a second pass).
    """
    if not cases:
        raise ValueError("need at least one case")
    key = ("statistics", tuple(_files_key(c) for c in cases), seed, reference)
    if _kept is not None and key in _kept:
        spacings, intensity = _kept[key]
        return list(spacings), copy.deepcopy(intensity)
    rng = np.random.default_rng(seed)
    spacings, samples = [], []
    for c in cases:
        img, lab = read_case(c)
        if reference:
            img = _referenced(img, c, warn=True)
        spacings.append(tuple(img.spacing))
        samples.append(intensity_samples(img.array, lab.array, rng))
    intensity = intensity_from_samples(samples)
    if reference:
        intensity["reference"] = True
    if _kept is not None:
        _kept[key] = (list(spacings), copy.deepcopy(intensity))
    return spacings, intensity


def _referenced(image: Volume, case: Case, *, warn: bool = False) -> Volume:
    """``image`` on the fixed fat / blood-pool levels (:mod:`coroseg.data.levels`); as it is when they
    cannot be measured (said once per case, from the statistics pass, when ``warn``)."""
    out, levels = reference_volume(image)
    if levels.warning and warn:
        log.warning("%s: %s", case.case_id, levels.warning)
    return out


def coarse_label(label: Volume, image: Volume, *, coverage: float = COVERAGE_THRESHOLD) -> np.ndarray:
    """A vessel mask on ``image``'s (coarser) grid that keeps thin vessels connected.

    Nearest-neighbour resampling of a coronary mask to a coarser grid breaks vessels thinner
    than the new voxel into fragments (at twice the spacing a phantom's tree fell apart into
    ~40 pieces). Here the binary label is resampled with linear interpolation and every voxel
    whose interpolated value is at least ``coverage`` counts as vessel: a slightly thicker,
    connected tree, the right target for the coarse stage-1 locator, whose mask is only
    skeletonised.

    Parameters
    ----------
    label : Volume
        Binary label on its native grid.
    image : Volume
        Target grid (its array is not used).
    coverage : float in (0, 1]

    Returns
    -------
    (Z, Y, X) ndarray of uint8, ``image.shape``
    """
    soft = label.with_array((label.array > 0).astype(np.float32), is_label=False)
    return (resample_to_grid(soft, image, order=1, default=0.0).array >= coverage).astype(np.uint8)


def prepare_case(case: Case, spacing: Sequence[float], intensity: dict, *, centerline: bool,
                 label_mode: str = "nearest") -> PreparedCase:
    """Read, resample and normalise one case (and load/extract its centerline when asked).

    ``label_mode``: ``"nearest"`` resamples the label with nearest neighbour (the models),
    ``"coverage"`` with :func:`coarse_label` (the coarse locator).
    """
    if label_mode not in ("nearest", "coverage"):
        raise ValueError(f"label_mode must be 'nearest' or 'coverage', found {label_mode!r}")
    key = ("prepared", _files_key(case), tuple(float(v) for v in spacing), json.dumps(intensity, sort_keys=True),
           bool(centerline), label_mode)
    if _kept is not None and key in _kept:
        log.debug("%s: prepared case re-used", case.case_id)
        return dataclasses.replace(_kept[key], case_id=case.case_id)
    prepared = _prepare_case(case, spacing, intensity, centerline=centerline, label_mode=label_mode)
    if _kept is not None:
        for a in (prepared.image, prepared.label):
            a.flags.writeable = False
        _kept[key] = prepared
    return prepared


def _prepare_case(case: Case, spacing: Sequence[float], intensity: dict, *, centerline: bool,
                  label_mode: str) -> PreparedCase:
    image, label = read_case(case)
    if intensity.get("reference"):
        image = _referenced(image, case)
    graph, source = (None, "none")
    if centerline:
        graph, source = load_centerline(case, label)
    native = image
    image = to_model_grid(image, spacing)
    if image is native:  # already at the model spacing (read_case put the label on its grid)
        lab = label.array
    elif label_mode == "coverage" and image.shape != label.shape:
        lab = coarse_label(label, image)
    else:  # nearest neighbour straight onto the resampled image's grid (one resample)
        lab = resample_to_grid(label, image).array
    lab = (np.asarray(lab) > 0).astype(np.uint8)
    return PreparedCase(case.case_id, normalise(image.array, intensity), lab, image.with_array(lab, is_label=True),
                        graph, source)


@contextlib.contextmanager
def reuse_prepared() -> Iterator[None]:
    """Keep prepared cases and training statistics for re-use until the block ends.

    For several training runs on the same cases in one process (``coroseg experiment``'s arms
    and seeds): each case is read and resampled once per (spacing, intensity, label mode)
    instead of once per run. Memory grows with every distinct preparation kept (about 5 bytes
    per model-grid voxel); everything is released when the block ends. Nested blocks share
    the outer one's store.

    Examples
    --------
    >>> with reuse_prepared():          # doctest: +SKIP
    ...     for arm in arms:
    ...         train(data, out / arm, model=arm)
    """
    global _kept
    if _kept is not None:
        yield
        return
    _kept = {}
    try:
        yield
    finally:
        _kept = None


def _files_key(case: Case) -> tuple:
    """What identifies a case's content: its files' paths, sizes and modification times."""
    def ident(path):
        if path is None:
            return None
        st = path.stat()
        return str(path.resolve()), st.st_size, st.st_mtime_ns
    return (ident(case.image), ident(case.label), ident(case.centerline), case.label_values)


def prepare_cases(cases: Sequence[Case], spacing: Sequence[float], intensity: dict, *,
                  centerline: bool, label_mode: str = "nearest") -> list[PreparedCase]:
    """:func:`prepare_case` for every case (kept in memory: the cache)."""
    out, empty = [], []
    for c in cases:
        prepared = prepare_case(c, spacing, intensity, centerline=centerline, label_mode=label_mode)
        if not prepared.label.any():
            empty.append(c)
            continue
        out.append(prepared)
        log.debug("prepared %s: shape %s, centerline from %s", c.case_id, out[-1].image.shape,
                  out[-1].centerline_source)
    if cases and not out:
        raise InputError(f"all {len(cases)} labels are empty (no vessel voxels)",
                         cases[0].label.parent if cases[0].label else None)
    for c in empty:
        log.warning("%s: label is empty (no vessel voxels); case skipped", c.label)
    return out


__all__ = ["PreparedCase", "read_case", "load_centerline", "training_statistics", "case_statistics", "prepare_case",
           "prepare_cases", "reuse_prepared", "coarse_label", "COVERAGE_THRESHOLD"]

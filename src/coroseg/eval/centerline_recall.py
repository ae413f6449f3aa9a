"""Centerline recall: how much of the reference centerline lies inside a predicted mask, by vessel radius.

Voxel Dice is dominated by the thick proximal vessels; the thin distal branches, where a
centerline prior should help most, hardly move it. So the reference centerline is sampled every
0.5 mm and each sample is scored hit or miss (its voxel in the prediction), overall and per
radius band of the reference (the band edges in mm: :data:`RADIUS_BANDS`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from coroseg.io.centerline import CenterlineGraph
from coroseg.io.volume import Volume

#: (column suffix, lower mm, upper mm): thin distal branches, middle, proximal vessels
RADIUS_BANDS: tuple[tuple[str, float, float], ...] = (("thin", 0.0, 1.0), ("mid", 1.0, 1.5),
                                                     ("thick", 1.5, float("inf")))
#: the keys :func:`centerline_recall` returns
KEYS = ("cl_recall",) + tuple(f"cl_recall_{name}" for name, _, _ in RADIUS_BANDS)


def centerline_recall(graph: CenterlineGraph, pred: Volume, *, step_mm: float = 0.5,
                      bands: Sequence[tuple[str, float, float]] = RADIUS_BANDS) -> dict[str, float]:
    """Share of reference centerline samples (every ``step_mm``) inside ``pred``, overall and by radius.

    Parameters
    ----------
    graph : CenterlineGraph
        The reference centerline (LPS mm, radii in mm).
    pred : Volume
        The predicted mask (non-zero = vessel) on any grid; samples outside it are misses.

    Returns
    -------
    dict
        ``cl_recall`` and ``cl_recall_<band>`` for every band (a band with no samples: NaN).
        Each sample weighs the same, so a band's value approximates the length share of it found
        (the graph's own nodes are samples too: where they lie closer than ``step_mm`` they weigh
        a little more).
    """
    pts, rad = graph.dense_points(step_mm)
    out = {k: float("nan") for k in ("cl_recall",) + tuple(f"cl_recall_{n}" for n, _, _ in bands)}
    if len(pts) == 0:
        return out
    idx = np.rint(pred.world_to_index(pts)).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.array(pred.shape)), axis=1)
    hit = np.zeros(len(idx), bool)
    hit[inside] = pred.array[tuple(idx[inside].T)] > 0
    out["cl_recall"] = float(hit.mean())
    for name, lo, hi in bands:
        sel = (rad >= lo) & (rad < hi)
        if sel.any():
            out[f"cl_recall_{name}"] = float(hit[sel].mean())
    return out


__all__ = ["centerline_recall", "RADIUS_BANDS", "KEYS"]

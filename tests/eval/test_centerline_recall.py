"""Centerline recall by vessel radius (coroseg.eval.centerline_recall): known answers on straight segments."""

import math

import numpy as np
import pytest

from coroseg.eval.centerline_recall import KEYS, centerline_recall
from coroseg.io.centerline import CenterlineGraph
from coroseg.io.volume import Volume


def _segments() -> CenterlineGraph:
    """Three separate straight segments along x (y = z = 5 mm), one per radius band.

    thin: x = 0..9 mm, r 0.5; mid: x = 12..16, r 1.2; thick: x = 19..28, r 2.0 (node every 1 mm).
    """
    xs, radii, edges = [], [], []
    for lo, hi, r in ((0, 9, 0.5), (12, 16, 1.2), (19, 28, 2.0)):
        start = len(xs)
        xs += list(range(lo, hi + 1))
        radii += [r] * (hi - lo + 1)
        edges += [(i, i + 1) for i in range(start, len(xs) - 1)]
    pts = np.array([[x, 5.0, 5.0] for x in xs], float)  # LPS (x, y, z) mm
    return CenterlineGraph.from_points(pts, np.array(radii), edges)


def _mask(x_ranges) -> Volume:
    arr = np.zeros((10, 10, 32), np.uint8)  # (z, y, x), 1 mm, origin 0, identity
    for lo, hi in x_ranges:
        arr[5, 5, lo:hi + 1] = 1
    return Volume(arr, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), is_label=True)


def test_recall_by_band_known_answer():
    # half of the thin segment (x 0..4 of 0..9), all of the mid one, none of the thick one
    out = centerline_recall(_segments(), _mask([(0, 4), (12, 16)]), step_mm=1.0)
    assert set(out) == set(KEYS)
    assert out["cl_recall_thin"] == pytest.approx(0.5)
    assert out["cl_recall_mid"] == pytest.approx(1.0)
    assert out["cl_recall_thick"] == pytest.approx(0.0)
    assert out["cl_recall"] == pytest.approx(10 / 25)


def test_samples_outside_the_prediction_grid_are_misses_and_empty_bands_nan():
    g = CenterlineGraph.from_points(np.array([[0.0, 5, 5], [1, 5, 5], [40, 5, 5], [41, 5, 5]]),
                                    np.array([0.5, 0.5, 0.5, 0.5]), [(0, 1), (2, 3)])
    out = centerline_recall(g, _mask([(0, 31)]), step_mm=1.0)
    assert out["cl_recall"] == pytest.approx(0.5)  # x = 40, 41 lie beyond the 32-voxel grid
    assert math.isnan(out["cl_recall_mid"]) and math.isnan(out["cl_recall_thick"])


def test_empty_graph_gives_nan():
    out = centerline_recall(CenterlineGraph(), _mask([(0, 4)]))
    assert all(math.isnan(v) for v in out.values())

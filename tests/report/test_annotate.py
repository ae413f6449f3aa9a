"""Orientation letters from known direction matrices, the ruler's length in pixels, text sizes."""

from __future__ import annotations

import numpy as np
import pytest

from coroseg.report.annotate import (
    MIN_TEXT_PX,
    add_scale_bar,
    direction_letters,
    nice_length_mm,
    screen_letters,
    text_pt,
)

RAS = np.diag([-1.0, -1.0, 1.0])  # a NIfTI stored RAS: i runs to the patient's right, j to anterior


@pytest.mark.parametrize(("vector", "letters"), [
    ((1, 0, 0), "L"), ((-1, 0, 0), "R"), ((0, 1, 0), "P"), ((0, -1, 0), "A"), ((0, 0, 1), "S"), ((0, 0, -1), "I"),
    ((0.87, 0.5, 0), "LP"),  # 30 degrees oblique: both letters, the larger first
    ((0.98, -0.17, 0), "L"),  # 10 degrees: the small component is not named
    ((0, -0.6, -0.8), "IA"),
])
def test_direction_letters(vector, letters):
    assert direction_letters(vector) == letters


def test_direction_letters_zero_vector():
    with pytest.raises(ValueError, match="length 0"):
        direction_letters((0, 0, 0))


def test_screen_letters_axial_and_coronal_lps():
    # axial: rows j down, columns i right -> the radiological view (patient's right on screen left)
    assert screen_letters(np.eye(3), rows=1, cols=2) == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    # coronal, k drawn upwards: superior on top
    assert screen_letters(np.eye(3), rows=0, cols=2, rows_up=True) == {"left": "R", "right": "L", "top": "S",
                                                                         "bottom": "I"}


def test_screen_letters_follow_storage_order():
    # the same axial slice of a RAS-stored array is mirrored on screen: the letters say so
    assert screen_letters(RAS, rows=1, cols=2) == {"left": "L", "right": "R", "top": "P", "bottom": "A"}
    # a permuted storage: array axis 2 (ITK i) runs superior, axis 1 (j) anterior->posterior, axis 0 left
    perm = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert screen_letters(perm, rows=1, cols=2) == {"left": "I", "right": "S", "top": "A", "bottom": "P"}


def test_nice_length_mm():
    assert [nice_length_mm(f) for f in (100.0, 60.0, 25.0, 10.0, 1.0)] == [20.0, 10.0, 5.0, 2.0, 0.2]
    with pytest.raises(ValueError):
        nice_length_mm(0.0)


def test_scale_bar_length_in_pixels():
    """A 10 mm ruler on a 40 mm field drawn 400 px wide is 100 px long (10 px per mm)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 4), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(np.zeros((80, 80)), cmap="gray", extent=(0, 40, 40, 0), vmin=0, vmax=1)  # 0.5 mm pixels
    ax.set_axis_off()
    add_scale_bar(ax, 10.0, fontsize=1)  # tiny label: the longest white run is the bar
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    white = (rgb > 200).all(axis=-1)
    runs = []
    for row in white:
        edges = np.flatnonzero(np.diff(np.r_[0, row.astype(int), 0]))
        runs += list(edges[1::2] - edges[::2])
    assert abs(max(runs) - 100) <= 2
    rows = np.flatnonzero(white.sum(axis=1) >= 95)
    assert 3 <= len(rows) <= 6  # 4 px thick


def test_text_pt():
    assert text_pt(MIN_TEXT_PX, 72) == MIN_TEXT_PX
    assert text_pt(15, 100) == pytest.approx(10.8)

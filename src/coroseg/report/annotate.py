"""What a slice figure needs to be read on its own: orientation letters, a mm scale bar, text sizes.

A radiologist reads a slice by its letters (3D Slicer and every PACS viewer put R/L, A/P, S/I at
the view's edges) and judges a vessel's calibre by a ruler; a figure without them can be read the
wrong way round, and a figure whose text shrinks below ~12 px on the page cannot be read at all.

Letters come from the volume's direction matrix (:class:`coroseg.io.volume.Volume`: column ``c``
of ``direction`` is the LPS world direction of ITK index axis ``c`` = array axis ``2 - c``), so
they say what is on the screen whatever the storage order (RAS NIfTI, flipped or permuted NRRD).

Sizes: the report is read in a browser window 1400 px wide; its page leaves
:data:`REPORT_WIDTH_PX` for a figure, and every text drawn on a figure is at least
:data:`MIN_TEXT_PX` pixels high when the figure is shown at its own size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["REPORT_WIDTH_PX", "MIN_TEXT_PX", "text_pt", "direction_letters", "screen_letters",
           "add_orientation_letters", "nice_length_mm", "add_scale_bar"]

#: widest figure shown unscaled in a 1400 px window (scroll bar, margins and padding take ~105 px)
REPORT_WIDTH_PX = 1260
#: smallest text height on a figure, pixels at the figure's own size (12 px: a browser's small print)
MIN_TEXT_PX = 12

#: LPS world axis -> (letter of the negative direction, letter of the positive direction)
_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))


def text_pt(px: float, dpi: float) -> float:
    """Font size in points that is ``px`` pixels high at ``dpi`` (matplotlib sizes text in points)."""
    return float(px) * 72.0 / float(dpi)


def direction_letters(vector: Sequence[float], *, oblique: float = 0.5) -> str:
    """Anatomical letters of an LPS world direction: ``(1, 0, 0)`` -> ``"L"``, ``(0, -1, 0)`` -> ``"A"``.

    An oblique direction gets the letters of every component at least ``oblique`` times the
    largest, largest first (``(0.87, 0.5, 0)`` -> ``"LP"``), as 3D Slicer labels oblique views.

    Parameters
    ----------
    vector : (3,) array of float
        Direction in LPS ``(x, y, z)``; need not be unit length.
    oblique : float in (0, 1]
        Relative size from which a secondary component adds its letter.
    """
    v = np.asarray(vector, dtype=float).reshape(3)
    mag = np.abs(v)
    if mag.max() == 0:
        raise ValueError("a direction of length 0 has no anatomical letter")
    order = np.argsort(-mag, kind="stable")
    return "".join(_LETTERS[a][int(v[a] > 0)] for a in order if mag[a] >= oblique * mag.max())


def _axis_vector(direction: np.ndarray, axis: int) -> np.ndarray:
    """World direction of array axis ``axis`` (0 = k, 1 = j, 2 = i): ITK column ``2 - axis``."""
    return np.asarray(direction, dtype=float).reshape(3, 3)[:, 2 - axis]


def screen_letters(direction: np.ndarray, *, rows: int, cols: int, rows_up: bool = False) -> dict[str, str]:
    """Letters at the four edges of a slice shown with array axis ``rows`` down and ``cols`` right.

    Parameters
    ----------
    direction : (3, 3) ndarray
        ``Volume.direction`` of the shown array.
    rows, cols : int
        Array axes (0 = k, 1 = j, 2 = i) along the screen's rows (top to bottom) and columns
        (left to right).
    rows_up : bool
        The rows axis is drawn increasing upwards (a coronal slice flipped so that superior is up).

    Returns
    -------
    dict with keys ``left``, ``right``, ``top``, ``bottom``.

    Examples
    --------
    >>> screen_letters(np.eye(3), rows=1, cols=2)  # an axial slice of an LPS volume
    {'left': 'R', 'right': 'L', 'top': 'A', 'bottom': 'P'}
    """
    right = _axis_vector(direction, cols)
    down = _axis_vector(direction, rows) * (-1.0 if rows_up else 1.0)
    return {"left": direction_letters(-right), "right": direction_letters(right),
            "top": direction_letters(-down), "bottom": direction_letters(down)}


def add_orientation_letters(ax, letters: dict[str, str], *, fontsize: float, colour: str = "#ffe680") -> None:
    """Write the letters of :func:`screen_letters` inside the four edges of ``ax``."""
    spots = {"left": (0.015, 0.5, "left", "center"), "right": (0.985, 0.5, "right", "center"),
             "top": (0.5, 0.985, "center", "top"), "bottom": (0.5, 0.015, "center", "bottom")}
    for side, (x, y, ha, va) in spots.items():
        ax.text(x, y, letters[side], transform=ax.transAxes, ha=ha, va=va, fontsize=fontsize, color=colour,
                fontweight="bold")


def nice_length_mm(field_mm: float, *, fraction: float = 0.3) -> float:
    """The longest of 1, 2, 5, 10, 20, 50, 100 mm (and 0.5 below) not over ``fraction`` of ``field_mm``.

    Examples
    --------
    >>> nice_length_mm(60.0), nice_length_mm(25.0), nice_length_mm(1.0)
    (10.0, 5.0, 0.2)
    """
    if field_mm <= 0:
        raise ValueError(f"field width must be positive, found {field_mm}")
    target = fraction * float(field_mm)
    candidates = [m * 10.0**e for e in range(-2, 4) for m in (1.0, 2.0, 5.0)]
    fitting = [c for c in candidates if c <= target]
    return round(max(fitting) if fitting else candidates[0], 6)


def add_scale_bar(ax, length_mm: float, *, fontsize: float, colour: str = "white", thickness_px: float = 4.0,
                  loc: str = "lower right"):
    """Draw a ``length_mm`` ruler (matplotlib's ``AnchoredSizeBar``) on an axes whose data units are mm.

    The bar is ``length_mm`` data units long, so it stays true whatever the panel's pixel size;
    its thickness is set in pixels from the axes' current scale.
    """
    from matplotlib.font_manager import FontProperties
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    x0, x1 = ax.get_xlim()
    width_px = ax.get_window_extent().width or 1.0
    mm_per_px = abs(x1 - x0) / width_px
    label = f"{length_mm:g} mm"
    bar = AnchoredSizeBar(ax.transData, length_mm, label, loc, pad=0.4, borderpad=0.3, sep=3, color=colour,
                          frameon=False, size_vertical=thickness_px * mm_per_px,
                          fontproperties=FontProperties(size=fontsize, weight="bold"))
    ax.add_artist(bar)
    return bar

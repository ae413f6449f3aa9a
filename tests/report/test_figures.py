"""Figure functions: valid PNG/GIF files of the expected size and frame count, empty masks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from coroseg.errors import InputError
from coroseg.report.annotate import MIN_TEXT_PX, REPORT_WIDTH_PX
from coroseg.report.figures import (
    FOOTER_PX,
    HEADER_PX,
    overlay_axes,
    overlay_figure,
    pick_slices,
    radius_profile_figure,
    training_curves,
)

SPACING = (1.0, 0.8, 0.8)  # as in conftest.py


def test_pick_slices_spread_and_empty():
    m = np.zeros((30, 4, 4), bool)
    m[5, :2] = True
    m[6] = True  # richest in the first half
    m[25, 0, 0] = True
    assert pick_slices(m, 2) == [6, 25]
    assert pick_slices(np.zeros((10, 2, 2), bool), 3) == [2, 4, 7]  # evenly spaced when empty
    assert pick_slices(np.ones((2, 2, 2), bool), 5) == [0, 1]  # never more slices than the volume has


def test_overlay_png_size(tmp_path, volumes):
    image, pred, ref = volumes
    p = overlay_figure(image, pred, ref, tmp_path / "o.png", spacing=SPACING, n_slices=3, dpi=50, panel_inches=2.0)
    with Image.open(p) as im:
        assert im.format == "PNG"
        assert im.size == (500, 100 + HEADER_PX + FOOTER_PX)  # 2.0 in x 5 panels x 50 dpi; panels + text rows


def _texts(fig):
    return [t for t in fig.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_fontsize"))
            if t.get_text().strip()]


def test_overlay_readable_at_1400_px(volumes):
    """Shown unscaled in a 1400 px window, every word on the overlay is at least MIN_TEXT_PX high."""
    image, pred, ref = volumes
    fig = overlay_axes(image, pred, ref, spacing=SPACING, prior="auto")
    width, _ = fig.get_size_inches() * fig.dpi
    assert width <= REPORT_WIDTH_PX
    texts = _texts(fig)
    assert min(t.get_fontsize() * fig.dpi / 72 for t in texts) >= MIN_TEXT_PX
    words = [t.get_text() for t in texts]
    assert "prediction (automatic centerline)" in words and "ground truth" in words
    assert words.count("10 mm") + words.count("5 mm") + words.count("20 mm") == 5  # a ruler on every panel
    assert {"R", "L", "A", "P", "S", "I"} <= set(words)


def test_overlay_names_oracle_and_follows_direction(volumes):
    image, pred, ref = volumes
    ras = np.diag([-1.0, -1.0, 1.0])
    words = [t.get_text() for t in _texts(overlay_axes(image, pred, ref, spacing=SPACING, prior="oracle",
                                                         direction=ras))]
    assert "prediction (ORACLE reference centerline)" in words
    fig = overlay_axes(image, pred, ref, spacing=SPACING, direction=ras)
    first = fig.axes[0]
    left = [t.get_text() for t in first.texts if t.get_position()[0] < 0.1]
    assert left == ["L"]  # a RAS-stored axial slice has the patient's left on the screen's left


def test_radius_profile_figure(tmp_path):
    from coroseg.eval.radius import BranchProfile

    d = np.linspace(0, 50, 101)
    profs = [BranchProfile(f"left tree, branch {i}", d, np.full_like(d, 1.5), np.full_like(d, 1.2)) for i in (1, 2)]
    p = radius_profile_figure(profs, tmp_path / "r.png", prior="auto")
    with Image.open(p) as im:
        assert im.size == (940, 300)
    with pytest.raises(InputError, match="no branch"):
        radius_profile_figure([], tmp_path / "e.png")


@pytest.mark.parametrize("which", ["pred", "ref", "both", "none_ref"])
def test_overlay_empty_masks(tmp_path, volumes, which):
    image, pred, ref = volumes
    empty = np.zeros_like(pred)
    args = {"pred": (empty, ref), "ref": (pred, empty), "both": (empty, empty), "none_ref": (empty, None)}[which]
    p = overlay_figure(image, *args, tmp_path / "o.png", spacing=SPACING, dpi=30)
    with Image.open(p) as im:
        assert im.format == "PNG"


def test_overlay_shape_mismatch(tmp_path, volumes):
    image, pred, ref = volumes
    with pytest.raises(InputError, match=r"pred shape \(40, 48, 47\) differs from the image shape \(40, 48, 48\)"):
        overlay_figure(image, pred[..., :47], ref, tmp_path / "o.png", spacing=SPACING)


def test_training_curves_generic_and_coroseg(tmp_path, fake_run):
    run, _, _ = fake_run
    p = training_curves(run / "metrics.csv", tmp_path / "c.png")
    with Image.open(p) as im:
        assert im.format == "PNG"
    csv = tmp_path / "other.csv"
    csv.write_text("epoch,loss,val_dice,lr\n1,1.0,0.2,0.01\n2,0.5,0.6,0.005\n")
    p = training_curves(csv, tmp_path / "g.png", dpi=50)
    with Image.open(p) as im:
        assert im.size == (500, 180)  # two panels, 10 x 3.6 in at 50 dpi
    bad = tmp_path / "bad.csv"
    bad.write_text("epoch,name\n1,a\n")
    with pytest.raises(InputError, match="no numeric loss or metric column"):
        training_curves(bad, tmp_path / "b.png")

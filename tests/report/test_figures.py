"""Figure functions: valid PNG/GIF files of the expected size and frame count, empty masks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from coroseg.errors import InputError
from coroseg.report.figures import overlay_figure, pick_slices, training_curves

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
        assert im.size == (500, 125)  # (2.0 * 5 panels, 2.0 + 0.5) in x 50 dpi


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

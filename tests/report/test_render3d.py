"""3D renders: frame count and size, TP/FP/FN colouring on a constructed case, empty masks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from coroseg.report.render3d import BACKGROUND, CLASS_COLOURS, classify_cells, render3d_gif, render3d_png, render_frame

SPACING = (1.0, 0.8, 0.8)  # as in conftest.py


def _dominant_class(rgb: np.ndarray) -> np.ndarray:
    """Per pixel: 0 background, else the class whose hue (colour direction) is nearest."""
    px = rgb.reshape(-1, 3).astype(float)
    out = np.zeros(len(px), int)
    fg = np.abs(px - BACKGROUND).sum(1) > 40
    cols = np.array([CLASS_COLOURS[k] for k in (1, 2, 3)], float)
    cols /= np.linalg.norm(cols, axis=1, keepdims=True)
    dirs = px[fg] / np.maximum(np.linalg.norm(px[fg], axis=1, keepdims=True), 1e-6)
    out[fg] = 1 + np.argmax(dirs @ cols.T, axis=1)
    return out.reshape(rgb.shape[:2])


def test_classify_cells_counts_shifted_cube():
    ref = np.zeros((20, 20, 20), bool)
    ref[5:15, 5:15, 5:15] = True
    pred = np.roll(ref, 3, axis=2)
    labels, pitch = classify_cells(pred, ref, spacing=(1, 1, 1))
    assert pitch == 1.0
    assert [(labels == k).sum() for k in (1, 2, 3)] == [700, 300, 300]  # 10*10*7 TP, 10*10*3 FP and FN


def test_tp_fp_fn_colours_present():
    ref = np.zeros((24, 24, 24), bool)
    ref[6:18, 6:18, 6:18] = True
    pred = np.roll(ref, 4, axis=2)  # FP on the +x side, FN on the -x side, TP in between
    frame = render_frame(pred, ref, spacing=(1, 1, 1), angle=0, size=96)
    assert frame.shape == (96, 96, 3)
    cls = _dominant_class(frame)
    counts = [(cls == k).sum() for k in (1, 2, 3)]
    assert all(c > 50 for c in counts), counts
    # frontal view, patient's left (+x) on screen right: FP right of TP right of FN
    cols = [np.argwhere(cls == k)[:, 1].mean() for k in (3, 1, 2)]
    assert cols == sorted(cols)


def test_gif_frames_and_size(tmp_path, volumes):
    _, pred, ref = volumes
    p = render3d_gif(pred, ref, tmp_path / "r.gif", spacing=SPACING, n_frames=6, size=64)
    with Image.open(p) as im:
        assert im.format == "GIF"
        assert im.size == (64, 64)
        assert im.n_frames == 6
    p = render3d_png(pred, None, tmp_path / "r.png", spacing=SPACING, size=80)
    with Image.open(p) as im:
        assert (im.format, im.size) == ("PNG", (80, 80))


@pytest.mark.parametrize("with_ref", [True, False])
def test_empty_masks(tmp_path, with_ref):
    e = np.zeros((8, 8, 8), bool)
    p = render3d_gif(e, e if with_ref else None, tmp_path / "e.gif", spacing=(1, 1, 1), n_frames=2, size=32)
    with Image.open(p) as im:
        assert im.n_frames == 2
    frame = render_frame(e, e, spacing=(1, 1, 1), size=16)
    assert (frame == BACKGROUND).all()


def test_only_false_negatives_are_blue():
    ref = np.zeros((12, 12, 12), bool)
    ref[3:9, 3:9, 3:9] = True
    cls = _dominant_class(render_frame(np.zeros_like(ref), ref, spacing=(1, 1, 1), size=48))
    assert set(np.unique(cls)) == {0, 3}


def test_real_tree_all_true_positive(shared, tmp_path):
    """A real ASOCA tree (512 x 512 x 204) against itself: only gold, in a few seconds."""
    from coroseg.io.volume import read_volume

    lab = read_volume(shared / "asoca-anatomy" / "Annotations" / "Normal_1.nrrd", is_label=True)
    m = lab.array > 0
    cls = _dominant_class(render_frame(m, m, spacing=lab.spacing, angle=30, size=128))
    assert set(np.unique(cls)) == {0, 1}
    assert (cls == 1).sum() > 500

"""Figures are written (atomically) and readable; the ASOCA check when the data is there."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from coroseg.io.volume import Volume, read_volume
from coroseg.prior import (
    centerline_from_mask,
    centerline_overlap,
    crop_centres,
    crops_gif,
    crops_vs_grid_gif,
    grid_tiles,
    plot_crops_vs_grid,
)

from .phantoms import y_mask


def test_crops_vs_grid_png_and_gif(tmp_path):
    label, _, _ = y_mask()
    image = Volume(label.array.astype(np.float32) * 300 - 50, label.spacing, label.origin, label.direction)
    g = centerline_from_mask(label)
    pts = label.world_to_index(g.dense_points(0.5)[0])
    size = (8, 16, 16)
    crops = crop_centres(pts, size=size, shape=label.shape)
    grid = grid_tiles(label.shape, size)
    png = plot_crops_vs_grid(image, crops, grid, size, tmp_path / "fig" / "crops.png", label=label)
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 100
    gif = crops_gif(image, crops, size, tmp_path / "crops.gif", grid_centres=grid, step=2, label=label)
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames >= 2
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["crops.gif", "crops.png", "fig"]  # no temp left
    with pytest.raises(ValueError, match="slice_index must be in"):
        plot_crops_vs_grid(image, crops, grid, size, tmp_path / "x.png", slice_index=999)


def test_crops_vs_grid_gif_side_by_side(tmp_path):
    """Two panels a frame, the slices crossed by crops, the vessel in its exact red on every frame."""
    label, _, _ = y_mask()
    image = label.with_array(label.array.astype(np.float32) * 0.6 + 0.2, is_label=True)  # shown as is
    g = centerline_from_mask(label)
    size = (8, 16, 16)
    crops = crop_centres(label.world_to_index(g.dense_points(0.5)[0]), size=size, shape=label.shape)
    gif = crops_vs_grid_gif(image, crops, grid_tiles(label.shape, size), size, tmp_path / "cg.gif", label=label,
                            step=3, panel_px=120)
    k0 = int((crops[:, 0] - size[0] // 2).min())
    k1 = int((crops[:, 0] - size[0] // 2 + size[0]).max())
    with Image.open(gif) as im:
        assert im.n_frames == len(range(max(0, k0), min(label.shape[0], k1), 3))
        w = im.size[0]
        assert w == 2 * 120 + 6  # two 120 px panels and the gap (the phantom's slices are square)
        for f in range(im.n_frames):
            im.seek(f)
            rgb = np.asarray(im.convert("RGB")).reshape(-1, 3)
            assert ((rgb == (220, 30, 30)).all(axis=1)).any()  # the vessel's red survives quantisation
    assert im.size[1] == 120 + 44 + 26
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cg.gif"]


@pytest.mark.shared
def test_asoca_case_matches_reference_centerline(shared):
    rc = pytest.importorskip("coroseg.io.centerline_files")
    label = read_volume(shared / "asoca-anatomy" / "Annotations" / "Normal_1.nrrd", is_label=True)
    ref = rc.read_centerline(shared / "asoca-anatomy" / "Centerlines" / "Normal_1.vtp", reference=label)
    ours = centerline_from_mask(label)
    assert len(ours.ostia()) == 2
    ov = centerline_overlap(ours, ref)
    assert ov["recall"] > 0.95 and ov["precision"] > 0.8
    # each reference ostium has one of ours within 5 mm
    mine = np.array([ours.graph.nodes[o]["pos"] for o in ours.ostia()])
    for o in ref.ostia():
        assert np.linalg.norm(mine - ref.graph.nodes[o]["pos"], axis=1).min() < 5.0

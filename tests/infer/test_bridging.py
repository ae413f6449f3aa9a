"""infer.bridging: a piece ahead of a tree end is joined, one beside the tree or behind it is not."""

from __future__ import annotations

import numpy as np

from coroseg.infer.bridging import bridge_pieces, end_directions
from coroseg.io.volume import Volume


def _tube(mask: np.ndarray, z: slice, y: int, x: int, r: int = 1) -> None:
    mask[z, y - r:y + r + 1, x - r:x + r + 1] = True


def _scene():
    """A vessel along z (z 5-30, wide at its ostium end z 5) broken by a 6-voxel gap, its distal
    part (z 36-55) ahead; a parallel 'vein' piece 6 voxels to the side (z 10-28); a blob behind
    the ostium."""
    tree = np.zeros((64, 24, 24), bool)
    _tube(tree, slice(5, 30), 12, 12)
    _tube(tree, slice(5, 14), 12, 12, r=2)
    distal, vein, behind = (np.zeros_like(tree) for _ in range(3))
    _tube(distal, slice(36, 56), 12, 12)
    _tube(vein, slice(10, 28), 12, 18)
    _tube(behind, slice(0, 2), 12, 18)
    return tree, distal, vein, behind


def behind_straight(tree: np.ndarray) -> np.ndarray:
    piece = np.zeros_like(tree)
    _tube(piece, slice(0, 3), 12, 12)
    return piece


def test_end_directions_point_out_of_the_vessel():
    from coroseg.prior.skeleton import centerline_from_mask

    tree = _scene()[0]
    grid = Volume(tree.astype(np.uint8), spacing=(0.5, 0.5, 0.5), is_label=True)
    pos, dirs = end_directions(centerline_from_mask(grid))
    # the ostium (the wide end) is no end point; the distal tip points +z (the world z axis is
    # the array's first axis for an identity direction)
    assert len(pos) == 1
    assert pos[0][2] > 10.0 and dirs[0][2] > 0.95


def test_bridge_joins_the_piece_ahead_only():
    tree, distal, vein, behind = _scene()
    grid = Volume(tree.astype(np.uint8), spacing=(0.5, 0.5, 0.5), is_label=True)
    out = bridge_pieces(tree, distal | vein | behind, grid, gap_mm=5.0)
    assert out[distal].all() and out[tree].all()
    assert not out[vein].any() and not out[behind].any()
    # nothing is followed out of the ostium, even straight ahead of it
    out = bridge_pieces(tree, behind_straight(tree), grid, gap_mm=5.0)
    assert not out[:4].any()
    # a gap wider than gap_mm is not crossed
    out = bridge_pieces(tree, distal | vein, grid, gap_mm=2.0)
    assert not out[distal].any()


def test_locator_mask_bridges_only_when_configured():
    import dataclasses

    from coroseg.infer.stages import locator_mask
    from coroseg.models.config import LocatorConfig

    tree = _scene()[0]
    distal = np.zeros_like(tree)
    distal[36:46, 12, 12] = True  # a thin distal piece, 1.25 mm^3: below every size rule
    prob = Volume(np.where(tree | distal, 0.9, 0.0).astype(np.float32), spacing=(0.5, 0.5, 0.5))
    cfg = LocatorConfig(spacing=(0.5, 0.5, 0.5), patch_size=(16, 16, 16), network={}, intensity={})
    assert not locator_mask(prob, cfg)[distal].any()
    assert locator_mask(prob, dataclasses.replace(cfg, bridge_mm=5.0))[distal].all()

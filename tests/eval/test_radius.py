"""Radius profiles: cylinders of known radius, main branches of a known tree."""

from __future__ import annotations

import numpy as np
import pytest

from coroseg.eval.radius import branch_profiles, main_branches
from coroseg.io.centerline import CenterlineGraph
from coroseg.io.volume import Volume

SPACING = (0.5, 0.5, 0.5)


def cylinder(radius_mm: float, shape=(80, 40, 40)) -> np.ndarray:
    """A cylinder along z through voxel centres (20, 20), (Z, Y, X) bool."""
    _, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    return ((y - 20) ** 2 + (x - 20) ** 2) * SPACING[1] ** 2 <= radius_mm**2


def axis_graph(z0: int, z1: int) -> CenterlineGraph:
    """The cylinder's axis from slice z0 to z1 (LPS mm of an identity-direction volume), ostium at z0."""
    pts = np.array([[20 * SPACING[2], 20 * SPACING[1], k * SPACING[0]] for k in range(z0, z1 + 1)])
    return CenterlineGraph.from_polylines([pts], [np.full(len(pts), 4.0)])


def test_cylinder_radius_profile():
    ref, pred = cylinder(4.0), cylinder(3.0)
    grid = Volume(np.zeros(ref.shape, np.uint8), SPACING)
    (prof,) = branch_profiles(pred, ref, grid, graph=axis_graph(10, 70))
    assert prof.distance_mm[0] == 0 and prof.distance_mm[-1] == pytest.approx(30.0)
    # the distance to the nearest background voxel CENTRE: at least the radius, less than one voxel more
    assert np.all((prof.ref_mm >= 4.0) & (prof.ref_mm < 4.0 + SPACING[1]))
    assert np.all((prof.pred_mm >= 3.0) & (prof.pred_mm < 3.0 + SPACING[1]))


def test_missed_stretch_reads_zero():
    ref = cylinder(3.0)
    pred = ref.copy()
    pred[30:50] = False  # 10 mm missed
    grid = Volume(np.zeros(ref.shape, np.uint8), SPACING)
    (prof,) = branch_profiles(pred, ref, grid, graph=axis_graph(10, 70), smooth_mm=0)
    missed = (prof.distance_mm > 10.5) & (prof.distance_mm < 19.5)  # slices 31..48, clear of the cut's edges
    assert np.all(prof.pred_mm[missed] == 0)
    assert np.all(prof.pred_mm[prof.distance_mm < 4.5] > 3.0)  # >= 3 mm from the cut's face at 10 mm


def test_profile_from_the_masks_own_skeleton():
    ref = cylinder(3.0)
    ref[:5] = ref[-5:] = False
    (prof,) = branch_profiles(ref, ref, Volume(ref.astype(np.uint8), SPACING))
    assert np.array_equal(prof.ref_mm, prof.pred_mm)
    inner = (prof.distance_mm > 5) & (prof.distance_mm < prof.distance_mm[-1] - 5)
    assert np.all((prof.ref_mm[inner] >= 3.0) & (prof.ref_mm[inner] < 3.5))


def _y_tree() -> CenterlineGraph:
    """Left tree: a 20 mm trunk splitting into a 60 mm and a 40 mm branch, a 5 mm twig off the long one;
    right tree: one 50 mm vessel. Ostia first; sides unlabelled (the left ostium has the larger x)."""
    trunk = np.array([[50.0, 0, z] for z in range(0, 21)])
    long_b = np.array([[50.0 + x, 0, 20] for x in range(0, 61)])
    short_b = np.array([[50.0, y, 20] for y in range(0, 41)])
    twig = np.array([[80.0, y, 20] for y in range(0, 6)])
    right = np.array([[0.0, 0, z] for z in range(0, 51)])
    lines = [np.r_[trunk, long_b[1:]], np.r_[trunk, short_b[1:]], np.r_[trunk, long_b[1:31], twig[1:]], right]
    return CenterlineGraph.from_polylines(lines, [np.ones(len(p)) for p in lines])


def test_main_branches_of_a_known_tree():
    names = [n for n, _ in main_branches(_y_tree())]
    # the left tree's two main vessels (the twig's path shares 50 of its 55 mm with the long one, the
    # short branch 20 of 60), then the right one
    assert names == ["left tree, branch 1 (80 mm)", "left tree, branch 2 (60 mm)", "right tree, branch 1 (50 mm)"]
    assert [n for n, _ in main_branches(_y_tree(), max_branches=2)] == [
        "left tree, branch 1 (80 mm)", "right tree, branch 1 (50 mm)"]  # every tree before a second branch


def test_main_branches_empty_graph():
    assert main_branches(CenterlineGraph()) == []


def test_radii_at_equals_scipy_edt(rng):
    """The shell shortcut gives scipy's exact Euclidean distance transform, anisotropic spacing included."""
    from scipy.ndimage import distance_transform_edt

    from coroseg.prior.skeleton import radii_at

    mask = np.zeros((20, 24, 24), bool)
    mask[3:17, 4:20, 6:14] = True
    mask[8:12, 2:22, 2:22] = True
    spacing = (1.2, 0.5, 0.7)
    idx = np.argwhere(np.ones(mask.shape, bool))[rng.choice(mask.size, 400, replace=False)]
    expected = distance_transform_edt(mask, sampling=spacing)[tuple(idx.T)]
    assert np.allclose(radii_at(mask, idx, spacing), expected)  # 0 outside the mask, as the EDT
    assert np.array_equal(radii_at(mask, np.array([[-1, 0, 0], [20, 0, 0]]), spacing), [0.0, 0.0])

"""Phantom geometry: labels vs centerlines, Murray's law, veins, lesions, determinism."""

from __future__ import annotations

import networkx as nx
import numpy as np

from coroseg.synth.anatomy import STRUCTURES
from coroseg.synth.params import CaseParams, sample_case_params
from coroseg.synth.render import build_vessels, render_phantom
from coroseg.synth.vessels import apply_lesions


def _voxels(vol, points):
    return np.round(vol.world_to_index(points)).astype(int)


def test_sample_params_replayable() -> None:
    a = sample_case_params(np.random.default_rng(5), "asoca", True)
    b = sample_case_params(np.random.default_rng(5), "asoca", True)
    assert a == b
    assert CaseParams.from_dict(a.to_dict()) == a
    assert a.grid.n_xy == 512 and a.grid.spacing_z == 0.625 and 0.33 <= a.grid.spacing_xy <= 0.45
    assert 1 <= len(a.disease.lesions) <= 4


def test_render_is_deterministic(normal_case) -> None:
    params, ph = normal_case
    again = render_phantom(CaseParams.from_dict(params.to_dict()))
    np.testing.assert_array_equal(again.image.array, ph.image.array)
    np.testing.assert_array_equal(again.label.array, ph.label.array)
    np.testing.assert_array_equal(again.centerlines.positions(), ph.centerlines.positions())


def test_volumes_types_and_geometry(normal_case) -> None:
    _, ph = normal_case
    assert ph.image.array.dtype == np.int16 and ph.label.array.dtype == np.uint8
    assert ph.image.array.min() >= -1024
    assert set(np.unique(ph.label.array)) == {0, 1}
    assert ph.image.same_grid(ph.label)
    np.testing.assert_array_equal(ph.image.direction, np.eye(3))


def test_every_centerline_point_is_inside_the_label(normal_case, diseased_case) -> None:
    for _, ph in (normal_case, diseased_case):
        k = _voxels(ph.label, ph.centerlines.positions())
        assert np.all((k >= 0) & (k < ph.label.shape)), "centerline leaves the image"
        assert ph.label.array[tuple(k.T)].all()


def test_label_stays_near_the_centerline(normal_case) -> None:
    # every label voxel lies within the local radius + one voxel diagonal of the centerline
    from scipy.spatial import cKDTree

    _, ph = normal_case
    pts, rad = ph.centerlines.dense_points(0.2)
    vox = ph.label.index_to_world(np.argwhere(ph.label.array > 0))
    d, i = cKDTree(pts).query(vox)
    diag = float(np.linalg.norm(ph.label.spacing))
    assert np.all(d <= rad[i] + diag)


def test_tree_anatomy_and_taper(normal_case) -> None:
    params, ph = normal_case
    g = ph.centerlines
    assert len(g.ostia()) == 2
    sides = {g.graph.nodes[n]["side"] for n in g.ostia()}
    assert sides == {"LEFT", "RIGHT"}
    assert nx.number_connected_components(g.graph) == 2
    names = {d["vessel"] for _, d in g.graph.nodes(data=True)}
    assert {"LM", "LAD", "LCx", "RCA", "PDA", "D1", "OM1", "AM1"} <= names
    r = g.radii()
    assert 1.5 <= r[g.ostia()].min() and r[g.ostia()].max() <= 2.5
    # every vessel tapers towards r_end; the main ones reach it exactly at their end points
    assert r[g.endpoints()].max() <= params.tree.r_end_mm + 1e-9
    ends = {d["vessel"]: d["radius"] for n, d in g.graph.nodes(data=True) if d["topology"] == "ENDPOINT"}
    for name in ("LAD", "LCx"):
        assert abs(ends[name] - params.tree.r_end_mm) < 1e-9, name


def test_murray_law_at_every_bifurcation(normal_case) -> None:
    params, ph = normal_case
    g = ph.centerlines.graph
    k = params.tree.murray_exponent
    dist = {}
    for o in ph.centerlines.ostia():
        dist.update(nx.single_source_shortest_path_length(g, o))
    inter = ph.centerlines.intersections()
    assert len(inter) >= 6
    for n in inter:
        nbrs = sorted(g.neighbors(n), key=lambda m: dist[m])
        parent, children = nbrs[0], nbrs[1:]
        assert dist[parent] < dist[n] < min(dist[c] for c in children)
        r_p = g.nodes[n]["radius"]
        total = sum(g.nodes[c]["radius"] ** k for c in children)
        assert abs(total - r_p ** k) / r_p ** k < 1e-6, f"node {n}"
        assert g.nodes[parent]["radius"] >= r_p


def test_veins_are_present_and_never_overlap_the_label(normal_case, diseased_case) -> None:
    for _, ph in (normal_case, diseased_case):
        sid = ph.structures.array
        vein = sid == STRUCTURES["vein"]
        assert vein.sum() > 50
        assert not (vein & (ph.label.array > 0)).any()


def test_vein_paths_keep_clear_of_the_main_arteries(normal_case) -> None:
    from scipy.spatial import cKDTree

    params, _ = normal_case
    _, _, vessels, veins, _ = build_vessels(params)
    gcv_pts, gcv_r = veins[0]
    for name in ("LAD",):
        v = vessels[name]
        d, i = cKDTree(v.points).query(gcv_pts)
        groove = int(np.argmax(np.isfinite(v.surf).all(axis=1))) + 10
        near = (d < 15) & (i > groove)  # alongside the LAD in its groove (the vein crosses it at the base)
        assert near.sum() > 20
        assert np.all(d[near] - gcv_r[near] - v.radius[i[near]] > 0)


def test_lesion_narrows_the_lumen_by_its_severity(diseased_case) -> None:
    params, _ = diseased_case
    _, _, vessels, _, _ = build_vessels(params)
    apply_lesions(params, vessels)
    for les in params.disease.lesions:
        v = vessels.get(les.vessel) or vessels["LAD"]
        ratio = v.r_lumen / v.radius
        assert ratio.min() <= 1 - les.severity + 0.02
        assert ratio.min() >= 1 - max(x.severity for x in params.disease.lesions) - 1e-9


def test_calcium_and_plaque_in_diseased_case(diseased_case) -> None:
    params, ph = diseased_case
    sid = ph.structures.array
    kinds = {les.kind for les in params.disease.lesions}
    if kinds & {"calcified", "mixed"}:
        assert (sid == STRUCTURES["calcium"]).any()
        assert not ((sid == STRUCTURES["calcium"]) & (ph.label.array > 0)).any()
    if kinds & {"soft", "mixed"}:
        assert (sid == STRUCTURES["plaque"]).any()


def test_hu_ranges_by_structure(normal_case) -> None:
    params, ph = normal_case
    img, sid = ph.image.array.astype(float), ph.structures.array
    med = {n: np.median(img[sid == i]) for n, i in STRUCTURES.items() if (sid == i).sum() > 200}
    assert med["lung"] < -600
    assert -200 < med["fat"] < 0
    assert abs(med["left_blood"] - (params.contrast.aorta + params.contrast.lv_offset)) < 60
    assert med["myocardium"] < med["left_blood"]


def test_tree_builds_for_many_seeds_with_one_branch_point_per_side_branch():
    """Regression: two branch fractions rounding to one point used to drop a branch point and
    crash the side-branch builder (IndexError) for some seeds (e.g. seed 1, 20 cases)."""
    from coroseg.synth.dataset import case_params
    from coroseg.synth.render import build_vessels
    from coroseg.synth.tree import _branch_points

    assert _branch_points([(0.5, 0.7), (0.5, 0.6), (0.99, 0.8)], 100) == [(50, 0.7), (51, 0.6), (88, 0.8)]
    assert _branch_points([(0.3, 0.7)], 20) == []
    for i in range(20):
        params = case_params(i, seed=1, preset="small", group="Diseased" if i % 2 else "Normal")
        build_vessels(params)  # must not raise

"""Patch plans, sharding and the per-patch attention channel."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from coroseg.data.cache import PreparedCase
from coroseg.data.sampling import (
    AttentionInput,
    PatchDataset,
    PatchItem,
    attention_patch,
    centerline_points,
    crop_plan,
    grid_plan,
    patch_grid,
    shard,
)
from coroseg.io.centerline import CenterlineGraph
from coroseg.io.volume import Volume
from coroseg.prior import attention_channel


def _case(shape=(20, 20, 20), spacing=(0.5, 0.5, 0.5), fg=None) -> PreparedCase:
    lab = np.zeros(shape, np.uint8)
    if fg is not None:
        lab[fg] = 1
    grid = Volume(lab, spacing, (10.0, -5.0, 3.0), is_label=True)
    line = np.stack([np.linspace(2, 18, 33), np.full(33, 10.0), np.full(33, 9.0)], 1)  # (k, j, i)
    graph = CenterlineGraph.from_polylines([grid.index_to_world(line)], [np.full(33, 1.0)])
    return PreparedCase("c", np.zeros(shape, np.float32), lab, grid, graph, "label")


def test_grid_plan_is_a_function_of_seed_and_epoch():
    cases = [_case(fg=(5, 5, 5)), _case()]
    a = grid_plan(cases, [8, 8, 8], samples_per_case=6, seed=3, epoch=1, fg_fraction=1.0)
    assert a == grid_plan(cases, [8, 8, 8], samples_per_case=6, seed=3, epoch=1, fg_fraction=1.0)
    assert a != grid_plan(cases, [8, 8, 8], samples_per_case=6, seed=3, epoch=2, fg_fraction=1.0)
    assert len(a) == 12 and sorted(i.case for i in a) == [0] * 6 + [1] * 6
    # fg_fraction 1: the only foreground voxel of case 0 is every case-0 centre
    assert {i.centre for i in a if i.case == 0} == {(5, 5, 5)}


def test_crop_plan_jitter_bounds_and_cap():
    cases = [_case()]
    centres = [np.array([[10, 10, 10], [4, 10, 10], [16, 10, 10]])]
    items = crop_plan(cases, centres, [8, 16, 16], seed=0, epoch=0, jitter=0.25, repeats=4)
    assert len(items) == 12
    for it in items:
        d = np.abs(np.array(it.centre)[None] - centres[0]).min(0)
        assert (d <= [2, 4, 4]).all()
    assert len(crop_plan(cases, centres, [8, 16, 16], seed=0, epoch=0, per_case=2)) == 2


def test_shard_pads_and_strides():
    items = [PatchItem(0, (i, 0, 0), i) for i in range(5)]
    r0, r1 = shard(items, 0, 2), shard(items, 1, 2)
    assert [i.seed for i in r0] == [0, 2, 4] and [i.seed for i in r1] == [1, 3, 0]


@pytest.mark.parametrize("mode", ["gaussian", "binary", "tube"])
def test_attention_patch_equals_attention_channel_on_patch_grid(mode):
    case = _case()
    pts, rad = centerline_points(case.graph, case.grid)
    for centre in [(10, 10, 10), (0, 3, 19), (18, 12, 2)]:
        ref = attention_channel(case.graph, patch_grid(case.grid, centre, (8, 12, 10)), dilation_mm=1.0, mode=mode)
        got = attention_patch(pts, rad, centre, (8, 12, 10), case.grid.spacing, mode=mode, dilation_mm=1.0)
        np.testing.assert_array_equal(got, ref)
    assert got.dtype == np.float32


def test_patch_dataset_sample_shapes_and_replay():
    case = _case(fg=(slice(2, 18), slice(9, 12), slice(8, 11)))
    items = [PatchItem(0, (10, 10, 10), 7), PatchItem(0, (4, 10, 9), 8)]
    from coroseg.data.augment import build_augmentation

    ds = PatchDataset([case], items, (8, 8, 8), 3, attention=AttentionInput(perturb=True),
                      augment=build_augmentation(3, prior=True))
    s = ds[0]
    assert s["image"].shape == (2, 8, 8, 8) and s["label"].shape == (1, 8, 8, 8)
    assert str(s["label"].dtype) == "torch.int64"
    again = PatchDataset([case], items, (8, 8, 8), 3, attention=ds.attention, augment=build_augmentation(3, prior=True))
    assert (again[0]["image"] == s["image"]).all()  # same item seed -> same sample
    ds2 = PatchDataset([case], [PatchItem(0, (10, 10, 10), 0)], (1, 8, 8), 2)
    assert ds2[0]["image"].shape == (1, 8, 8)


def test_attention_dropout_empties_the_prior_of_a_seeded_share_of_crops():
    case = _case(fg=(slice(2, 18), slice(9, 12), slice(8, 11)))
    items = [PatchItem(0, (10, 10, 10), seed) for seed in range(200)]
    att = AttentionInput(perturb=False)
    full = PatchDataset([case], items, (8, 8, 8), 3, attention=att)
    assert all(full[i]["image"][1].any() for i in range(0, 200, 20))  # the centerline crosses every crop
    half = PatchDataset([case], items, (8, 8, 8), 3, attention=dataclasses.replace(att, dropout=0.3))
    empty = [i for i in range(200) if not half[i]["image"][1].any()]
    assert 0.2 < len(empty) / 200 < 0.4  # ~30 %
    kept = [i for i in range(200) if i not in empty][:5]
    for i in kept:  # the others are untouched, and the image channel always is
        assert (half[i]["image"] == full[i]["image"]).all()
    assert all((half[i]["image"][0] == full[i]["image"][0]).all() for i in empty[:5])
    again = PatchDataset([case], items, (8, 8, 8), 3, attention=dataclasses.replace(att, dropout=0.3))
    assert empty == [i for i in range(200) if not again[i]["image"][1].any()]


def test_prepare_case_reads_centerline_file_else_extracts_it(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "train"))
    from train_helpers import make_dataset

    from coroseg.data.cache import prepare_case
    from coroseg.data.layouts import load_dataset
    from coroseg.io.centerline_files import write_centerline

    root = make_dataset(tmp_path / "ds", n_train=2, n_val=0)
    cases = load_dataset(root)
    # a straight line through the middle of case_0, as a .gml file next to it
    line = np.stack([np.linspace(5, 35, 31), np.full(31, 20.0), np.full(31, 20.0)], 1) * 0.8  # (k,j,i)*spacing
    world = line[:, ::-1]  # identity direction, zero origin: LPS (x, y, z) = (i, j, k) * spacing
    write_centerline(CenterlineGraph.from_polylines([world], [np.full(31, 1.0)]),
                     root / "train" / "Normal" / "Centerlines" / "case_0.gml")
    cases = load_dataset(root)
    intensity = {"clip": [-100.0, 500.0], "mean": 0.0, "std": 100.0}
    a = prepare_case(cases[0], (0.8, 0.8, 0.8), intensity, centerline=True)
    b = prepare_case(cases[1], (0.8, 0.8, 0.8), intensity, centerline=True)
    assert a.centerline_source == "file" and b.centerline_source == "label"
    pts = a.centerline_index()
    assert np.allclose(pts[:, 1:], 20.0) and pts[:, 0].min() == pytest.approx(5.0)
    # the extracted centerline runs inside the tubes of case_1
    idx = np.rint(b.centerline_index()).astype(int)
    assert b.label[tuple(idx.T)].mean() > 0.9
    assert a.image.dtype == np.float32 and a.image.max() == pytest.approx(5.0)  # (500 - 0) / 100


@pytest.mark.parametrize("dims", [2, 3])
def test_every_augmentation_transform_runs_on_its_patch_dimensionality(dims):
    """Each transform forced to fire (prob 1): a 2D patch once crashed MONAI's trilinear upsampling
    in RandSimulateLowResolutiond, but only on the ~15 % of patches that drew it."""
    import torch

    from coroseg.data.augment import build_augmentation

    shape = (1,) + (16,) * dims
    sample = {"image": torch.rand(shape), "label": (torch.rand(shape) > 0.9).long(), "prior": torch.rand(shape)}
    for t in build_augmentation(dims, prior=True).transforms:
        t.prob = 1.0
        t.set_random_state(0)
        out = t({k: v.clone() for k, v in sample.items()})
        assert out["image"].shape == shape, type(t).__name__


def test_reuse_prepared_reads_each_case_once_per_setting(tmp_path, monkeypatch):
    import os
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "train"))
    from train_helpers import make_dataset

    from coroseg.data import cache
    from coroseg.data.layouts import load_dataset

    root = make_dataset(tmp_path / "ds", n_train=2, n_val=0)
    case = load_dataset(root)[0]
    reads = []
    real_read = cache.read_case
    monkeypatch.setattr(cache, "read_case", lambda c: reads.append(c.case_id) or real_read(c))
    intensity = {"clip": [-100.0, 500.0], "mean": 0.0, "std": 100.0}
    spacing = (0.8, 0.8, 0.8)
    with cache.reuse_prepared():
        a = cache.prepare_case(case, spacing, intensity, centerline=False)
        b = cache.prepare_case(case, spacing, intensity, centerline=False)
        assert len(reads) == 1 and b.image is a.image  # the second run re-uses the first's arrays
        with pytest.raises(ValueError):
            a.image[0, 0, 0] = 1.0  # kept arrays are read-only: no run can change the next one's data
        cache.prepare_case(case, spacing, intensity, centerline=False, label_mode="coverage")
        cache.prepare_case(case, spacing, {**intensity, "mean": 1.0}, centerline=False)
        assert len(reads) == 3  # another label mode or normalisation is another preparation
        st = case.image.stat()
        os.utime(case.image, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the file changed on disk
        cache.prepare_case(case, spacing, intensity, centerline=False)
        assert len(reads) == 4
        s1 = cache.case_statistics([case], seed=0)
        s2 = cache.case_statistics([case], seed=0)
        assert s1 == s2 and len(reads) == 5
    c = cache.prepare_case(case, spacing, intensity, centerline=False)  # outside the block: nothing kept
    assert len(reads) == 6 and c.image.flags.writeable
    np.testing.assert_array_equal(c.image, a.image)

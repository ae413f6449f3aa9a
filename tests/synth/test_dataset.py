"""synth_dataset: layout, split rule, manifest, byte-identical reruns, files read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import coroseg.synth.dataset as ds
from coroseg.errors import InputError
from coroseg.io.centerline_files import read_centerline
from coroseg.io.volume import read_volume
from coroseg.synth.params import CaseParams
from coroseg.synth.render import render_phantom


@pytest.fixture
def tiny_cases(monkeypatch, shrink):
    real = ds.case_params
    monkeypatch.setattr(ds, "case_params", lambda *a, **k: shrink(real(*a, **k)))


def test_split_plan_rule() -> None:
    assert ds.split_plan(1) == [("train", "Normal")]
    assert ds.split_plan(2) == [("train", "Normal"), ("test", "Diseased")]
    assert ds.split_plan(3) == [("train", "Normal"), ("val", "Diseased"), ("test", "Normal")]
    plan = ds.split_plan(10)
    assert [s for s, _ in plan] == ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    assert [g for _, g in plan] == ["Normal", "Diseased"] * 5


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown preset 'huge'"):
        ds.synth_dataset(tmp_path, 1, preset="huge")
    with pytest.raises(InputError, match="at least 1, found 0"):
        ds.synth_dataset(tmp_path, 0)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_and_files_read_back(tmp_path: Path, tiny_cases) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    ds.synth_dataset(a, 2, seed=3, progress=False)
    ds.synth_dataset(b, 2, seed=3, progress=False)
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb) == sorted([
        "manifest.json",
        *(f"train/Normal/{d}/synth_0000.{e}" for d, e in
          [("CTCA", "nrrd"), ("Annotations", "nrrd"), ("Centerlines", "vtp"), ("Centerlines", "gml")]),
        *(f"test/Diseased/{d}/synth_0001.{e}" for d, e in
          [("CTCA", "nrrd"), ("Annotations", "nrrd"), ("Centerlines", "vtp"), ("Centerlines", "gml")])])
    assert all(fa[k] == fb[k] for k in fa), [k for k in fa if fa[k] != fb[k]]

    manifest = json.loads((a / "manifest.json").read_text())
    case = manifest["cases"][1]
    assert (case["case_id"], case["split"], case["group"]) == ("synth_0001", "test", "Diseased")
    params = CaseParams.from_dict(case["params"])
    assert params.diseased and params.disease.lesions
    # the manifest replays the case exactly, and the files read back with the foundation I/O
    ph = render_phantom(params)
    img = read_volume(a / case["files"]["image"])
    lab = read_volume(a / case["files"]["label"], is_label=True)
    assert img.array.dtype == np.int16 and lab.array.dtype == np.uint8
    np.testing.assert_array_equal(img.array, ph.image.array)
    np.testing.assert_array_equal(lab.array, ph.label.array)
    assert img.same_grid(ph.image)
    for key in ("centerline_vtp", "centerline_gml"):
        g = read_centerline(a / case["files"][key])
        assert len(g.ostia()) == 2
        assert len(g.endpoints()) == len(ph.centerlines.endpoints())
        assert abs(g.length_mm() - ph.centerlines.length_mm()) < 1e-6 * ph.centerlines.length_mm()
        k = np.round(lab.world_to_index(g.positions())).astype(int)
        assert lab.array[tuple(k.T)].all()


def test_case_params_depend_on_seed_and_index_only() -> None:
    a = ds.case_params(3, seed=1, preset="small", group="Diseased")
    assert a == ds.case_params(3, seed=1, preset="small", group="Diseased")
    assert a != ds.case_params(3, seed=2, preset="small", group="Diseased")
    assert a != ds.case_params(4, seed=1, preset="small", group="Diseased")
    assert a.case_id == "synth_0003" and a.diseased

"""coroseg.synth.dataset.resplit_by_tree: renders re-used under a fresh tree split."""

import json
import os
from pathlib import Path

import pytest

from coroseg.errors import InputError
from coroseg.synth.dataset import resplit_by_tree, tree_splits


def _fake_renders(folder: Path, trees: list[str]) -> Path:
    """A dataset folder shaped like ``synth --anatomy`` output: one render per tree, tiny files."""
    cases = []
    for i, tree in enumerate(trees):
        cid, group = f"synth_{i:04d}", "Normal" if i % 2 == 0 else "Diseased"
        files = {}
        for key, sub, ext in [("image", "CTCA", ".nrrd"), ("label", "Annotations", ".nrrd"),
                              ("centerline_vtp", "Centerlines", ".vtp")]:
            rel = Path("train") / group / sub / f"{cid}{ext}"
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(f"{folder.name} {tree} {key}")
            files[key] = str(rel)
        cases.append({"case_id": cid, "split": "train", "group": group, "files": files,
                      "derived": {"anatomy_case": tree}})
    (folder / "manifest.json").write_text(json.dumps({"generator": "coroseg.synth", "preset": "asoca",
                                                      "anatomy_dir": "anat", "cases": cases}))
    return folder


@pytest.fixture
def renders(tmp_path):
    trees = [f"Normal_{i}" for i in range(1, 13)]
    return [_fake_renders(tmp_path / f"render{k}", trees) for k in range(4)]


def test_every_tree_in_one_split_and_its_files_linked(renders, tmp_path):
    out = tmp_path / "seed0"
    m = resplit_by_tree(renders, out, seed=0)
    assert m["n_cases"] == 48 and len({c["case_id"] for c in m["cases"]}) == 48
    split_of_tree: dict[str, set] = {}
    for c in m["cases"]:
        split_of_tree.setdefault(c["derived"]["anatomy_case"], set()).add(c["split"])
        image = out / c["files"]["image"]
        assert image.parts[-4] == c["split"] and image.name == f"{c['case_id']}.nrrd"
        # the file is the render's own (same content as its source)
        src = Path(c["rendered_in"])
        assert image.read_text() == f"{src.name} {c['derived']['anatomy_case']} image"
        assert os.path.samefile(image, src / f"train/{c['group']}/CTCA/{c['case_id'].split('_', 1)[1]}.nrrd")
    assert all(len(s) == 1 for s in split_of_tree.values())
    per_split = {s: sum(1 for c in m["cases"] if c["split"] == s) for s in ("train", "val", "test")}
    assert per_split == {"train": 32, "val": 8, "test": 8}  # 8/2/2 trees x 4 renders
    assert json.loads((out / "manifest.json").read_text())["anatomy_splits"] == m["anatomy_splits"]
    assert m["preset"] == "asoca" and m["anatomy_dir"] == "anat"  # the report's synthetic-data banner


def test_seed_redraws_the_split_replayably(renders, tmp_path):
    a = resplit_by_tree(renders, tmp_path / "a", seed=0)["anatomy_splits"]
    b = resplit_by_tree(renders, tmp_path / "b", seed=1)["anatomy_splits"]
    again = resplit_by_tree(renders, tmp_path / "again", seed=0)["anatomy_splits"]
    assert a == again and a != b
    assert sorted(split for _, split in tree_splits(12, seed=5)) == ["test"] * 2 + ["train"] * 8 + ["val"] * 2


def test_procedural_dataset_is_an_input_error(tmp_path):
    src = _fake_renders(tmp_path / "p", ["a", "b", "c"])
    m = json.loads((src / "manifest.json").read_text())
    del m["cases"][0]["derived"]
    (src / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="anatomy-mode dataset") as e:
        resplit_by_tree([src], tmp_path / "o", seed=0)
    assert "manifest.json" in str(e.value)


def test_a_used_folder_or_twin_source_names_are_input_errors(renders, tmp_path):
    resplit_by_tree(renders, tmp_path / "used", seed=0)
    with pytest.raises(InputError, match="new or empty folder"):
        resplit_by_tree(renders, tmp_path / "used", seed=1)  # seed 0's files would stay beside seed 1's
    twin = _fake_renders(tmp_path / "other" / renders[0].name, ["x", "y", "z"])
    with pytest.raises(InputError, match="distinct names"):
        resplit_by_tree([renders[0], twin], tmp_path / "o", seed=0)


def test_the_layout_loads_and_each_case_keeps_its_tree(renders, tmp_path):
    from coroseg.data.layouts import discover_cases
    from coroseg.experiment import case_clusters

    out = tmp_path / "seed2"
    m = resplit_by_tree(renders, out, seed=2)
    layout, cases = discover_cases(out)
    assert layout == "split" and len(cases) == 48
    assert {c.case_id: c.split for c in cases} == {c["case_id"]: c["split"] for c in m["cases"]}
    assert all(c.centerline is not None for c in cases)  # the .vtp renamed with its case
    clusters = case_clusters(out)  # what the experiment's bootstrap resamples
    assert len(clusters) == 48 and set(clusters.values()) == {f"Normal_{i}" for i in range(1, 13)}


def test_a_missing_render_file_names_it_and_leaves_nothing(renders, tmp_path):
    victim = renders[2] / "train" / "Normal" / "Annotations" / "synth_0004.nrrd"
    victim.unlink()
    with pytest.raises(InputError, match="label file is missing") as e:
        resplit_by_tree(renders, tmp_path / "out", seed=0)
    assert str(victim) in str(e.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.*"))

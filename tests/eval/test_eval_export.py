"""nnU-Net v2 raw export."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from coroseg.errors import GeometryError, InputError
from coroseg.eval.export import export_nnunet
from coroseg.io.volume import Volume, read_volume, write_volume

INFER_HELPERS = Path(__file__).parents[1] / "infer"  # make_config: a valid config.json
SP, ORIGIN = (0.625, 0.4, 0.45), (-10.0, 20.0, 30.0)
DIRECTION = np.diag([1.0, -1.0, 1.0])


@dataclasses.dataclass
class C:  # duck-typed like coroseg.data.layouts.Case
    case_id: str
    image: Path
    label: Path | None
    split: str | None


def make(tmp_path, cid, split, *, label=True, label_spacing=SP, value=1):
    rng = np.random.default_rng(len(cid))
    img = Volume(rng.integers(-1000, 1000, (6, 8, 10)).astype(np.int16), SP, ORIGIN, DIRECTION)
    ip = write_volume(img, tmp_path / "src" / f"{cid}.nrrd")
    lp = None
    if label:
        lab = np.zeros((6, 8, 10), np.uint8)
        lab[2:4, 3:5, 4:7] = value
        lp = write_volume(Volume(lab, label_spacing, ORIGIN, DIRECTION, is_label=True),
                          tmp_path / "src" / f"{cid}_seg.nrrd")
    return C(cid, ip, lp, split)


def test_export_layout_and_dataset_json(tmp_path):
    cases = [make(tmp_path, "Normal_1", "train"), make(tmp_path, "Normal_2", "val"),
             make(tmp_path, "Normal_3", "test"), make(tmp_path, "Diseased_1", "test", label=False)]
    root = export_nnunet(cases, tmp_path / "raw", progress=False)
    assert root == tmp_path / "raw" / "Dataset501_Coronary"
    umask = os.umask(0)
    os.umask(umask)
    assert root.stat().st_mode & 0o777 == 0o777 & ~umask  # staged in a private temp folder, published as usual
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == ["dataset.json", "imagesTr/Normal_1_0000.nii.gz", "imagesTr/Normal_2_0000.nii.gz",
                     "imagesTs/Diseased_1_0000.nii.gz", "imagesTs/Normal_3_0000.nii.gz",
                     "labelsTr/Normal_1.nii.gz", "labelsTr/Normal_2.nii.gz", "labelsTs/Normal_3.nii.gz",
                     "splits_final.json"]
    ds = json.loads((root / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": "CT"}
    assert ds["labels"] == {"background": 0, "coronary": 1}
    assert ds["numTraining"] == 2 and ds["file_ending"] == ".nii.gz"
    assert json.loads((root / "splits_final.json").read_text()) == [{"train": ["Normal_1"], "val": ["Normal_2"]}]
    # voxels and geometry survive exactly
    src, out = read_volume(cases[0].image), read_volume(root / "imagesTr" / "Normal_1_0000.nii.gz")
    assert np.array_equal(src.array, out.array) and out.array.dtype == np.int16
    assert src.same_grid(out, atol=1e-5)
    lab = read_volume(root / "labelsTr" / "Normal_1.nii.gz", is_label=True)
    assert lab.array.dtype == np.uint8 and lab.array.sum() == 12


def test_export_refuses_bad_input(tmp_path):
    with pytest.raises(InputError, match="train case 'a' has no label"):
        export_nnunet([make(tmp_path, "a", "train", label=False)], tmp_path / "raw")
    with pytest.raises(GeometryError, match=r"b_seg\.nrrd: label grid does not match image b\.nrrd: spacing"):
        export_nnunet([make(tmp_path, "b", "train", label_spacing=(1.0, 0.4, 0.45))], tmp_path / "raw",
                      progress=False)
    with pytest.raises(InputError, match=r"label values \[2\] found"):
        export_nnunet([make(tmp_path, "c", "train", value=2)], tmp_path / "raw", progress=False)
    d = make(tmp_path, "d", "train")
    with pytest.raises(InputError, match="'d' appears twice"):
        export_nnunet([d, d], tmp_path / "raw")
    with pytest.raises(InputError, match="dataset id must be 1..999, not 1000"):
        export_nnunet([d], tmp_path / "raw", dataset_id=1000)
    with pytest.raises(InputError, match="not a safe file name"):
        export_nnunet([C("../x", d.image, d.label, "train")], tmp_path / "raw")


def test_export_failing_late_leaves_no_files(tmp_path):
    """Two good cases, then a bad label: none of the exported files stays behind."""
    cases = [make(tmp_path, "e1", "train"), make(tmp_path, "e2", "test"), make(tmp_path, "e3", "train", value=2)]
    with pytest.raises(InputError, match=r"e3_seg\.nrrd: label values \[2\] found"):
        export_nnunet(cases, tmp_path / "raw", progress=False)
    assert not [p for p in (tmp_path / "raw").rglob("*") if p.is_file()]


def test_label_values_beyond_uint8_are_refused(tmp_path):
    lab = np.zeros((4, 4, 4), np.int16)
    lab[1, 1, 1] = 257  # would wrap to 1 in uint8
    p = write_volume(Volume(lab, SP, ORIGIN, DIRECTION), tmp_path / "wide.nrrd")
    with pytest.raises(InputError, match=r"wide\.nrrd: label values outside 0\.\.255 found \(0\.\.257\)"):
        read_volume(p, is_label=True)


# --- export --run: the run's own split (issue 17) ---------------------------------------------------------------

#: the split ``coroseg train`` saved in the run folder, and the seeded draw the dataset gets on its own
RUN_SPLIT = {"train": ["c1", "c5"], "val": ["c4"], "test": ["c2", "c3"]}
OWN_SPLIT = {"train": ["c1", "c2", "c4"], "val": ["c5"], "test": ["c3"]}


def asoca_dataset(root: Path, ids=("c1", "c2", "c3", "c4", "c5")) -> Path:
    """``root/Normal/{CTCA,Annotations}/<id>.nrrd``: no split folders, so a split is drawn or taken from a run."""
    for cid in ids:
        c = make(root, cid, None)
        for kind, src in (("CTCA", c.image), ("Annotations", c.label)):
            (root / "Normal" / kind).mkdir(parents=True, exist_ok=True)
            src.rename(root / "Normal" / kind / f"{cid}.nrrd")
    return root


def fake_run(folder: Path, data: Path, split: dict | None = RUN_SPLIT) -> Path:
    """A run folder as far as the export reads it: a valid config.json (naming ``data``) and splits.json."""
    if str(INFER_HELPERS) not in sys.path:
        sys.path.insert(0, str(INFER_HELPERS))
    from infer_helpers import make_config

    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({**make_config("unet3d_grid"), "status": "complete",
                                                    "data": {"root": str(data), "layout": "asoca"}}))
    if split is not None:
        (folder / "splits.json").write_text(json.dumps(split))
    return folder


def exported(root: Path) -> dict:
    """``{folder: [case ids]}`` of an nnU-Net export, and fold 0 of its splits_final.json."""
    out = {d: sorted(p.name.split(".")[0].removesuffix("_0000") for p in (root / d).iterdir())
           for d in ("imagesTr", "labelsTr", "imagesTs", "labelsTs")}
    out["fold0"] = json.loads((root / "splits_final.json").read_text())[0]
    out["numTraining"] = json.loads((root / "dataset.json").read_text())["numTraining"]
    return out


def cli(argv: list, capsys) -> tuple[int, str, str]:
    from coroseg.cli import main

    capsys.readouterr()
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_export_with_run_takes_the_runs_split(tmp_path, capsys):
    data = asoca_dataset(tmp_path / "data")
    run = fake_run(tmp_path / "run", data)
    # without --run: the dataset's own (seeded) split
    code, out, _ = cli(["export", "--to", "nnunet", "--data", data, "--out", tmp_path / "own"], capsys)
    assert code == 0 and out == f"nnU-Net dataset: {tmp_path / 'own' / 'Dataset501_Coronary'}\n"
    own = exported(tmp_path / "own" / "Dataset501_Coronary")
    assert own["imagesTr"] == own["labelsTr"] == sorted(OWN_SPLIT["train"] + OWN_SPLIT["val"])
    assert own["imagesTs"] == own["labelsTs"] == OWN_SPLIT["test"]
    # with --run: the run's split, train + val in imagesTr (fold 0 = the run's train / val), test in imagesTs
    code, _, err = cli(["export", "--to", "nnunet", "--data", data, "--out", tmp_path / "raw", "--run", run], capsys)
    assert code == 0, err
    got = exported(tmp_path / "raw" / "Dataset501_Coronary")
    assert got == {"imagesTr": ["c1", "c4", "c5"], "labelsTr": ["c1", "c4", "c5"], "imagesTs": ["c2", "c3"],
                   "labelsTs": ["c2", "c3"], "fold0": {"train": ["c1", "c5"], "val": ["c4"]}, "numTraining": 3}
    assert "warning" not in err  # trained on this very folder: nothing to say


def test_the_runs_split_wins_over_split_folders(tmp_path, caplog):
    """A run's splits.json that moves cases out of their split folders: the run's split, and a warning."""
    from coroseg.data.layouts import discover_cases
    from coroseg.eval.export import export_dataset, run_split

    data = tmp_path / "data"
    for cid, split in (("c1", "train"), ("c2", "train"), ("c3", "val"), ("c4", "test")):
        c = make(tmp_path, cid, split)
        for kind, src in (("CTCA", c.image), ("Annotations", c.label)):
            (data / split / "Normal" / kind).mkdir(parents=True, exist_ok=True)
            src.rename(data / split / "Normal" / kind / f"{cid}.nrrd")
    run = fake_run(tmp_path / "run", data, {"train": ["c1"], "val": ["c3"], "test": ["c2", "c4"]})
    with caplog.at_level("WARNING", logger="coroseg"):
        cases = run_split(run, discover_cases(data)[1], data_dir=data)
    assert [(c.case_id, c.split) for c in cases] == [("c1", "train"), ("c2", "test"), ("c3", "val"), ("c4", "test")]
    assert "1 case(s) lie in other split folders than the run's split says (e.g. c2: folder train, run test)" \
        in caplog.text
    got = exported(export_dataset(data, tmp_path / "raw", run=run, progress=False))
    assert got["imagesTr"] == ["c1", "c3"] and got["imagesTs"] == ["c2", "c4"]
    assert got["fold0"] == {"train": ["c1"], "val": ["c3"]}


def test_a_run_of_a_moved_dataset_is_used_with_a_warning(tmp_path, caplog):
    from coroseg.eval.export import export_dataset

    data = asoca_dataset(tmp_path / "copy")
    (data / "Normal" / "Annotations" / "c3.nrrd").unlink()  # a test case needs no label
    run = fake_run(tmp_path / "run", tmp_path / "original")  # trained on a folder since moved or copied
    with caplog.at_level("WARNING", logger="coroseg"):
        root = export_dataset(data, tmp_path / "raw", run=run, progress=False)
    assert f"the run was trained on {tmp_path / 'original'}, not {data}; the case ids match, so its split is used" \
        in caplog.text
    got = exported(root)
    assert got["imagesTs"] == ["c2", "c3"] and got["labelsTs"] == ["c2"] and got["imagesTr"] == ["c1", "c4", "c5"]


def test_export_refuses_a_bad_run_folder(tmp_path, capsys):
    """One line naming the file, exit 2, and no export folder."""
    data = asoca_dataset(tmp_path / "data")
    out = tmp_path / "raw"
    argv = ["export", "--to", "nnunet", "--data", data, "--out", out, "--run"]

    def error(run) -> str:
        code, _, err = cli(argv + [run], capsys)
        assert code == 2 and err.count("\n") == 1 and err.startswith("coroseg: error: "), err
        return err.removeprefix("coroseg: error: ").rstrip("\n")

    empty = tmp_path / "empty"
    empty.mkdir()
    assert error(empty) == f"{empty / 'config.json'}: no config.json: is this a coroseg run folder?"
    assert "does not exist" in error(tmp_path / "nowhere")
    no_split = fake_run(tmp_path / "r1", data, None)
    assert error(no_split) == (f"{no_split / 'splits.json'}: not found: the run's split is unknown (coroseg train "
                               "writes it into every run folder; a model package has none): export without --run")
    bad = fake_run(tmp_path / "r2", data)
    (bad / "splits.json").write_text("{not json")
    assert error(bad).startswith(f"{bad / 'splits.json'}: cannot read splits (Expecting property name")
    (bad / "splits.json").write_text(json.dumps({"train": "c1"}))
    assert error(bad) == f'{bad / "splits.json"}: expected {{"train": [case ids], "val": [...], "test": [...]}}'
    (bad / "splits.json").write_text(json.dumps({**RUN_SPLIT, "test": ["c2", "c3", "c4"]}))
    assert error(bad) == f"{bad / 'splits.json'}: case 'c4' is in both val and test"
    # another dataset's run: the ids differ, in both directions
    other = fake_run(tmp_path / "r3", tmp_path / "elsewhere", {"train": ["c1", "x1"], "val": [], "test": ["x2"]})
    assert error(other) == (f"{other / 'splits.json'}: the run's split does not match the dataset: 4 case(s) of "
                            f"{data} not in it (e.g. c2), 2 of its case(s) missing from the data (e.g. x1); "
                            f"the run was trained on {tmp_path / 'elsewhere'}")
    # a dataset with a case the run never saw: refused too, even when the folder is the run's own
    asoca_dataset(data, ids=("c6",))
    assert error(fake_run(tmp_path / "r4", data)).endswith(
        "the run's split does not match the dataset: 1 case(s) of " f"{data} not in it (e.g. c6)")
    assert not out.exists()

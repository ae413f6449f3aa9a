"""evaluate_folders: pairing, grid checks, label values, outputs."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from coroseg.errors import GeometryError, InputError
from coroseg.eval.evaluate import (
    case_id_from_path,
    comparison_table,
    evaluate_folders,
    pair_cases,
    summarize,
    summary_table,
)
from coroseg.io.volume import Volume, write_volume

SP = (0.625, 0.4, 0.4)


def cube(lo, hi, shape=(12, 14, 16), value=1):
    a = np.zeros(shape, np.uint8)
    a[lo:hi, lo:hi, lo:hi] = value
    return a


def save(path, array, spacing=SP, origin=(1.0, 2.0, 3.0)):
    write_volume(Volume(array, spacing, origin, is_label=True), path)
    return path


@pytest.mark.parametrize("name,cid", [
    ("Normal_1.nrrd", "Normal_1"), ("Normal_1_pred.nii.gz", "Normal_1"), ("12.label.nii.gz", "12"),
    ("12.img.nii.gz", "12"), ("case_seg.mha", "case"), ("case_Pred_seg.nii", "case"),
    ("pred.nrrd", "pred"), ("case_0000.nii.gz", "case_0000")])
def test_case_id_from_path(name, cid):
    assert case_id_from_path(name) == cid


def test_evaluate_writes_csv_and_summary(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    save(gt / "a.nrrd", cube(2, 6))
    save(gt / "b.label.nii.gz", cube(3, 8))
    save(gt / "c.nrrd", cube(1, 4))                       # no prediction: a failure, scored Dice 0
    save(pred / "a_pred.nii.gz", cube(2, 6))              # perfect
    save(pred / "b.nii.gz", np.zeros((12, 14, 16), np.uint8))   # empty prediction
    rows, summary = evaluate_folders(pred, gt, out=tmp_path / "res" / "eval.csv", progress=False)
    assert [r["case_id"] for r in rows] == ["a", "b", "c"]
    assert [r["missing_prediction"] for r in rows] == [False, False, True]
    assert rows[0]["dice"] == 1.0 and rows[0]["hd95_mm"] == 0.0
    assert rows[1]["dice"] == 0.0 and math.isinf(rows[1]["hd95_mm"])
    # the missing case scores exactly what an all-zero prediction scores: 27 vessel voxels missed
    c = rows[2]
    assert c["pred"] == "" and c["gt"] == "c.nrrd"
    assert (c["dice"], c["precision"], c["recall"], c["cldice"]) == (0.0, 0.0, 0.0, 0.0)
    assert math.isinf(c["hd95_mm"]) and math.isinf(c["assd_mm"]) and math.isinf(c["hd95_asoca_vox"])
    assert c["voxel_accuracy"] == 1 - 27 / (12 * 14 * 16) and (c["n_pred"], c["n_ref"]) == (0, 27)
    assert c["betti0_error"] == 1
    assert summary["dice"] == pytest.approx({"mean": 1 / 3, "std": math.sqrt(2) / 3, "median": 0.0, "n": 3.0,
                                             "n_nonfinite": 0.0})
    assert summary["hd95_mm"]["mean"] == 0.0 and summary["hd95_mm"]["n_nonfinite"] == 2.0
    assert summary["_missing"] == {"n": 1.0, "scored": 1.0}
    with open(tmp_path / "res" / "eval.csv") as f:
        got = list(csv.DictReader(f))
    assert [g["case_id"] for g in got] == ["a", "b", "c"] and got[1]["hd95_mm"] == "inf"
    assert [g["missing_prediction"] for g in got] == ["False", "False", "True"]
    md = (tmp_path / "res" / "eval.md").read_text()
    assert "| Dice | 0.3333 ± 0.4714 | 0.0000 | 3 | 0 |" in md
    assert "| HD95 (mm) | 0.00 ± 0.00 | 0.00 | 1 | 2 |" in md
    assert "1 case(s) had no prediction and are scored as failures (Dice 0): c" in md


def test_skip_missing_scores_only_the_predicted_cases(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    save(gt / "a.nrrd", cube(2, 6))
    save(gt / "c.nrrd", cube(1, 4))
    save(pred / "a.nrrd", cube(2, 6))
    rows, summary = evaluate_folders(pred, gt, out=tmp_path / "res", progress=False, skip_missing=True)
    assert [r["case_id"] for r in rows] == ["a"] and summary["dice"]["mean"] == 1.0
    assert summary["_missing"] == {"n": 1.0, "scored": 0.0}
    md = (tmp_path / "res" / "summary.md").read_text()
    assert "1 ground-truth case(s) had no prediction and were skipped (--skip-missing; not scored): c" in md


def test_missing_prediction_of_an_empty_label_is_still_a_failure(tmp_path):
    """An empty prediction of an empty label scores 1; a missing file has earned nothing."""
    from coroseg.eval.evaluate import missing_metrics

    empty = np.zeros((12, 14, 16), bool)
    m = missing_metrics(empty, spacing=SP)
    assert (m["dice"], m["precision"], m["recall"], m["cldice"]) == (0.0, 0.0, 0.0, 0.0)
    assert math.isinf(m["hd95_mm"]) and math.isinf(m["assd_mm"]) and m["voxel_accuracy"] == 1.0
    save(tmp_path / "gt" / "a.nrrd", cube(2, 6))
    save(tmp_path / "gt" / "z.nrrd", empty.astype(np.uint8))
    save(tmp_path / "p" / "a.nrrd", cube(2, 6))
    rows, _ = evaluate_folders(tmp_path / "p", tmp_path / "gt", progress=False)
    assert [(r["case_id"], r["dice"], r["missing_prediction"]) for r in rows] == [("a", 1.0, False),
                                                                                  ("z", 0.0, True)]


def test_cli_prints_the_failures(tmp_path, capsys):
    from coroseg.cli import main

    save(tmp_path / "gt" / "a.nrrd", cube(2, 6))
    save(tmp_path / "gt" / "c.nrrd", cube(1, 4))
    save(tmp_path / "p" / "a.nrrd", cube(2, 6))
    for flags, line in (([], "1 case(s) had no prediction and are scored as failures (Dice 0): c"),
                        (["--skip-missing"], "1 ground-truth case(s) had no prediction and were skipped")):
        with pytest.raises(SystemExit) as ex:
            main(["evaluate", "--pred", str(tmp_path / "p"), "--gt", str(tmp_path / "gt"), *flags])
        out = capsys.readouterr().out
        assert ex.value.code == 0 and line in out
        assert ("| Dice | 0.5000 ± 0.5000 | 0.5000 | 2 | 0 |" in out) is not bool(flags)


def test_out_folder(tmp_path):
    save(tmp_path / "gt" / "a.nrrd", cube(2, 6))
    save(tmp_path / "p" / "a.nrrd", cube(2, 5))
    evaluate_folders(tmp_path / "p", tmp_path / "gt", out=tmp_path / "o", progress=False)
    assert (tmp_path / "o" / "per_case.csv").exists() and (tmp_path / "o" / "summary.md").exists()


def test_mismatched_grid_names_file_expected_and_found(tmp_path):
    save(tmp_path / "gt" / "a.nrrd", cube(2, 6))
    save(tmp_path / "p" / "a.nrrd", cube(2, 6), spacing=(0.625, 0.5, 0.4))
    with pytest.raises(GeometryError, match=r"a\.nrrd: grid does not match ground truth a\.nrrd: "
                                            r"spacing \(0\.625, 0\.5, 0\.4\) does not match \(0\.625, 0\.4, 0\.4\)"):
        evaluate_folders(tmp_path / "p", tmp_path / "gt", progress=False)
    save(tmp_path / "p" / "a.nrrd", cube(2, 6, shape=(12, 14, 15)))
    with pytest.raises(GeometryError, match=r"shape \(12, 14, 15\) does not match \(12, 14, 16\)"):
        evaluate_folders(tmp_path / "p", tmp_path / "gt", progress=False)


def test_label_values(tmp_path):
    save(tmp_path / "gt" / "a.nrrd", cube(2, 6, value=2))
    save(tmp_path / "p" / "a.nrrd", cube(2, 6, value=2))
    with pytest.raises(InputError, match=r"label values \{0, 2\} found; expected \{0, 1\}"):
        evaluate_folders(tmp_path / "p", tmp_path / "gt", progress=False)
    rows, _ = evaluate_folders(tmp_path / "p", tmp_path / "gt", label_value=2, progress=False)
    assert rows[0]["dice"] == 1.0


def test_pairing_errors(tmp_path):
    save(tmp_path / "gt" / "a.nrrd", cube(2, 6))
    save(tmp_path / "p" / "zz.nrrd", cube(2, 6))
    with pytest.raises(InputError, match=r"no ground truth for 1 prediction\(s\): zz\.nrrd"):
        pair_cases(tmp_path / "p", tmp_path / "gt")
    save(tmp_path / "p2" / "a.nrrd", cube(2, 6))
    save(tmp_path / "p2" / "a_pred.nrrd", cube(2, 6))
    with pytest.raises(InputError, match="two prediction files map to case id 'a'"):
        pair_cases(tmp_path / "p2", tmp_path / "gt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no prediction volumes"):
        pair_cases(tmp_path / "empty", tmp_path / "gt")
    with pytest.raises(InputError, match="ground-truth folder not found"):
        pair_cases(tmp_path / "p", tmp_path / "nope")


def test_summary_table_natural_order_and_nan():
    rows = [{"dice": 0.8, "hd95_mm": 2.0}, {"dice": 0.6, "hd95_mm": float("nan")}]
    s = summarize(rows, ["dice", "hd95_mm"])
    assert s["dice"]["mean"] == pytest.approx(0.7) and s["dice"]["std"] == pytest.approx(0.1)
    t = summary_table(rows, ["dice", "hd95_mm"], title="unet3d_crop")
    assert t.splitlines()[0] == "## unet3d_crop"
    assert "| Dice | 0.7000 ± 0.1000 | 0.7000 | 2 | 0 |" in t
    assert "| HD95 (mm) | 2.00 ± 0.00 | 2.00 | 1 | 1 |" in t
    assert "n/a" in summary_table([{"dice": float("inf")}], ["dice"])


def test_comparison_table():
    t = comparison_table({"unet3d_crop": [{"dice": 0.9, "hd95_mm": 1.0}, {"dice": 0.7, "hd95_mm": float("inf")}],
                          "HU threshold": [{"dice": 0.1, "hd95_mm": 30.0}]}, ["dice", "hd95_mm"])
    assert t.splitlines() == ["| Method | Dice | HD95 (mm) |", "|---|---|---|",
                              "| unet3d_crop | 0.8000 ± 0.1000 | 1.00 ± 0.00 (1 inf) |",
                              "| HU threshold | 0.1000 ± 0.0000 | 30.00 ± 0.00 |"]

"""``coroseg test`` (eval.testing.test_run): known answers with networks whose output is known.

The "networks" threshold the image (tests/infer/infer_helpers.py), so each case's prediction
is exactly what ``predict_volume`` gives; the test checks what test_run adds: the split, one
row per case and centerline mode, the ORACLE label on ground-truth priors, files in the output
folder, and the summary.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "infer"))

from infer_helpers import FakeRun, ThresholdNet, make_config, tube_phantom  # noqa: E402

from coroseg.errors import CorosegError  # noqa: E402
from coroseg.eval.metrics import dice  # noqa: E402
from coroseg.eval.testing import test_run  # noqa: E402
from coroseg.infer.pipeline import predict_volume  # noqa: E402
from coroseg.io.centerline_files import write_centerline  # noqa: E402
from coroseg.io.volume import write_volume  # noqa: E402

test_run.__test__ = False  # a library function named test_*, not a test


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Split layout, two test cases (the tube phantom, the second shifted by one voxel) and one train case."""
    root = tmp_path_factory.mktemp("testing_ds")
    image, label, graph = tube_phantom()
    for split, cid in (("train", "t0"), ("test", "a"), ("test", "b")):
        base = root / split / "Normal"
        write_volume(image, base / "CTCA" / f"{cid}.nrrd")
        write_volume(label, base / "Annotations" / f"{cid}.nrrd")
        write_centerline(graph, base / "Centerlines" / f"{cid}.vtp")
    return root


def _run(model: str) -> FakeRun:
    cfg = make_config(model)
    return FakeRun(cfg, ThresholdNet(), ThresholdNet() if cfg["locator"] else None)


def test_grid_model_scores_each_test_case_once(dataset, tmp_path):
    run = _run("unet3d_grid")
    rows, table = test_run(run, dataset, tmp_path / "out", centerlines=("auto", "gt"), device="cpu",
                           progress=False)
    assert [(r["case_id"], r["centerline"]) for r in rows] == [("a", "none"), ("b", "none")]  # grid: no prior
    image, label, _ = tube_phantom()
    expected = dice(predict_volume(run, image, centerline="none", device="cpu").seg.array > 0, label.array > 0)
    assert rows[0]["dice"] == pytest.approx(expected) and expected > 0.8
    assert (tmp_path / "out" / "pred" / "a_seg.nrrd").is_file()
    with open(tmp_path / "out" / "metrics.csv", newline="") as fh:
        assert [r["case_id"] for r in csv.DictReader(fh)] == ["a", "b"]
    assert "unet3d_grid on test (2 cases)" in table
    assert (tmp_path / "out" / "summary.md").read_text() == table


def test_crop_model_reports_auto_and_oracle_side_by_side(dataset, tmp_path):
    rows, table = test_run(_run("unet3d_crop"), dataset, tmp_path / "out", centerlines=("auto", "gt"),
                           device="cpu", progress=False)
    assert [(r["case_id"], r["centerline"]) for r in rows] == [("a", "auto"), ("a", "oracle"), ("b", "auto"),
                                                                ("b", "oracle")]
    assert all(r["crops"] > 0 and r["dice"] > 0.8 for r in rows)
    assert (tmp_path / "out" / "pred-oracle" / "a_seg.nrrd").is_file()  # kept apart from the real result
    assert "ORACLE: ground-truth centerline (upper bound, not a result)" in table
    assert table.index("automatic centerline") < table.index("ORACLE")


def test_an_empty_split_and_an_unknown_mode_are_refused(dataset, tmp_path):
    with pytest.raises(CorosegError, match=r"no cases in split 'val' \(found splits: test, train\)"):
        test_run(_run("unet3d_grid"), dataset, tmp_path / "o", split="val", device="cpu", progress=False)
    with pytest.raises(CorosegError, match="centerline mode must be one of auto, gt, none, not 'ref'"):
        test_run(_run("unet3d_grid"), dataset, tmp_path / "o", centerlines=("ref",), device="cpu", progress=False)
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_empty_reference_label_is_flagged_not_scored(tmp_path):
    """A test case whose label has no vessel would score Dice 1 for an empty prediction (or 0 for
    any other): neither says anything, so its row is flagged and its scores are NaN."""
    import math

    image, label, graph = tube_phantom()
    for split, cid, lab in (("train", "t0", label), ("test", "full", label),
                            ("test", "empty", label.with_array(label.array * 0))):
        base = tmp_path / "ds" / split / "Normal"
        write_volume(image, base / "CTCA" / f"{cid}.nrrd")
        write_volume(lab, base / "Annotations" / f"{cid}.nrrd")
    rows, _ = test_run(_run("unet3d_grid"), tmp_path / "ds", tmp_path / "out", centerlines=("none",),
                       device="cpu", progress=False)
    by_id = {r["case_id"]: r for r in rows}
    assert by_id["empty"]["empty_reference"] is True and math.isnan(by_id["empty"]["dice"])
    assert by_id["full"]["empty_reference"] is False and by_id["full"]["dice"] > 0.8


def test_a_bad_reference_centerline_costs_only_centerline_recall(tmp_path, caplog):
    """Without an ORACLE run the reference centerline only feeds centerline recall: a broken file
    is a warning and NaN there, not a failed test; with ``gt`` it stays an error."""
    image, label, _ = tube_phantom()
    base = tmp_path / "ds" / "test" / "Normal"
    write_volume(image, base / "CTCA" / "a.nrrd")
    write_volume(label, base / "Annotations" / "a.nrrd")
    (base / "Centerlines").mkdir(parents=True)
    (base / "Centerlines" / "a.vtp").write_text("<VTKFile>not polydata")
    with caplog.at_level("WARNING"):
        rows, _ = test_run(_run("unet3d_grid"), tmp_path / "ds", tmp_path / "out", device="cpu", progress=False)
    assert rows[0]["dice"] > 0.8
    recall = rows[0].get("cl_recall")
    assert recall is None or math.isnan(float(recall))  # not scored, not a failure
    assert "reference centerline not used" in caplog.text
    with pytest.raises(CorosegError):
        test_run(_run("unet3d_crop"), tmp_path / "ds", tmp_path / "out2", centerlines=("gt",), device="cpu",
                 progress=False)

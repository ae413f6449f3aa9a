"""The built-in model: shipped inside the package, used when no --model is given."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from coroseg.cli import main
from coroseg.models.run import load_run
from coroseg.models.store import model_identity, resolve_model

BUILTIN = Path(__file__).resolve().parents[2] / "src" / "coroseg" / "builtin"


def _cli(argv) -> int:
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in argv])
    return exit_.value.code


def test_the_builtin_model_is_shipped_small_and_checksummed():
    folder = resolve_model("builtin")
    assert folder.resolve() == BUILTIN.resolve()
    total = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    assert total <= 5 * 1024**2  # safetensors + JSON, at most 5 MB in all
    assert {p.name for p in folder.iterdir() if p.is_file()} == {"config.json", "model.json", "model.safetensors",
                                                                  "locator.safetensors"}
    run = load_run(folder)  # float16 storage, float32 networks
    assert run.config.model == "unet3d_crop" and run.locator is not None
    assert next(run.model.parameters()).dtype.is_floating_point
    manifest = json.loads((folder / "model.json").read_text())
    assert model_identity(folder)["sha256"] == manifest["files"]["model.safetensors"]


@pytest.mark.slow
def test_predict_without_a_model_uses_the_builtin_one(tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[1] / "infer"))
    from infer_helpers import tube_phantom

    from coroseg.io.volume import read_volume, write_volume

    image, _, _ = tube_phantom()
    write_volume(image, tmp_path / "scan.nrrd")
    assert _cli(["predict", "-i", tmp_path / "scan.nrrd", "-o", tmp_path / "out", "--device", "cpu"]) == 0
    seg = read_volume(tmp_path / "out" / "scan_seg.nrrd", is_label=True)
    assert seg.same_grid(image)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["model_name"] == "coroseg-phantom-crop" and len(summary["model_sha256"]) == 64


@pytest.mark.slow
def test_test_and_fine_tuning_start_from_the_builtin_model(tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[1] / "train"))
    from train_helpers import make_dataset

    data = make_dataset(tmp_path / "data", n_train=1, n_val=1)
    # a built-in model has no split of this data: every case is scored
    assert _cli(["test", "--model", "builtin", "--data", data, "--out", tmp_path / "test", "--device", "cpu"]) == 0
    rows = (tmp_path / "test" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 and "coroseg-phantom-crop" in rows[1]
    code = _cli(["train", "--data", data, "--model", "unet3d_crop", "--init", "builtin", "--out", tmp_path / "ft",
                 "--patch-budget", "4", "--batch-size", "2", "--device", "cpu", "--no-progress",
                 "--set", "locator_budget=4"])
    assert code == 0
    cfg = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert cfg["train"]["init"]["from"] == "builtin" and cfg["train"]["init"]["name"] == "coroseg-phantom-crop"
    assert cfg["network"] == json.loads((BUILTIN / "config.json").read_text())["network"]

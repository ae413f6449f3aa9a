"""RunConfig: the one reader of config.json (typed, checked), and the migration from schema 1.

``fixtures/config_schema1.json`` is the config.json ``make demo`` wrote before configs carried a
schema version (coroseg 0.1.0, a unet3d_crop run with its locator): such run folders must keep
loading, predicting and resuming exactly as they did.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from coroseg.errors import InputError
from coroseg.models.config import SCHEMA_VERSION, ConfigError, LocatorConfig, RunConfig, migrate
from coroseg.models.registry import build_network
from coroseg.models.run import load_run, read_config, save_weights

FIXTURE = Path(__file__).parent / "fixtures" / "config_schema1.json"


def _schema1() -> dict:
    return json.loads(FIXTURE.read_text())


def _run_folder(tmp_path: Path, cfg: dict) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(cfg))
    return run


def test_schema1_config_migrates_to_the_values_it_was_used_with(tmp_path):
    cfg = read_config(_run_folder(tmp_path, _schema1()))
    assert isinstance(cfg, RunConfig) and cfg.schema == SCHEMA_VERSION
    assert (cfg.model, cfg.dims, cfg.sampler, cfg.attention, cfg.in_channels) == ("unet3d_crop", 3, "crop", True, 2)
    assert cfg.patch_size == (48, 48, 48) and cfg.spacing == (0.854, 0.8162, 0.8162)
    assert cfg.crop.method == "kmeans" and cfg.crop.clustering() == {}
    assert (cfg.attention_cfg.mode, cfg.attention_cfg.dilation_mm) == ("gaussian", 1.0)
    # the locator rules schema-1 code read as defaults are now written out, unchanged
    loc = cfg.locator
    assert isinstance(loc, LocatorConfig)
    assert (loc.label, loc.threshold, loc.keep_fraction, loc.reach_mm, loc.low_threshold, loc.tta, loc.bridge_mm) == \
        ("coverage", 0.5, 0.3, None, 0.02, False, None)
    # what no trainer set a value of is gone: the options that did nothing
    d = cfg.to_dict()
    assert "val_overlap" not in d and "val_overlap" not in d["train"]["options"]
    assert set(d["attention_cfg"]) == {"mode", "dilation_mm", "perturb_in_training"}
    assert d["schema"] == SCHEMA_VERSION and RunConfig.from_dict(d) == cfg  # the written form reads back equal
    assert cfg.train["phase_order"] == ["locator", "model"]


def test_schema1_defaults_of_older_runs():
    """Schema 1 without the later keys: a locator trained on the nearest-neighbour label, model first."""
    raw = _schema1()
    del raw["locator"]["label"], raw["train"]["phase_order"]
    cfg = RunConfig.from_dict(raw)
    assert cfg.locator.label == "nearest" and cfg.train["phase_order"] == ["model", "locator"]


def test_schema1_run_folder_loads_and_predicts(tmp_path):
    from coroseg.infer.pipeline import predict_volume
    from coroseg.io.volume import Volume

    raw = _schema1()
    small = [4, 8]  # the fixture's networks, narrowed so the test is fast; shapes follow the config
    raw["network"]["channels"], raw["network"]["strides"] = small, [2]
    raw["locator"]["network"]["channels"], raw["locator"]["network"]["strides"] = small, [2]
    raw["patch_size"] = raw["locator"]["patch_size"] = [16, 16, 16]
    run = _run_folder(tmp_path, raw)
    save_weights(build_network(raw["network"]), run / "model.safetensors")
    save_weights(build_network(raw["locator"]["network"]), run / "locator.safetensors")
    loaded = load_run(run)
    assert loaded.config.locator.weights == "locator.safetensors" and loaded.locator is not None
    scan = Volume(np.random.default_rng(0).normal(0, 100, (20, 24, 22)).astype(np.float32), (0.8, 0.8, 0.8))
    pred = predict_volume(loaded, scan, device="cpu", extract_centerline=False)
    assert pred.seg.shape == scan.shape and pred.info["model"] == "unet3d_crop"


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(schema=SCHEMA_VERSION + 1), r"schema=3: written by a newer coroseg"),
    (lambda c: c.update(schema="2"), r"schema='2': expected a whole number"),
    (lambda c: c["attention_cfg"].update(combine="add"), r"attention_cfg.combine: only 'stack' is supported"),
    (lambda c: c.update(extra=1), r"config unknown key 'extra'; known: model, dims"),
    (lambda c: c["crop"].update(method_name="kmeans"), r"crop: unknown key 'method_name'"),
    (lambda c: c["locator"].update(tresh=0.4), r"locator: unknown key 'tresh'"),
    (lambda c: c["locator"].update(low_threshold="x"), r"locator.low_threshold='x': expected a number from 0 to 1"),
    (lambda c: c["locator"].update(bridge_mm=-1), r"locator.bridge_mm=-1: expected a number from 0 to 100, or null"),
    (lambda c: c["locator"]["network"].update(in_channels=2), r"locator.network: expected a 3D network with 1 input"),
    (lambda c: c.update(status=3), r"status=3: expected a string"),
    (lambda c: c["intensity"].update(reference="yes"), r"intensity: reference='yes': expected true or false"),
    (lambda c: c["intensity"].update(reference=True), r"locator.intensity.reference must equal intensity.reference"),
])
def test_a_tampered_config_is_one_line_naming_the_key(tmp_path, change, message):
    raw = _schema1()
    change(raw)
    with pytest.raises(InputError, match=message) as err:
        read_config(_run_folder(tmp_path, raw))
    assert "config.json" in str(err.value) and "\n" not in str(err.value)


def test_migrate_copies_and_refuses_non_objects():
    raw = _schema1()
    before = json.dumps(raw)
    migrate(raw)
    assert json.dumps(raw) == before  # the caller's dict is left alone
    with pytest.raises(ConfigError, match="must be a JSON object, found list"):
        migrate([1, 2])


@pytest.mark.slow
def test_a_schema1_run_resumes_and_is_written_back_as_schema2(tmp_path):
    """A run written before schema 2 (its config and options rewritten to schema 1) resumes and finishes."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "train"))
    from train_helpers import TINY, make_dataset

    from coroseg.train import train

    data = make_dataset(tmp_path / "data")
    run = train(data, tmp_path / "run", model="unet3d_grid", epochs=1, device="cpu", progress=False,
                augment=0.0, patch_size=[16, 16, 16], **TINY)
    new = json.loads((run / "config.json").read_text())
    old = {k: v for k, v in new.items() if k != "schema"}  # what the unversioned writer produced
    old["val_overlap"] = 0.25
    old["attention_cfg"]["weight"] = 1.0
    old["train"]["options"]["val_overlap"] = 0.25
    (run / "config.json").write_text(json.dumps(old))
    train(data, run, model="unet3d_grid", epochs=2, device="cpu", resume=True, progress=False)
    done = json.loads((run / "config.json").read_text())
    assert done["schema"] == SCHEMA_VERSION and done["status"] == "complete" and done["train"]["epochs"] == 2
    assert "val_overlap" not in done and "weight" not in done["attention_cfg"]
    assert [r.split(",")[1] for r in (run / "metrics.csv").read_text().splitlines()[1:]] == ["1", "2"]
    shutil.rmtree(data)

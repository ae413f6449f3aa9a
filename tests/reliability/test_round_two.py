"""Reliability, round two (issue 18): the hostile inputs that broke the one-line promise.

Each numbered problem of the issue is one or more cases here, driven through the real CLI:
exit 2 (130 for Ctrl-C) with exactly one line ``coroseg: error: <file>: <problem>`` and no new
file in the output folder, or the correct behaviour where the input is valid. The property
tests at the end put random JSON into a run's ``config.json`` and into ``--set``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rel_helpers import TINY_TRAIN, image_array, label_array, snapshot, split_dataset, write_image

PROGRESS = r"^\S[^:]*:\s+\d+%\|"  # a tqdm progress-bar frame, not a message


def one_line_error(res, names: str, problem: str, *, code: int = 2) -> str:
    """Assert the promise; return the line."""
    import re

    assert "Traceback" not in res.err + res.out, res.err
    assert res.code == code, (res.code, res.err)
    lines = [ln for ln in res.messages if not re.match(PROGRESS, ln)]  # coroseg's log lines aside
    assert len(lines) == 1, res.err
    assert not [ln for ln in res.log if ln.startswith("coroseg: error: ")], res.err  # printed once, by the CLI
    line = lines[0]
    assert line.startswith("coroseg: error: "), line
    assert names in line, f"message does not name {names!r}: {line}"
    assert re.search(problem, line), f"expected /{problem}/ in: {line}"
    return line


def visible_files(folder: Path) -> list[str]:
    """Files under ``folder`` that a user sees (hidden staging folders and lock files excluded)."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _centerline_points(shift: float = 0.0) -> np.ndarray:
    z = np.linspace(1.0, 10.0, 10)
    return np.stack([np.full(10, 8.0 + shift), np.full(10, 7.0), z], axis=1)  # LPS mm inside the test image


def _graph(shift: float = 0.0):
    from coroseg.io.centerline import CenterlineGraph

    return CenterlineGraph.from_polylines([_centerline_points(shift)], [np.full(10, 1.5)])


def _markups(d: Path, edit) -> Path:
    from coroseg.io.centerline_files import write_centerline

    p = d / "cl.mrk.json"
    write_centerline(_graph(), p)
    doc = json.loads(p.read_text())
    edit(doc["markups"][0])
    p.write_text(json.dumps(doc))
    return p


def _predict(run, inp, out, *extra):
    return ["predict", "--model", run, "--input", inp, "--output", out, "--device", "cpu", *extra]


# ---- 1, 2: malformed centerline files ------------------------------------------------------
MARKUPS = {
    "measurements_list_of_str": (lambda m: m.__setitem__("measurements", ["Radius"]),
                                 r"curve 0: every measurement must be an object"),
    "measurements_number": (lambda m: m.__setitem__("measurements", 5),
                            r"curve 0: 'measurements' must be a list of objects, found int"),
    "radius_not_numbers": (lambda m: m.__setitem__("measurements", [
        {"name": "Radius", "controlPointValues": ["a"] * len(m["controlPoints"])}]),
        r"Radius 'controlPointValues' must be numbers or null"),
}


@pytest.mark.parametrize("command", ["info", "predict"])
@pytest.mark.parametrize("name", list(MARKUPS))
def test_malformed_markups(name, command, tmp_path, crop_run_dir, cli):
    edit, problem = MARKUPS[name]
    cl = _markups(tmp_path, edit)
    if command == "info":
        res = cli(["info", cl])
    else:
        res = cli(_predict(crop_run_dir, write_image(tmp_path / "scan.nrrd"), tmp_path / "out", "--centerline", cl))
    one_line_error(res, "cl.mrk.json", problem)
    assert visible_files(tmp_path / "out") == []


def test_vtp_point_count_not_a_number(tmp_path, cli):
    from coroseg.io.vtp import polylines_to_vtp_text

    text = polylines_to_vtp_text([_centerline_points()], [np.full(10, 1.5)], binary=False)
    p = tmp_path / "cl.vtp"
    p.write_text(text.replace('NumberOfPoints="10"', 'NumberOfPoints="abc"'))
    one_line_error(cli(["info", p]), "cl.vtp", r"<Piece NumberOfPoints='abc'>: expected a whole number")


# ---- 3, 16, 20: convert-centerline ----------------------------------------------------------
def _gml(d: Path, shift: float = 0.0) -> Path:
    from coroseg.io.gml import write_gml

    p = d / "cl.gml"
    write_gml(_graph(shift), p)
    return p


def test_convert_centerline_unknown_coords(tmp_path, cli):
    res = cli(["convert-centerline", _gml(tmp_path), tmp_path / "o.vtp", "--coords", "bogus"])
    one_line_error(res, "--coords",
                   r"Invalid value for '--coords'.*'bogus' is not one of 'lps', 'ras', 'image', 'auto'")
    assert not (tmp_path / "o.vtp").exists()


def test_convert_centerline_with_a_ct_image_as_reference(tmp_path, cli):
    """--help allows an image: only its geometry is used (HU values are not a label)."""
    from coroseg.io.centerline_files import read_centerline

    ct = write_image(tmp_path / "ct.nrrd", image_array() * 3 - 1000)  # -1000..350 HU
    res = cli(["convert-centerline", _gml(tmp_path), tmp_path / "o.mrk.json", "--reference", ct])
    assert res.code == 0, res.err
    np.testing.assert_allclose(read_centerline(tmp_path / "o.mrk.json").positions()[:, 2].max(), 10.0)


def test_convert_centerline_outside_the_reference(tmp_path, cli):
    ct = write_image(tmp_path / "ct.nrrd")
    res = cli(["convert-centerline", _gml(tmp_path, shift=500.0), tmp_path / "o.vtp", "--reference", ct])
    one_line_error(res, "cl.gml", r"10 of 10 centerline points lie outside the image")
    assert not (tmp_path / "o.vtp").exists()


# ---- 4: tampered config.json ----------------------------------------------------------------
TAMPERED = {
    "network_a_string": ("network", "unet", r"config network: expected an object, found str"),
    "channels_strings": ("network.channels", ["a", "b"], r"config network: channels=\['a', 'b'\]: expected"),
    "patch_size_string": ("patch_size", "abc", r"config patch_size='abc': expected three whole numbers"),
    "spacing_zero": ("spacing", [0, 0, 0], r"config spacing=\[0, 0, 0\]: expected three numbers from 0.05"),
    "spacing_strings": ("spacing", ["a", "b", "c"], r"config spacing=\['a', 'b', 'c'\]: expected"),
    "spacing_tiny": ("spacing", [1e-6, 1e-6, 1e-6], r"config spacing=\[1e-06, 1e-06, 1e-06\]: expected"),
    "model_unknown": ("model", "unet", r"config model='unet': expected one of"),
    "locator_false": ("locator", False, r"config locator: expected an object or null, found bool"),
    "network_2d_in_a_3d_run": ("network.spatial_dims", 2, r"config network.spatial_dims=2 does not match dims=3"),
    "intensity_not_hu_scale": ("intensity.std", 1e-9, r"config intensity: expected HU-scale values"),
    "locator_weights_path": ("locator", {"spacing": [1, 1, 1], "patch_size": [16, 16, 16],
                                         "weights": "../x.safetensors",
                                         "intensity": {"clip": [0, 1], "mean": 0, "std": 1},
                                         "network": {"arch": "unet", "spatial_dims": 3, "in_channels": 1,
                                                     "channels": [4, 8], "strides": [2]}},
                             r"locator.weights='../x.safetensors': expected a .safetensors file name"),
}


def _tamper(run: Path, dst: Path, key: str, value) -> Path:
    shutil.copytree(run, dst)
    cfg = json.loads((dst / "config.json").read_text())
    node = cfg
    *path, last = key.split(".")
    for p in path:
        node = node[p]
    node[last] = value
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


@pytest.mark.parametrize("name", list(TAMPERED))
def test_tampered_config(name, tmp_path, run_dir, cli):
    key, value, problem = TAMPERED[name]
    bad = _tamper(run_dir, tmp_path / "badrun", key, value)
    res = cli(_predict(bad, write_image(tmp_path / "scan.nrrd"), tmp_path / "out"))
    one_line_error(res, "config.json", problem)
    assert visible_files(tmp_path / "out") == []


# ---- 5, 6, 7: --set ------------------------------------------------------------------------
def _train(d: Path, *sets: str, model: str = "unet3d_grid"):
    ds = split_dataset(d / "ds")
    extra = [a for s in sets for a in ("--set", s)]
    return ["train", "--data", ds, "--model", model, "--out", d / "run", "--epochs", "1", "--device", "cpu",
            "--no-progress", *TINY_TRAIN, *extra]


SETS = {
    "model_collides": ('model="unet3d_crop"', "--set model", r"set it with the --model option"),
    "seed_collides": ("seed=1", "--set seed", r"set it with the --seed option"),
    "nested_brackets": ("augment=" + "[" * 30000 + "]" * 30000, "--set augment", r"characters long|nested too deeply"),
    "nested_brackets_short": ("augment=" + "[" * 4000 + "]" * 4000, "--set augment", r"nested too deeply"),
    "strides_strings": ('strides=["a"]', "strides", r"training option strides=\['a'\]: expected null or 1 whole"),
    "norm_unknown": ('norm="evil"', "norm", r"training option norm='evil': expected one of instance, batch"),
    "channels_huge": ("channels=[4,1e12]", "channels", r"expected a list of 2 to 8 whole numbers from 1 to 1024"),
    "spacing_tiny": ("spacing=[1e-6,1e-6,1e-6]", "spacing", r"three numbers \[z, y, x\] from 0.05 to 20 mm"),
    "unknown_key": ("nonsense=1", "--set nonsense", r"unknown training option"),
}


@pytest.mark.parametrize("name", list(SETS))
def test_bad_set(name, tmp_path, cli):
    setting, names, problem = SETS[name]
    one_line_error(cli(_train(tmp_path, setting)), names, problem)
    assert not (tmp_path / "run").exists()


# ---- 8, 10: folders that are neither dataset nor DICOM; a named pipe -----------------------
def _bare_folder(name: str):
    """An empty folder called ``name`` (``x.nrrd`` looks like a volume file by its name)."""
    def make(d: Path) -> Path:
        (d / name).mkdir()
        return d / name
    return make


def _text_and_jpg(d: Path) -> Path:
    f = d / "stuff"
    f.mkdir()
    (f / "notes.txt").write_text("hello")
    (f / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    return f


def _self_loop(d: Path) -> Path:
    f = d / "loop"
    f.mkdir()
    (f / "self").symlink_to(f, target_is_directory=True)
    return f


FOLDERS = {
    "empty": (_bare_folder("empty"), "empty", r"holds no files|no cases|no volume files"),
    "text_and_jpg": (_text_and_jpg, "stuff", r"no volume files .* and no DICOM series|no cases"),
    "folder_named_nrrd": (_bare_folder("x.nrrd"), "x.nrrd", r"holds no files|no cases|no volume files"),
    "self_symlink_loop": (_self_loop, "loop", r"holds no files|no cases|no volume files"),
}


@pytest.mark.parametrize("command", ["info", "predict"])
@pytest.mark.parametrize("name", list(FOLDERS))
def test_folder_without_scans(name, command, tmp_path, run_dir, cli):
    build, names, problem = FOLDERS[name]
    folder = build(tmp_path)
    res = cli(["info", folder] if command == "info" else _predict(run_dir, folder, tmp_path / "out"))
    line = one_line_error(res, names, problem)
    assert "GDCM" not in res.err and "Warning" not in line
    assert res.err.startswith("coroseg: error:"), repr(res.err)  # no blank line before it
    assert visible_files(tmp_path / "out") == []


@pytest.mark.parametrize("command", ["info", "predict"])
def test_named_pipe_is_refused_without_blocking(command, tmp_path, run_dir, cli):
    fifo = tmp_path / "pipe.nrrd"
    os.mkfifo(fifo)
    res = cli(["info", fifo] if command == "info" else _predict(run_dir, fifo, tmp_path / "out"))
    one_line_error(res, "pipe.nrrd", r"is a named pipe; expected a volume file")


# ---- 9, 19: complex voxels, a NaN in an NRRD header -----------------------------------------
def test_complex_nifti_is_refused(tmp_path, run_dir, cli):
    import warnings

    import SimpleITK as sitk

    arr = image_array().astype(np.complex64) + 1j
    p = tmp_path / "complex.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(p))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy ComplexWarning would fail here
        for argv in (["info", p], _predict(run_dir, p, tmp_path / "out")):
            one_line_error(cli(argv), "complex.nii.gz", r"complex-valued voxels \(complex of 32-bit float\)")
    assert visible_files(tmp_path / "out") == []


def test_nan_spacing_in_nrrd_header(tmp_path, cli):
    p = tmp_path / "nan.nrrd"
    header = ("NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 4\nspacings: 1 nan 1\n"
              "endian: little\nencoding: raw\n\n")
    p.write_bytes(header.encode() + bytes(2 * 64))
    one_line_error(cli(["info", p]), "nan.nrrd", r"NRRD header field 'spacings: 1 nan 1' is not finite")


# ---- 11, 12, 13, 18: predict's outputs ------------------------------------------------------
def test_ctrl_c_during_predict_says_what_was_kept(tmp_path, run_dir, cli, monkeypatch):
    import coroseg.infer.files as files

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    scans = tmp_path / "scans"
    write_image(scans / "a.nrrd")
    write_image(scans / "b.nrrd")
    real = files.predict_volume
    calls = []

    def second_is_interrupted(*a, **k):
        calls.append(1)
        return real(*a, **k) if len(calls) == 1 else interrupted()

    monkeypatch.setattr(files, "predict_volume", second_is_interrupted)
    res = cli(_predict(run_dir, scans, tmp_path / "out"))
    one_line_error(res, "out", r"predict interrupted; scans finished before are complete", code=130)
    out = tmp_path / "out"
    assert visible_files(out) == ["a_seg.nrrd", "summary.json"]  # a is done, nothing of b
    assert [c["id"] for c in json.loads((out / "summary.json").read_text())["cases"]] == ["a"]


def test_sigkill_during_predict_leaves_no_case_that_looks_finished(tmp_path, run_dir):
    """A real SIGKILL after the mask and centerline files were written, before the mesh."""
    img = write_image(tmp_path / "scan.nrrd")
    out = tmp_path / "out"
    code = (
        "import os, signal, sys\n"
        "import coroseg.infer.files as f\n"
        "f.write_stl = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
        "from coroseg.cli import main\n"
        f"main(['predict', '--model', {str(run_dir)!r}, '--input', {str(img)!r}, '--output', {str(out)!r},"
        " '--device', 'cpu', '--mesh'])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert visible_files(out) == []  # written files sit in a hidden staging folder only
    assert any(p.name.startswith(".coroseg-partial-") for p in out.iterdir())


def test_two_runs_into_one_folder_keep_both_cases(tmp_path, run_dir, monkeypatch):
    """Run B finishes while run A is still working: A's summary must not drop B's case."""
    import coroseg.infer.files as files

    a, b, out = write_image(tmp_path / "a.nrrd"), write_image(tmp_path / "b.nrrd"), tmp_path / "out"
    real = files._predict_one
    nested = []

    def a_meanwhile_b(loaded, path, *args, **kw):
        if path.name == "a.nrrd" and not nested:
            nested.append(1)
            files.predict(run_dir, b, out, device="cpu", progress=False)  # the other process
        return real(loaded, path, *args, **kw)

    monkeypatch.setattr(files, "_predict_one", a_meanwhile_b)
    files.predict(run_dir, a, out, device="cpu", progress=False)
    ids = sorted(c["id"] for c in json.loads((out / "summary.json").read_text())["cases"])
    assert ids == ["a", "b"]
    assert set(files.complete_cases(out).values()) == {"a", "b"}


def test_predicting_a_folder_into_itself_twice_skips_its_own_outputs(tmp_path, run_dir, cli):
    d = tmp_path / "d"
    write_image(d / "scan.nrrd")
    for _ in range(2):
        res = cli(_predict(run_dir, d, d))
        assert res.code == 0, res.err
    assert visible_files(d) == ["scan.nrrd", "scan_seg.nrrd", "summary.json"]
    assert [c["id"] for c in json.loads((d / "summary.json").read_text())["cases"]] == ["scan"]


def test_completion_rule(tmp_path, run_dir):
    from coroseg.infer.files import complete_cases, predict

    out = tmp_path / "out"
    predict(run_dir, write_image(tmp_path / "scan.nrrd"), out, device="cpu", progress=False)
    assert complete_cases(out) == {"scan_seg.nrrd": "scan"}
    (out / "scan_seg.nrrd").unlink()  # a listed file is missing: not complete
    assert complete_cases(out) == {}


# ---- 14: test with a corrupt second case -----------------------------------------------------
def test_test_with_a_corrupt_second_case_leaves_nothing(tmp_path, run_dir, cli):
    ds = split_dataset(tmp_path / "ds", n_train=1, n_val=2)
    bad = sorted((ds / "val" / "Normal" / "CTCA").glob("*.nrrd"))[1]
    bad.write_bytes(bad.read_bytes()[:-200])
    out = tmp_path / "test"
    res = cli(["test", "--model", run_dir, "--data", ds, "--out", out, "--split", "val", "--device", "cpu"])
    line = one_line_error(res, bad.name, r"cannot read image")
    assert visible_files(out) == []
    assert res.err.strip().splitlines()[-1] == line  # no progress bar redrawn after the error


# ---- 15: export re-run that fails -------------------------------------------------------------
def test_failed_export_rerun_keeps_the_earlier_export(tmp_path, cli):
    ds = split_dataset(tmp_path / "ds", n_train=2, n_val=1)
    out = tmp_path / "nnunet"
    assert cli(["export", "--data", ds, "--out", out]).code == 0
    root = out / "Dataset501_Coronary"
    before = {p: (root / p).read_bytes() for p in visible_files(root)}
    bad = sorted((ds / "train" / "Normal" / "CTCA").glob("*.nrrd"))[1]
    bad.write_bytes(bad.read_bytes()[:-200])
    one_line_error(cli(["export", "--data", ds, "--out", out]), bad.name, r"cannot read image")
    assert {p: (root / p).read_bytes() for p in visible_files(root)} == before
    listed = json.loads((root / "dataset.json").read_text())["numTraining"]
    assert len(list((root / "imagesTr").glob("*_0000.nii.gz"))) == listed == 3


# ---- 17: centerline of an empty mask ----------------------------------------------------------
def test_centerline_of_an_empty_mask(tmp_path, cli):
    mask = write_image(tmp_path / "mask.nrrd", np.zeros((12, 14, 16), np.uint8), is_label=True)
    res = cli(["centerline", "--label", mask, "--out", tmp_path / "cl.vtp"])
    one_line_error(res, "mask.nrrd", r"mask is empty \(no voxel > 0\)")
    assert not (tmp_path / "cl.vtp").exists()


def test_centerline_of_a_real_tube(tmp_path, cli):
    mask = write_image(tmp_path / "mask.nrrd", label_array((24, 14, 16)), is_label=True)
    res = cli(["centerline", "--label", mask, "--out", tmp_path / "cl.vtp"])
    assert res.code == 0, res.err
    assert "nodes" in res.out or "CenterlineGraph" in res.out


# ---- property tests: random JSON never gives a traceback ------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**15, 10**15) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)
PROPERTY = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
CONFIG_KEYS = ["model", "dims", "sampler", "attention", "in_channels", "patch_size", "spacing", "intensity",
               "network", "locator", "attention_cfg", "crop", "seed", "network.channels", "network.strides",
               "network.norm", "network.num_res_units", "intensity.clip", "intensity.std"]


def _result_is_honest(res) -> None:
    assert "Traceback" not in res.err + res.out, res.err
    if res.code != 0:
        lines = res.messages
        assert res.code == 2 and len(lines) == 1 and lines[0].startswith("coroseg: error: "), (res.code, res.err)


@PROPERTY
@given(key=st.sampled_from(CONFIG_KEYS), value=JSON)
def test_random_json_in_config_never_tracebacks(key, value, tmp_path_factory, run_dir, cli):
    d = tmp_path_factory.mktemp("cfg")
    bad = _tamper(run_dir, d / "run", key, value)
    res = cli(_predict(bad, write_image(d / "scan.nrrd"), d / "out"))
    _result_is_honest(res)
    if res.code != 0:
        assert visible_files(d / "out") == []


#: options whose valid values all train in about a second (sizes such as channels or patch_size are
#: bounded but may be valid and slow; their bad values are the explicit cases above)
SET_KEYS = ["strides", "norm", "augment", "crop_method", "num_res_units", "dropout", "perturb", "attention_mode",
            "val_batch", "weight_decay", "fg_fraction", "precision", "cldice"]


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(key=st.sampled_from(SET_KEYS), value=JSON)
def test_random_json_in_set_never_tracebacks(key, value, tmp_path_factory, cli):
    d = tmp_path_factory.mktemp("set")
    res = cli(_train(d, f"{key}={json.dumps(value)}"))
    _result_is_honest(res)
    if res.code != 0:
        assert not (d / "run").exists() or snapshot(d / "run") <= {"train.log", "splits.json"}

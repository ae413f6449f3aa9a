"""The bad-input catalogue, driven through the real CLI (``coroseg.cli.main``).

Every case must end with exit code 2 and exactly one line on stderr besides coroseg's own log
lines (progress and warnings about work done before the problem was found; never an error line),
``coroseg: error: <file>: <problem>``, naming the file and matching the expected problem,
no traceback, and no new or partial file in the output folder. Cases that fail today are
``xfail(strict=True)`` with the reason naming the fix (in files this suite does not own).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from rel_helpers import (
    DICOM,
    TINY_TRAIN,
    image_array,
    label_array,
    raw_mha,
    raw_nrrd,
    sitk_write,
    snapshot,
    split_dataset,
    write_image,
)

needs_dicom = pytest.mark.skipif(not DICOM.exists(), reason="../shared/data is absent (real DICOM series)")


@dataclass
class Spec:
    argv: list
    names: str            # text that must appear in the message (a file or folder name)
    watch: list = field(default_factory=list)  # output folders that must gain no file
    allow: frozenset = frozenset()  # file names tolerated there (known gaps with their own xfail test)


# ---- bad volume files (name -> (builder, expected problem regex)) ---------------------------
def _truncated_nrrd(d: Path) -> Path:
    p = write_image(d / "trunc.nrrd")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 200])
    return p


def _truncated_nifti(d: Path) -> Path:
    p = write_image(d / "trunc.nii")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def _corrupt_nifti_gz(d: Path) -> Path:
    p = write_image(d / "corrupt.nii.gz")
    data = bytearray(p.read_bytes())
    data[20:] = np.random.default_rng(0).integers(0, 256, len(data) - 20, dtype=np.uint8).tobytes()
    p.write_bytes(bytes(data))
    return p


def _garbage_nrrd(d: Path) -> Path:
    (d / "garbage.nrrd").write_bytes(np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8).tobytes())
    return d / "garbage.nrrd"


def _size_mismatch(d: Path) -> Path:
    return raw_nrrd(d / "mismatch.nrrd", sizes_xyz=(8, 8, 8), data=bytes(100))


def _nan(d: Path) -> Path:
    arr = image_array().astype(np.float32)
    arr[3, 4, 5] = np.nan
    return write_image(d / "nan.nrrd", arr)


def _inf(d: Path) -> Path:
    arr = image_array().astype(np.float32)
    arr[1, 2, 3] = np.inf
    arr[2, 2, 3] = -np.inf
    return write_image(d / "inf.nrrd", arr)


def _truncated(name: str, compress: bool, cut: int = 100) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        from coroseg.io.volume import Volume, write_volume

        p = write_volume(Volume(image_array(), (1.0, 1.0, 1.0)), d / name, compress=compress)
        data = p.read_bytes()
        p.write_bytes(data[: len(data) - cut])
        return p

    return make


def _two_d(d: Path) -> Path:
    return sitk_write(d / "flat.nrrd", image_array()[0])


def _four_d(d: Path) -> Path:
    return sitk_write(d / "fourd.nii.gz", np.stack([image_array()] * 2))


def _zero_spacing(d: Path) -> Path:
    return raw_mha(d / "zero.mha", spacing_xyz=(1.0, 0.0, 1.0))


def _sheared(d: Path) -> Path:
    return raw_nrrd(d / "sheared.nrrd", directions=((1, 0, 0), (0.5, 1, 0), (0, 0, 1)))


BAD_VOLUMES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "truncated_nrrd": (_truncated_nrrd, r"cannot read image"),
    "truncated_nifti": (_truncated_nifti, r"truncated NIfTI file: header promises \d+ bytes, found \d+"),
    "truncated_nifti_gz": (_truncated("cut.nii.gz", True), r"truncated or corrupt gzip data"),
    "truncated_mha": (_truncated("cut.mha", False), r"cannot read image \(.*data not read completely"),
    "truncated_nrrd_gz": (_truncated("cut.nrrd", True), r"cannot read image"),
    "corrupt_nifti_gz": (_corrupt_nifti_gz, r"cannot read image"),
    "garbage_nrrd": (_garbage_nrrd, r"cannot read image"),
    "header_data_size_mismatch": (_size_mismatch, r"cannot read image"),
    "nan_voxels": (_nan, r"1 voxels are NaN or infinite"),
    "inf_voxels": (_inf, r"2 voxels are NaN or infinite"),
    "array_2d": (_two_d, r"expected a 3D single-channel image, found 2D \(16x14\)"),
    "array_4d": (_four_d, r"expected a 3D single-channel image, found 4D \(16x14x12x2\)"),
    "zero_spacing": (_zero_spacing,
                     r"cannot read image \(Refusing to change spacing from \[1, 1, 1\] to \[1, 0, 1\]\)"),
    "sheared_direction": (_sheared, r"direction matrix is not orthonormal"),
}


# ---- DICOM folders built from the real series ---------------------------------------------
def _dicom_copy(d: Path) -> Path:
    dst = d / "series"
    shutil.copytree(DICOM, dst)
    return dst


def _dicom_missing_slice(d: Path) -> Path:
    dst = _dicom_copy(d)
    import SimpleITK as sitk

    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(dst))
    Path(files[len(files) // 2]).unlink()
    return dst


def _dicom_two_series(d: Path) -> Path:
    """The real series plus a 3-slice second series (its own SeriesInstanceUID) written by SimpleITK."""
    import SimpleITK as sitk

    dst = _dicom_copy(d)
    w = sitk.ImageFileWriter()
    w.KeepOriginalImageUIDOn()
    for k in range(3):
        sl = sitk.GetImageFromArray(image_array()[k])
        for tag, value in {"0020|000e": "1.2.826.0.1.3680043.2.1125.77.1", "0008|0060": "CT",
                           "0020|0013": str(k + 1), "0020|0032": f"0\\0\\{k}.0",
                           "0020|0037": "1\\0\\0\\0\\1\\0",
                           "0008|0018": f"1.2.826.0.1.3680043.2.1125.77.2.{k + 1}"}.items():
            sl.SetMetaData(tag, value)
        w.SetFileName(str(dst / f"second_{k}.dcm"))
        w.Execute(sl)
    return dst


BAD_DICOM = {
    "dicom_missing_slice": (_dicom_missing_slice, r"DICOM series has a missing slice"),
    "dicom_two_series": (_dicom_two_series, r"folder holds 2 DICOM series; expected one"),
}


# ---- centerline files --------------------------------------------------------------------
def _gml(d: Path, *, drop: str | None = None, nan: bool = False, shift: float = 0.0) -> Path:
    from coroseg.io.centerline import CenterlineGraph
    from coroseg.io.gml import write_gml

    z = np.linspace(1.0, 10.0, 10)
    pts = np.stack([np.full(10, 8.0 + shift), np.full(10, 7.0), z], axis=1)  # LPS (x, y, z) mm inside SHAPE
    p = d / "cl.gml"
    write_gml(CenterlineGraph.from_polylines([pts], [np.full(10, 1.5)]), p)
    text = p.read_text()
    if drop:
        text = re.sub(rf"\n\s*{drop} \"[^\"]*\"", "", text, count=1)
    if nan:
        text = re.sub(r'x "[^"]*"', 'x "nan"', text, count=1)
    p.write_text(text)
    return p


def _vtp_nan(d: Path) -> Path:
    from coroseg.io.vtp import polylines_to_vtp_text

    pts = np.array([[8.0, 7.0, 1.0], [8.0, 7.0, np.nan], [8.0, 7.0, 9.0]])
    p = d / "cl.vtp"
    p.write_text(polylines_to_vtp_text([pts], [np.full(3, 1.5)], binary=False))
    return p


BAD_CENTERLINES = {
    "gml_missing_attribute": (lambda d: _gml(d, drop="topology"), r"node '\d+' lacks attribute 'topology'"),
    "gml_nan_position": (lambda d: _gml(d, nan=True), r"not a number|NaN or infinite"),
    "vtp_nan_point": (_vtp_nan, r"NaN or infinite"),
    "centerline_outside_image": (lambda d: _gml(d, shift=500.0), r"10 of 10 centerline points lie outside the image"),
}


# ---- run folders --------------------------------------------------------------------------
def _damaged_run(d: Path, run: Path, how: str) -> Path:
    dst = d / "badrun"
    shutil.copytree(run, dst)
    w = dst / "model.safetensors"
    if how == "truncated":
        w.write_bytes(w.read_bytes()[:-500])
    elif how == "other_model":
        import torch

        from coroseg.models.registry import build_network, model_spec, network_config
        from coroseg.models.run import save_weights

        torch.manual_seed(1)
        save_weights(build_network(network_config(model_spec("unet3d_grid"), channels=(4, 8, 16),
                                                  num_res_units=0)), w)
    elif how == "pickle":
        import torch

        w.unlink()
        torch.save({"weight": torch.zeros(2)}, w)
    elif how == "missing_key":
        import json

        cfg = json.loads((dst / "config.json").read_text())
        del cfg["intensity"]
        (dst / "config.json").write_text(json.dumps(cfg))
    elif how == "config_not_json":
        (dst / "config.json").write_text("{'model': 'unet3d_grid'")
    elif how == "bad_intensity":
        import json

        cfg = json.loads((dst / "config.json").read_text())
        cfg["intensity"] = {"mean": 0.0, "std": 1.0}  # no clip window
        (dst / "config.json").write_text(json.dumps(cfg))
    return dst


BAD_RUNS = {
    "weights_truncated": ("truncated", "model.safetensors", r"truncated safetensors file"),
    "weights_other_model": ("other_model", "model.safetensors", r"weights are from another model"),
    "weights_pickle": ("pickle", "model.safetensors", r"pickled PyTorch checkpoint .* only loads \.safetensors"),
    "config_missing_key": ("missing_key", "config.json", r"config lacks key 'intensity'"),
    "config_not_json": ("config_not_json", "config.json", r"cannot read config"),
    "config_bad_intensity": ("bad_intensity", "config.json",
                             r"config intensity: expected clip=\[lo, hi\], mean and std"),
}


# ---- disk full / unwritable -------------------------------------------------------------------
def _fail_nth_replace(monkeypatch, n: int, under: Path) -> None:
    """``os.replace`` onto a file under ``under`` raises ENOSPC from its ``n``-th call on."""
    real = os.replace
    calls = [0]

    def fake(src, dst, *a, **k):
        if str(dst).startswith(str(under)):
            calls[0] += 1
            if calls[0] >= n:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", fake)


# ---- the catalogue -------------------------------------------------------------------------
def _predict(run, inp, out, *extra):
    return ["predict", "--model", run, "--input", inp, "--output", out, "--device", "cpu", *extra]


def _train_data_with(d: Path, *, image=None, label=None) -> Path:
    """A tiny split dataset whose first training case's image / label is replaced."""
    ds = split_dataset(d / "ds")
    base = ds / "train" / "Normal"
    if image is not None:
        for p in (base / "CTCA").iterdir():
            if p.name.startswith("case_0"):
                p.unlink()
        image(base / "CTCA")
    if label is not None:
        (base / "Annotations" / "case_0.nrrd").unlink()
        label(base / "Annotations")
    return ds


def _renamed(builder: Callable[[Path], Path], stem: str) -> Callable[[Path], Path]:
    """Build into ``folder`` and rename to ``<stem><ext>`` (so datasets pair by case id)."""
    from coroseg.io.volume import volume_extension

    def make(folder: Path) -> Path:
        p = builder(folder)
        dst = folder / f"{stem}{volume_extension(p)}"
        p.rename(dst)
        return dst

    return make


CASES: list = []
RUNS: dict[str, Path] = {}  # "crop": the crop-model run folder, set by test_bad_input


def case(cid, build, problem, *, marks=()):
    CASES.append(pytest.param(build, problem, id=cid, marks=list(marks)))


# info and predict on every bad volume (DICOM ones need the real series)
for _bad, _marks in ((BAD_VOLUMES, []), (BAD_DICOM, [needs_dicom])):
    for _name, (_b, _msg) in _bad.items():
        def _info(d, run, b=_b):
            p = b(d)
            return Spec(["info", p], p.name)

        def _pred(d, run, b=_b):
            p = b(d)
            return Spec(_predict(run, p, d / "out"), p.name, [d / "out"])

        case(f"info-{_name}", _info, _msg, marks=_marks)
        case(f"predict-{_name}", _pred, _msg, marks=_marks)

for _name, (_b, _msg) in BAD_CENTERLINES.items():
    def _pred(d, run, b=_b):
        img = write_image(d / "scan.nrrd")
        cl = b(d)
        return Spec(_predict(RUNS["crop"], img, d / "out", "--centerline", cl),
                    cl.name, [d / "out"])

    case(f"predict-{_name}", _pred, _msg)
    if _name != "centerline_outside_image":
        def _info(d, run, b=_b):
            cl = b(d)
            return Spec(["info", cl], cl.name)

        case(f"info-{_name}", _info, _msg)

for _name, (_how, _file, _msg) in BAD_RUNS.items():
    def _pred(d, run, how=_how, file=_file):
        bad = _damaged_run(d, run, how)
        img = write_image(d / "scan.nrrd")
        return Spec(_predict(bad, img, d / "out"), file, [d / "out"])

    case(f"predict-{_name}", _pred, _msg)


def _pred_unwritable(d, run):
    img = write_image(d / "scan.nrrd")
    (d / "blocker").write_text("a file, not a folder")
    return Spec(_predict(run, img, d / "blocker" / "out"), "blocker", [d / "blocker"])


case("predict-output_under_a_file", _pred_unwritable, r"cannot write output folder \(Not a directory\)")


def _pred_precision(d, run):
    img = write_image(d / "scan.nrrd")
    return Spec(_predict(run, img, d / "out", "--precision", "fp8"), "--precision", [d / "out"])


case("predict-unknown_precision", _pred_precision,
     r"Invalid value for '--precision'.*'fp8' is not one of 'auto', 'fp32', 'bf16'")


# evaluate
def _eval_setup(d: Path, pred_builder=None, gt_builder=None) -> tuple[Path, Path]:
    pred, gt = d / "pred", d / "gt"
    pred.mkdir()
    gt.mkdir()
    write_image(gt / "c1.nrrd", label_array(), is_label=True)
    if gt_builder:
        (gt / "c1.nrrd").unlink()
        gt_builder(gt)
    if pred_builder:
        pred_builder(pred)
    else:
        write_image(pred / "c1.nrrd", label_array(), is_label=True)
    return pred, gt


def _eval_labels(d, run):
    arr = label_array()
    arr[0, 0, :3] = [2, 3, 3]
    pred, gt = _eval_setup(d, gt_builder=lambda f: write_image(f / "c1.nrrd", arr, is_label=True))
    return Spec(["evaluate", "--pred", pred, "--gt", gt, "--out", d / "res" / "m.csv"], "c1.nrrd", [d / "res"])


case("evaluate-label_values_0123", _eval_labels, r"label values \{0, 1, 2, 3\} found; expected \{0, 1\}.*--label-value")


def _eval_grid(d, run):
    pred, gt = _eval_setup(d, pred_builder=lambda f: write_image(f / "c1.nrrd", label_array((12, 14, 15)),
                                                                 is_label=True))
    return Spec(["evaluate", "--pred", pred, "--gt", gt, "--out", d / "res" / "m.csv"], "c1.nrrd", [d / "res"])


case("evaluate-grid_mismatch", _eval_grid, r"grid does not match ground truth c1.nrrd")

for _name in ("truncated_nrrd", "nan_voxels", "array_4d", "sheared_direction"):
    _b, _msg = BAD_VOLUMES[_name]

    def _ev(d, run, b=_b):
        pred, gt = _eval_setup(d, pred_builder=_renamed(b, "c1"))
        return Spec(["evaluate", "--pred", pred, "--gt", gt, "--out", d / "res" / "m.csv"], "c1.", [d / "res"])

    case(f"evaluate-{_name}", _ev, _msg)


def _eval_unwritable(d, run):
    pred, gt = _eval_setup(d)
    (d / "blocker").write_text("x")
    return Spec(["evaluate", "--pred", pred, "--gt", gt, "--out", d / "blocker" / "m.csv"], "blocker", [d / "blocker"])


case("evaluate-output_under_a_file", _eval_unwritable, r"cannot write output folder")


# train
def _train_spec(d, ds, name):
    return Spec(["train", "--data", ds, "--model", "unet3d_grid", "--out", d / "run", "--epochs", "1",
                 "--device", "cpu", "--no-progress", *TINY_TRAIN], name, [d / "run"],
                frozenset({"train.log", "splits.json"}))


for _name in ("truncated_nrrd", "nan_voxels", "array_2d", "zero_spacing"):
    _b, _msg = BAD_VOLUMES[_name]

    def _tr(d, run, b=_b):
        ds = _train_data_with(d, image=_renamed(b, "case_0"))
        return _train_spec(d, ds, "case_0.")

    case(f"train-image-{_name}", _tr, _msg)


def _train_labels(d, run):
    arr = label_array(((16, 16, 16)))
    arr[0, 0, :2] = [2, 7]
    ds = _train_data_with(d, label=lambda f: write_image(f / "case_0.nrrd", arr, is_label=True))
    return _train_spec(d, ds, "case_0.nrrd")


case("train-label_values_0127", _train_labels, r"label values \{0, 1, 2, 7\} found; expected \{0, 1\}")


def _train_grid(d, run):
    ds = _train_data_with(d, label=lambda f: write_image(f / "case_0.nrrd", label_array((16, 16, 15)), is_label=True))
    return _train_spec(d, ds, "case_0.nrrd")


case("train-grid_mismatch", _train_grid, r"label does not match image case_0.nrrd")


def _train_empty(d, run):
    ds = split_dataset(d / "ds")
    for p in ds.rglob("Annotations/*.nrrd"):
        write_image(p, np.zeros((16, 16, 16), np.uint8), is_label=True)
    return _train_spec(d, ds, "ds")


case("train-all_labels_empty", _train_empty, r"labels are empty")


def _train_out_file(d, run):
    ds = split_dataset(d / "ds")
    (d / "blocker").write_text("x")
    return Spec(["train", "--data", ds, "--model", "unet3d_grid", "--out", d / "blocker", "--epochs", "1",
                 "--device", "cpu", "--no-progress", *TINY_TRAIN], "blocker", [])


case("train-out_is_a_file", _train_out_file, r"not a folder")


def _train_bad_set(setting: str, name: str):
    def build(d, run):
        ds = split_dataset(d / "ds")
        return Spec(["train", "--data", ds, "--model", "unet3d_crop", "--out", d / "run", "--epochs", "1",
                     "--device", "cpu", "--no-progress", *TINY_TRAIN, "--set", setting], name, [d / "run"])
    return build


case("train-set_unknown_crop_method", _train_bad_set("crop_method=kmean", "crop_method"),
     r"training option crop_method='kmean': expected one of kmeans, dbscan")
case("train-set_scalar_patch_size", _train_bad_set("patch_size=64", "patch_size"),
     r"training option patch_size=64: expected three positive whole numbers")


# synth
def _synth_preset(d, run):
    return Spec(["synth", "--out", d / "ds", "--cases", "1", "--preset", "huge"], "huge", [d / "ds"])


case("synth-unknown_preset", _synth_preset, r"Invalid value for '--preset'.*'huge' is not one of 'small', 'asoca'")


def _synth_anatomy(d, run):
    (d / "anat").mkdir()
    return Spec(["synth", "--out", d / "ds", "--cases", "1", "--anatomy", d / "anat"], "anat", [d / "ds"])


case("synth-anatomy_without_annotations", _synth_anatomy, r"expected an ASOCA-style folder")


def _synth_out_file(d, run):
    (d / "blocker").write_text("x")
    return Spec(["synth", "--out", d / "blocker" / "ds", "--cases", "1"], "blocker", [d / "blocker"])


case("synth-out_under_a_file", _synth_out_file, r"blocker/ds: cannot write output folder \(Not a directory\)")


PROGRESS = re.compile(r"^\S[^:]*:\s+\d+%\|")  # a tqdm progress-bar refresh, not a message


def _check(res, spec: Spec, problem: str) -> None:
    assert "Traceback" not in res.err + res.out
    lines = [ln for ln in res.messages if not PROGRESS.match(ln)]
    assert res.code == 2, (res.code, res.err)
    assert len(lines) == 1, res.err
    assert not [ln for ln in res.log if ln.startswith("coroseg: error: ")], res.err  # printed once, by the CLI
    line = lines[0]
    assert line.startswith("coroseg: error: "), line
    assert spec.names in line, f"message does not name {spec.names!r}: {line}"
    assert re.search(problem, line), f"expected /{problem}/ in: {line}"


@pytest.mark.parametrize("build, problem", CASES)
def test_bad_input(build, problem, tmp_path, run_dir, crop_run_dir, cli):
    RUNS["crop"] = crop_run_dir
    spec = build(tmp_path, run_dir)
    before = {str(w): snapshot(w) for w in spec.watch}
    res = cli(spec.argv)
    _check(res, spec, problem)
    for w in spec.watch:
        new = snapshot(w) - before[str(w)]
        files = [n for n in new if (w / n).is_file() and n not in spec.allow] if w.is_dir() else []
        assert not files, f"partial output left in {w}: {sorted(files)}"


def test_predict_summary_write_fails_leaves_nothing(tmp_path, run_dir, cli, monkeypatch):
    """The case's mask and centerline files go too when its summary.json cannot be written."""
    img = write_image(tmp_path / "scan.nrrd")
    out = tmp_path / "out"
    real = os.replace

    def fake(src, dst, *a, **k):
        if Path(dst).name == "summary.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", fake)
    res = cli(_predict(run_dir, img, out))
    _check(res, Spec([], out.name), r"cannot write file \(No space left on device\)")
    assert not [p for p in out.rglob("*") if p.is_file()]


# ---- disk full during write (ENOSPC simulated on os.replace, the commit of every atomic write) --
@pytest.mark.parametrize("nth", [1, 2], ids=["first_file", "second_file"])
def test_predict_disk_full_leaves_nothing(tmp_path, run_dir, cli, monkeypatch, nth):
    img = write_image(tmp_path / "scan.nrrd")
    out = tmp_path / "out"
    _fail_nth_replace(monkeypatch, nth, out)
    res = cli(_predict(run_dir, img, out))
    _check(res, Spec([], out.name), r"cannot write file \(No space left on device\)")
    assert not [p for p in out.rglob("*") if p.is_file()]


def test_evaluate_disk_full_leaves_nothing(tmp_path, cli, monkeypatch):
    pred, gt = _eval_setup(tmp_path)
    res_dir = tmp_path / "res"
    _fail_nth_replace(monkeypatch, 1, res_dir)
    res = cli(["evaluate", "--pred", pred, "--gt", gt, "--out", res_dir / "m.csv"])
    _check(res, Spec([], "res"), r"cannot write file \(No space left on device\)")
    assert not [p for p in res_dir.rglob("*") if p.is_file()]


def test_synth_disk_full_leaves_nothing(tmp_path, cli, monkeypatch):
    out = tmp_path / "ds"
    _fail_nth_replace(monkeypatch, 2, out)
    res = cli(["synth", "--out", out, "--cases", "1", "--seed", "0"])
    _check(res, Spec([], "ds"), r"cannot write file \(No space left on device\)")
    assert not [p for p in out.rglob("*") if p.is_file()]


# ---- constant image: documented behaviour is "no vessel found": exit 0, empty mask, a warning --
def test_predict_constant_image_gives_empty_mask(tmp_path, run_dir, cli):
    from coroseg.io.volume import read_volume

    img = write_image(tmp_path / "flat.nrrd", np.full((12, 14, 16), 40, np.int16))
    res = cli(_predict(run_dir, img, tmp_path / "out"))
    assert res.code == 0, res.err
    assert "Traceback" not in res.err
    seg = read_volume(tmp_path / "out" / "flat_seg.nrrd", is_label=True)
    assert seg.shape == (12, 14, 16) and set(np.unique(seg.array)) <= {0, 1}


# ---- the CLI's own option errors (typer/click): exit 2, but one line? --------------------------
def test_missing_input_path_is_one_line(tmp_path, run_dir, cli):
    res = cli(_predict(run_dir, tmp_path / "nope.nrrd", tmp_path / "out"))
    assert res.code == 2
    assert len(res.err.strip().splitlines()) == 1, res.err  # found before any work: no log line either


def test_negative_spacing_is_a_flip_not_an_error(tmp_path, cli):
    """ITK turns a negative ElementSpacing into a positive spacing and a flipped axis: same world grid."""
    from coroseg.io.volume import read_volume

    vol = read_volume(raw_mha(tmp_path / "negative.mha", spacing_xyz=(1.0, 1.0, -0.5)))
    assert vol.spacing == (0.5, 1.0, 1.0)
    np.testing.assert_array_equal(vol.direction, np.diag([1.0, 1.0, -1.0]))
    res = cli(["info", tmp_path / "negative.mha"])
    assert res.code == 0 and "orientation: LPI" in res.out


def test_train_bad_data_leaves_no_run_folder(tmp_path, cli):
    ds = _train_data_with(tmp_path, image=_renamed(_nan, "case_0"))
    res = cli(_train_spec(tmp_path, ds, "case_0.").argv)
    assert res.code == 2
    assert not (tmp_path / "run").exists()

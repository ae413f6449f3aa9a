"""The Python API (coroseg.predict, coroseg.Predictor): what goes in comes back in kind, geometry kept."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from infer_helpers import dice, tiny_run_folder

import coroseg
from coroseg.errors import CorosegError
from coroseg.infer.pipeline import predict_volume
from coroseg.io.volume import Volume, read_volume, write_volume

README = Path(__file__).resolve().parents[2] / "README.md"


def _oblique(vol: Volume) -> Volume:
    """The phantom with a rotated direction and an offset origin (so geometry is really tested)."""
    c, s = np.cos(0.3), np.sin(0.3)
    return Volume(vol.array, (1.2, 0.9, 1.0), (-40.0, 12.5, 7.0), np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]),
                  vol.is_label)


def test_path_in_path_out(tmp_path, fake_run, phantom):
    image, label, _ = phantom
    scan = write_volume(image, tmp_path / "scan.nii.gz")
    res = coroseg.predict(scan, model=fake_run("unet3d_grid"), output=tmp_path / "out", device="cpu")
    assert res.seg == tmp_path / "out" / "scan_seg.nii.gz" and res.summary["id"] == "scan"
    assert res.centerline == tmp_path / "out" / "scan_centerline.vtp" and res.centerline.is_file()
    seg = read_volume(res.seg, is_label=True)
    assert seg.same_grid(image) and dice(seg.array > 0, label.array > 0) > 0.8


def test_sitk_in_sitk_out_on_the_same_grid(fake_run, phantom):
    image, label, _ = phantom
    vol = _oblique(image)
    img = vol.to_sitk()
    run = fake_run("unet3d_crop")
    res = coroseg.predict(img, model=run, device="cpu", save_prob=True)
    assert isinstance(res.seg, sitk.Image) and isinstance(res.prob, sitk.Image)
    for get in ("GetOrigin", "GetSpacing", "GetDirection", "GetSize"):
        assert getattr(res.seg, get)() == getattr(img, get)()
    want = predict_volume(run, vol, device="cpu").seg.array
    np.testing.assert_array_equal(sitk.GetArrayFromImage(res.seg), want)
    assert dice(want > 0, label.array > 0) > 0.8 and len(res.centerline) > 0
    assert res.summary["centerline_source"] == "auto" and res.summary["n_crops"] > 0


def test_without_a_model_the_builtin_one_segments(phantom):
    image, _, _ = phantom
    res = coroseg.predict(image, device="cpu")
    assert isinstance(res.seg, Volume) and res.seg.same_grid(image) and res.summary["model"] == "unet3d_crop"


def test_volume_in_volume_out(fake_run, phantom):
    image, _, _ = phantom
    res = coroseg.Predictor(fake_run("unet3d_grid"), device="cpu")(image)
    assert isinstance(res.seg, Volume) and res.seg.same_grid(image) and res.prob is None


def test_predictor_loads_the_weights_once(grid_run, phantom, monkeypatch):
    import coroseg.models.run as run_mod

    calls = []
    real = run_mod.load_run
    monkeypatch.setattr(run_mod, "load_run", lambda *a, **k: calls.append(a) or real(*a, **k))
    predictor = coroseg.Predictor(grid_run, device="cpu")
    image, _, _ = phantom
    for _ in range(3):
        assert predictor(image).seg.shape == image.shape
    assert len(calls) == 1


def test_a_folder_gives_one_result_per_scan(tmp_path, fake_run, phantom):
    image, _, _ = phantom
    for name in ("a", "b"):
        write_volume(image, tmp_path / "in" / f"{name}.nrrd")
    res = coroseg.predict(tmp_path / "in", model=fake_run("unet3d_grid"), output=tmp_path / "out", device="cpu")
    assert [r.summary["id"] for r in res] == ["a", "b"] and all(r.seg.is_file() for r in res)


def test_api_errors_are_one_line(tmp_path, fake_run, phantom):
    image, _, _ = phantom
    with pytest.raises(CorosegError, match="neither a run folder nor an installed model"):
        coroseg.predict(image, model=str(tmp_path / "no_such_run"))
    with pytest.raises(CorosegError, match="needs an output folder"):
        coroseg.predict(write_volume(image, tmp_path / "s.nrrd"), model=fake_run("unet3d_grid"), device="cpu")
    with pytest.raises(CorosegError, match="must be a path, a SimpleITK image or a coroseg Volume, found ndarray"):
        coroseg.predict(image.array, model=fake_run("unet3d_grid"), device="cpu")
    with pytest.raises(CorosegError, match="expected a 3D single-channel image, found 2D"):
        coroseg.predict(sitk.Image(8, 8, sitk.sitkFloat32), model=fake_run("unet3d_grid"), device="cpu")


def test_import_coroseg_is_light_and_names_resolve():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import sys, coroseg; print('torch' in sys.modules, "
                          "'SimpleITK' in sys.modules)"], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]  # nothing heavy until a name is used
    assert coroseg.train_model is __import__("coroseg.train.trainer", fromlist=["train"]).train
    assert {"predict", "Predictor", "read_volume", "write_volume", "test_model"} <= set(dir(coroseg))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        coroseg.nope  # noqa: B018


def test_readme_api_example_runs(tmp_path, monkeypatch, phantom):
    """The README's Python example, as printed there, on a tiny run folder and a phantom scan."""
    block = re.search(r"<!-- api-example -->\s*```python\n(.*?)```", README.read_text(), re.S)
    assert block, "README lost its marked Python API example"
    monkeypatch.chdir(tmp_path)
    image, _, _ = phantom
    write_volume(image, Path("scan.nii.gz"))
    Path("demo_out/run").mkdir(parents=True)
    tiny_run_folder(Path("demo_out/run"), "unet3d_crop")
    scope: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), scope)  # noqa: S102 - our own README
    assert Path("out/scan_seg.nii.gz").is_file()
    assert scope["mask"].GetSize() == image.to_sitk().GetSize()

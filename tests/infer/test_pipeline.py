"""End-to-end ``predict`` / ``predict_volume`` on a tube phantom with deterministic networks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from infer_helpers import TUBE_HU, dice, flipped, tube_phantom

from coroseg.errors import CorosegError, InputError
from coroseg.infer import PostprocessOptions, predict, predict_volume
from coroseg.infer.outputs import read_stl
from coroseg.io.centerline_files import read_centerline, write_centerline
from coroseg.io.volume import Volume, grid_mismatch, read_volume, resample_to_grid, write_volume

REPO = Path(__file__).resolve().parents[2]
SHARED = (REPO / ".." / "shared" / "data").resolve()
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is absent (real reference data)")


def shifted(vol: Volume, origin=(-21.5, 14.25, 102.0)) -> Volume:
    return Volume(vol.array, vol.spacing, origin, vol.direction, vol.is_label)


@pytest.fixture
def scan():
    """Anisotropic scan (not at the model spacing) with a non-zero origin, and its label."""
    img, lab, graph = tube_phantom(shape=(30, 48, 48), spacing=(1.2, 0.9, 0.9))
    return shifted(img), shifted(lab), graph.transformed(lambda p: p + np.array([-21.5, 14.25, 102.0]))


def assert_same_geometry(a: Volume, b: Volume) -> None:
    assert a.shape == b.shape
    np.testing.assert_allclose(a.spacing, b.spacing, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a.origin, b.origin, rtol=0, atol=1e-4)
    np.testing.assert_allclose(a.direction, b.direction, rtol=0, atol=1e-6)


def test_predict_writes_all_outputs_geometry_exact(tmp_path, scan, fake_run):
    img, lab, _ = scan
    src = write_volume(img, tmp_path / "in" / "case_7.nrrd")
    out = tmp_path / "out"
    [summary] = predict(fake_run("unet3d_crop"), src, out, save_prob=True, mesh=True, progress=False)

    seg = read_volume(out / "case_7_seg.nrrd", is_label=True)
    prob = read_volume(out / "case_7_prob.nrrd")
    ref = read_volume(src)
    assert_same_geometry(seg, ref)
    assert_same_geometry(prob, ref)
    assert seg.array.dtype == np.uint8 and set(np.unique(seg.array)) == {0, 1}
    assert prob.array.dtype == np.float32 and 0.0 <= prob.array.min() and prob.array.max() <= 1.0
    assert dice(seg.array, lab.array) > 0.85

    # centerline files reload, in the image, two trees
    for ext in (".vtp", ".gml", ".mrk.json"):
        g = read_centerline(out / f"case_7_centerline{ext}", reference=ref)
        assert len(g) > 10 and len(g.ostia()) == 2
        idx = ref.world_to_index(g.positions())
        assert np.all((idx > -0.5) & (idx < np.array(ref.shape) - 0.5))
    # STL vertices: LPS world coordinates inside the image box
    _, tri = read_stl(out / "case_7_vessels.stl")
    assert len(tri) > 100
    idx = ref.world_to_index(tri.reshape(-1, 3))
    assert np.all((idx > -1.0) & (idx < np.array(ref.shape)))

    data = json.loads((out / "summary.json").read_text())
    assert data["cases"] == [summary]
    assert summary["centerline_source"] == "auto" and summary["n_crops"] > 0
    assert summary["vessel_volume_mm3"] == pytest.approx(seg.array.sum() * np.prod(seg.spacing))
    assert summary["tree_length_mm"] > 40 and summary["n_branches"] >= 3
    for stage in ("read", "preprocess", "locator_network", "crop_network", "resample_back", "postprocess",
                  "write", "total"):
        assert summary["timings_s"][stage] >= 0
    assert sorted(summary["files"]) == ["centerline.gml", "centerline.mrk.json", "centerline.vtp", "mesh",
                                        "prob", "seg"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left


@pytest.mark.parametrize("model", ["unet3d_crop", "unet2d_crop", "unet3d_grid", "unet2d_grid"])
@pytest.mark.parametrize("axes", [(2,), (1, 2), (0, 1, 2)], ids=["flip_x", "ras", "flip_all"])
def test_orientation_invariance(scan, fake_run, model, axes):
    """The same scan stored flipped / RAS gives the same segmentation in world space."""
    img, _, _ = scan
    patch = (1, 32, 32) if "2d" in model else (16, 16, 16)
    run = fake_run(model, patch=patch)
    base = predict_volume(run, img, device="cpu")
    var_img = flipped(img, axes)
    if axes == (1, 2):
        np.testing.assert_allclose(var_img.direction, np.diag([-1.0, -1.0, 1.0]))  # RAS storage
    var = predict_volume(run, var_img, device="cpu")
    assert_same_geometry(var.seg, var_img)
    back = resample_to_grid(var.seg, img)  # nearest: the grids coincide voxel for voxel
    assert base.seg.array.sum() > 200
    assert dice(back.array, base.seg.array) >= 0.99
    if base.graph is not None:
        assert var.graph.length_mm() == pytest.approx(base.graph.length_mm(), rel=0.05)


def test_centerline_file_auto_oracle_and_none(tmp_path, scan, fake_run):
    img, lab, gt = scan
    run = fake_run("unet3d_crop")
    write_centerline(gt, tmp_path / "gt.vtp")
    write_centerline(gt, tmp_path / "gt.gml")
    auto = predict_volume(run, img, centerline="auto")
    from_vtp = predict_volume(run, img, centerline=tmp_path / "gt.vtp")
    from_gml = predict_volume(run, img, centerline=str(tmp_path / "gt.gml"))
    oracle = predict_volume(run, img, centerline=gt, centerline_source="oracle")
    none = predict_volume(run, img, centerline="none")
    assert [p.info["centerline_source"] for p in (auto, from_vtp, from_gml, oracle, none)] == \
        ["auto", "file", "file", "oracle", "none"]
    assert none.info["n_crops"] == 0 and oracle.info["n_crops"] > 0
    for p in (auto, from_vtp, from_gml, oracle, none):
        assert dice(p.seg.array, lab.array) > 0.85
    np.testing.assert_array_equal(from_vtp.seg.array, oracle.seg.array)
    np.testing.assert_array_equal(from_gml.seg.array, oracle.seg.array)
    grid = predict_volume(fake_run("unet3d_grid"), img, centerline=gt)
    assert grid.info["centerline_source"] == "none" and "grid model" in grid.info["warnings"][0]


def test_iteration_adds_crops_where_vessels_leave(scan, fake_run):
    """A prior covering only one tree: iterating finds the rest of what the crops touch."""
    img, lab, gt = scan
    run = fake_run("unet3d_crop")
    pos = gt.positions()
    part = gt.copy()
    # keep only the first tree's proximal half (x < -5 mm in this frame ~ tree 1's start)
    far = [n for n, p in zip(part.nodes, pos) if p[2] > 102.0 + 14.0]
    part.graph.remove_nodes_from(far)
    once = predict_volume(run, img, centerline=part, iterate=False)
    more = predict_volume(run, img, centerline=part, iterate=True, max_iterations=4)
    assert more.info["n_crops"] > once.info["n_crops"]
    assert more.seg.array.sum() > once.seg.array.sum()
    assert dice(more.seg.array, lab.array) > dice(once.seg.array, lab.array)


def test_tracking_stops_at_the_crop_cap(scan, fake_run, monkeypatch):
    import importlib

    stages = importlib.import_module("coroseg.infer.stages")
    img, _, gt = scan
    free = predict_volume(fake_run("unet3d_crop"), img, centerline=gt, max_iterations=4)
    monkeypatch.setattr(stages, "MAX_CROPS", 2)
    capped = predict_volume(fake_run("unet3d_crop"), img, centerline=gt, max_iterations=4)
    assert free.info["n_crops"] > 2 and capped.info["n_crops"] == 2


def test_batch_folder_keeps_extensions(tmp_path, scan, fake_run):
    img, _, _ = scan
    write_volume(img, tmp_path / "in" / "a.nii.gz")
    write_volume(flipped(img, (0,)), tmp_path / "in" / "b.mha")
    out = tmp_path / "out"
    summaries = predict(fake_run("unet3d_grid"), tmp_path / "in", out, progress=False)
    assert [s["id"] for s in summaries] == ["a", "b"]
    assert (out / "a_seg.nii.gz").exists() and (out / "b_seg.mha").exists()
    assert len(json.loads((out / "summary.json").read_text())["cases"]) == 2
    assert summaries[0]["centerline_source"] == "none"
    # a later run into the same folder keeps the other scans' entries and replaces its own
    predict(fake_run("unet3d_grid"), tmp_path / "in" / "a.nii.gz", out, progress=False)
    assert [c["id"] for c in json.loads((out / "summary.json").read_text())["cases"]] == ["b", "a"]


def test_real_run_folder_loads_and_predicts(tmp_path, scan, real_run_dir):
    img, _, _ = scan
    src = write_volume(img, tmp_path / "scan.nii.gz")
    [s] = predict(real_run_dir, src, tmp_path / "out", device="cpu", progress=False,
                  postprocess=PostprocessOptions.none())
    seg = read_volume(tmp_path / "out" / "scan_seg.nii.gz", is_label=True)
    assert grid_mismatch(read_volume(src), seg, atol=1e-5) is None
    assert s["model"] == "unet3d_crop" and s["device"] == "cpu"
    # a random locator marks a large part of the volume: detected, run without a prior, said so
    assert s["centerline_source"] == "auto-failed" and s["n_crops"] == 0
    assert any("not a coronary tree" in w for w in s["warnings"])


def test_bad_inputs_name_the_file(tmp_path, scan, fake_run):
    img, _, _ = scan
    run = fake_run("unet3d_crop")
    with pytest.raises(InputError, match="nope.nrrd: no such file"):
        predict(run, tmp_path / "nope.nrrd", tmp_path / "out")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(InputError, match="x.txt: unsupported file type"):
        predict(run, tmp_path / "x.txt", tmp_path / "out")
    src = write_volume(img, tmp_path / "s.nrrd")
    with pytest.raises(InputError, match="cl.vtp: centerline file not found"):
        predict(run, src, tmp_path / "out", centerline=tmp_path / "cl.vtp")
    no_loc = fake_run("unet3d_crop", locator=False)
    with pytest.raises(CorosegError, match="no locator"):
        predict(no_loc, src, tmp_path / "out")
    # a batch with one corrupt file: the good one is written, then the failure is reported
    batch = tmp_path / "batch"
    write_volume(img, batch / "good.nrrd")
    (batch / "bad.nrrd").write_bytes(b"NRRD0004\nnonsense\n")
    with pytest.raises(CorosegError, match="1 of 2 scans failed: .*bad.nrrd"):
        predict(fake_run("unet3d_grid"), batch, tmp_path / "out2", progress=False)
    assert (tmp_path / "out2" / "good_seg.nrrd").exists()
    cases = json.loads((tmp_path / "out2" / "summary.json").read_text())["cases"]
    assert [("error" in c) for c in cases] == [True, False]


@needs_shared
@pytest.mark.parametrize("rel", ["real-ct/chest-cta/ct.nii.gz", "real-ct/dicom-series"])
def test_real_ct_end_to_end(tmp_path, fake_run, rel):
    """Real chest CTA (NIfTI) and a real DICOM series: runs, geometry-correct outputs."""
    src = SHARED / rel
    run = fake_run("unet3d_crop", patch=(32, 32, 32), spacing=(1.5, 1.5, 1.5))
    run.config["locator"]["spacing"] = [2.0, 2.0, 2.0]
    run.config["intensity"] = {"clip": [-200.0, 800.0], "mean": 250.0, "std": 150.0}
    run.config["locator"]["intensity"] = run.config["intensity"]
    # the threshold "network" marks bone and blood pool too (~9 % of the scan): skip the iteration
    [s] = predict(run, src, tmp_path / "out", mesh=True, progress=False, iterate=False)
    ref = read_volume(src)
    seg = read_volume(tmp_path / "out" / s["files"]["seg"], is_label=True)
    assert s["files"]["seg"].endswith(".nii.gz")
    assert_same_geometry(seg, ref)
    assert s["vessel_volume_mm3"] >= 0 and s["timings_s"]["total"] > 0


@pytest.mark.parametrize("direction", [np.eye(3), np.diag([-1.0, -1.0, 1.0])])
def test_box_resample_equals_whole_volume(direction):
    """Resampling only the box of non-zero probability gives the whole-volume answer exactly."""
    from coroseg.infer.pipeline import _input_box
    from coroseg.io.volume import sub_grid

    vol = Volume(np.zeros((23, 31, 29), np.int16), (1.3, 0.7, 0.8), (5.0, -3.0, 12.0), direction)
    grid = Volume(np.zeros((30, 22, 23), np.float32), (1.0, 1.0, 1.0), vol.origin, direction)
    prob = np.zeros(grid.shape, np.float32)
    prob[10:16, 5:9, 12:20] = np.random.default_rng(0).random((6, 4, 8), dtype=np.float32)
    full = resample_to_grid(grid.with_array(prob), vol, order=1, default=0.0).array
    box, src = _input_box(grid.with_array(prob), vol)
    assert src.array.size < prob.size / 10  # only the non-zero part of the model grid is resampled
    part = np.zeros(vol.shape, np.float32)
    part[box] = resample_to_grid(src, sub_grid(vol, box), order=1, default=0.0).array
    assert np.count_nonzero(full) > 50
    np.testing.assert_allclose(part, full, atol=1e-6)
    assert _input_box(grid.with_array(np.zeros_like(prob)), vol) is None


def test_keep_prob_and_precision_options(scan, fake_run):
    """keep_prob=False drops only the probability map; bf16 and fp32 give (nearly) the same mask."""
    img, lab, gt = scan
    run = fake_run("unet3d_crop")
    full = predict_volume(run, img, centerline=gt, precision="fp32")
    lean = predict_volume(run, img, centerline=gt, keep_prob=False, precision="fp32")
    assert lean.prob is None and full.prob is not None
    assert full.prob.same_grid(img)
    np.testing.assert_array_equal(lean.seg.array, full.seg.array)
    half = predict_volume(run, img, centerline=gt, keep_prob=False, precision="bf16")
    assert dice(half.seg.array, full.seg.array) > 0.98
    with pytest.raises(ValueError, match="precision must be one of"):
        predict_volume(run, img, centerline=gt, precision="fp8")


def test_given_graph_outside_the_image_is_refused(scan, fake_run):
    """A prior graph in the wrong frame (e.g. a .vtp read without its image) fails loudly."""
    from coroseg.errors import InputError

    img, lab, gt = scan
    far = gt.transformed(lambda p: p + np.array([500.0, 0.0, 0.0]))
    with pytest.raises(InputError, match=r"oracle centerline: \d+ of \d+ centerline points lie outside the image"):
        predict_volume(fake_run("unet3d_crop"), img, centerline=far, centerline_source="oracle")


# ---- many scans: -i/-o repeatable, --continue, nnU-Net ids (issue 19) -------------------------
def test_continue_skips_exactly_the_complete_cases(tmp_path, grid_run, monkeypatch):
    import json

    import coroseg.infer.files as files
    from coroseg.cli import main

    scans = tmp_path / "scans"
    for name in ("a", "b", "c"):
        write_volume(Volume(np.full((12, 14, 16), 40, np.int16), (1.0, 1.0, 1.0)), scans / f"{name}.nrrd")
    out = tmp_path / "out"
    files.predict(grid_run, scans, out, device="cpu", progress=False)
    (out / "b_seg.nrrd").unlink()  # b is no longer complete
    ran = []
    real = files._predict_one
    monkeypatch.setattr(files, "_predict_one", lambda loaded, path, *a, **k: ran.append(path.name) or
                        real(loaded, path, *a, **k))
    with pytest.raises(SystemExit) as ex:
        main(["predict", "--model", str(grid_run), "-i", str(scans), "-o", str(out), "--device", "cpu", "--continue"])
    assert ex.value.code == 0
    assert ran == ["b.nrrd"]
    assert sorted(c["id"] for c in json.loads((out / "summary.json").read_text())["cases"]) == ["a", "b", "c"]


def test_repeated_input_option(tmp_path, grid_run):
    from coroseg.cli import main

    for name in ("x", "y"):
        write_volume(Volume(np.full((12, 14, 16), 40, np.int16), (1.0, 1.0, 1.0)), tmp_path / f"{name}.nrrd")
    with pytest.raises(SystemExit) as ex:
        main(["predict", "--model", str(grid_run), "-i", str(tmp_path / "x.nrrd"), "-i", str(tmp_path / "y.nrrd"),
              "-o", str(tmp_path / "out"), "--device", "cpu"])
    assert ex.value.code == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*_seg.nrrd")) == ["x_seg.nrrd", "y_seg.nrrd"]


def test_nnunet_channel_suffix_is_not_part_of_the_case_id(tmp_path, grid_run):
    from coroseg.eval.evaluate import evaluate_folders, pair_cases
    from coroseg.infer.files import predict
    from coroseg.infer.pipeline import case_id

    assert case_id(Path("imagesTs/case_7_0000.nii.gz")) == "case_7"
    assert case_id(Path("_0000.nii.gz")) == "_0000"  # nothing would be left
    # outside an nnU-Net image folder a name ending in _0000 is just a name (the phantom's synth_0000)
    phantoms = tmp_path / "CTCA"
    for n in ("synth_0000", "synth_0001"):
        write_volume(Volume(np.zeros((2, 2, 2), np.int16), (1.0, 1.0, 1.0)), phantoms / f"{n}.nrrd")
    assert case_id(phantoms / "synth_0000.nrrd") == "synth_0000"
    ims, labs = tmp_path / "imagesTs", tmp_path / "labelsTs"
    arr = np.full((12, 14, 16), 40, np.int16)
    write_volume(Volume(arr, (1.0, 1.0, 1.0)), ims / "case_7_0000.nii.gz")
    write_volume(Volume(np.zeros(arr.shape, np.uint8), (1.0, 1.0, 1.0), is_label=True), labs / "case_7.nii.gz")
    predict(grid_run, ims, tmp_path / "pred", device="cpu", progress=False, save_prob=True)
    assert (tmp_path / "pred" / "case_7_seg.nii.gz").exists() and (tmp_path / "pred" / "case_7_prob.nii.gz").exists()
    pairs, missing = pair_cases(tmp_path / "pred", labs)  # the _prob map is not taken for a mask
    assert [(c, p.name) for c, p, _ in pairs] == [("case_7", "case_7_seg.nii.gz")] and missing == []
    rows, _ = evaluate_folders(tmp_path / "pred", labs)
    assert [r["case_id"] for r in rows] == ["case_7"]


def test_a_batch_folder_skips_files_named_like_labels_or_outputs(tmp_path):
    """A label beside its scan is no second scan, and does not hide an nnU-Net folder's _0000 suffix."""
    from coroseg.infer.pipeline import case_id, find_inputs

    vol = Volume(np.zeros((2, 2, 2), np.int16), (1.0, 1.0, 1.0))
    for name in ("a.nrrd", "a_seg.nrrd", "b.label.nii.gz", "b.img.nii.gz", "a_prob.nrrd", "c_mask.mha"):
        write_volume(vol, tmp_path / "batch" / name)
    assert [p.name for p in find_inputs(tmp_path / "batch")] == ["a.nrrd", "b.img.nii.gz"]
    only_labels = tmp_path / "labels"
    write_volume(vol, only_labels / "x_seg.nrrd")
    assert [p.name for p in find_inputs(only_labels)] == ["x_seg.nrrd"]  # nothing else: taken as given
    nn = tmp_path / "nn"
    for name in ("case_0000.nrrd", "case_0000_seg.nrrd"):
        write_volume(vol, nn / name)
    assert case_id(nn / "case_0000.nrrd") == "case"


def test_an_nnunet_folder_is_looked_at_again_when_its_files_change(tmp_path):
    from coroseg.infer.pipeline import case_id

    vol = Volume(np.zeros((2, 2, 2), np.int16), (1.0, 1.0, 1.0))
    folder = tmp_path / "scans"
    write_volume(vol, folder / "case_0000.nrrd")
    assert case_id(folder / "case_0000.nrrd") == "case"
    write_volume(vol, folder / "other.nrrd")  # no longer every scan ends in _0000: not nnU-Net's
    assert case_id(folder / "case_0000.nrrd") == "case_0000"


def test_hu_referencing_segments_a_weak_bolus_scan_the_plain_run_misses(fake_run):
    """Tubes at 450 HU with a blood pool at the same level and fat around: scaled to a weak bolus
    (tubes ~120 HU) the plain threshold network misses them; with ``intensity.reference`` the scan
    is mapped back onto the fixed fat / blood levels and they are found again."""
    from scipy import ndimage

    from coroseg.data import levels

    img, lab, _ = tube_phantom(shape=(40, 48, 48))
    arr = img.array.astype(np.float32).copy()
    far = ndimage.distance_transform_edt(lab.array == 0) > 4
    arr[far & (np.arange(48) < 24)[None, None, :]] = -100.0  # fat
    arr[4:36, 2:20, 30:46][far[4:36, 2:20, 30:46]] = TUBE_HU  # blood pool
    weak = img.with_array(0.4 * (arr + 100.0) - 100.0)  # fat stays, blood 450 -> 120 HU
    plain = fake_run("unet3d_grid")
    referenced = fake_run("unet3d_grid")
    referenced.config["intensity"]["reference"] = True
    miss = predict_volume(plain, weak)
    hit = predict_volume(referenced, weak)
    tubes = lab.array > 0
    assert (miss.seg.array > 0).sum() < 0.2 * tubes.sum()
    assert dice(hit.seg.array * tubes, tubes) > 0.8
    assert "hu_levels" not in miss.info
    assert abs(hit.info["hu_levels"]["blood"] - 120.0) <= 15 and hit.info["hu_levels"]["gain"] > 2
    assert levels.measure_levels(weak).problem is None

"""No leak of the answer: automatic-centerline predictions never see a case's label or centerline.

``coroseg test --centerline auto`` reads each case's label and centerline to score it, and
``coroseg predict`` may find a mask or a centerline beside the scan (``<id>_seg.nrrd``,
``<id>.vtp``, a dataset's ``Annotations/`` and ``Centerlines/``). Neither may reach the
prediction: replacing those files by another case's (or by valid nonsense) must leave the
saved predictions byte for byte the same, while the metrics change.

The run is a real run folder (config.json + safetensors) whose two MONAI U-Nets (the crop
model and its locator) are set by hand to a smoothed intensity threshold of the CT channel
(:func:`threshold_unet`, the attention channel ignored): deterministic, and its locator finds the
phantom's trees, so the crop model really runs on an automatic centerline (crops > 0). An
ORACLE run on the swapped files shows that a swapped centerline, where it is allowed in, does
change the mask: the comparison can see a leak.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "infer"))

from infer_helpers import make_config, tube_phantom  # noqa: E402

from coroseg.io.centerline import CenterlineGraph  # noqa: E402
from coroseg.io.centerline_files import write_centerline  # noqa: E402
from coroseg.io.volume import write_volume  # noqa: E402

#: outputs of ``predict`` for case ``a`` that must not change (the probability too: any influence shows there)
PREDICT_FILES = ("a_seg.nrrd", "a_prob.nrrd", "a_centerline.vtp", "a_centerline.gml", "a_centerline.mrk.json")


def threshold_unet(net_cfg: dict, *, gain: float = 16.0, threshold: float = 0.45):
    """A MONAI U-Net (2 levels, batch norm, no residual units) whose vessel logit is
    ``gain * (up(prelu(boxmean3(x[:, 0]))) - threshold)``: the first convolution averages the CT
    channel over 3^3 voxels (stride 2), batch norm in eval mode is the identity, the inner block
    outputs 0, and the last transposed convolution upsamples linearly ([0.5, 1, 0.5] per axis).
    Normalised HU: the phantom's tubes 1.75, background -0.3, so the tubes come out."""
    import torch

    from coroseg.models.registry import build_network

    net = build_network(net_cfg)
    state = net.state_dict()
    for key, value in state.items():
        if key.endswith(("conv.weight", "conv.bias")):
            value.zero_()
    state["model.0.conv.weight"][0, 0] = 1.0 / 27.0
    w = torch.tensor([0.5, 1.0, 0.5])
    state["model.2.conv.weight"][0, 1] = gain * w[:, None, None] * w[None, :, None] * w[None, None, :]
    state["model.2.conv.bias"][:] = torch.tensor([0.0, -gain * threshold])
    net.load_state_dict(state)
    return net


@pytest.fixture(scope="module")
def auto_run(tmp_path_factory) -> Path:
    """A ``unet3d_crop`` run folder with a locator, both networks :func:`threshold_unet`."""
    from coroseg.models.registry import model_spec, network_config
    from coroseg.models.run import save_weights

    run = tmp_path_factory.mktemp("leak_run")
    cfg = make_config("unet3d_crop")
    cfg["network"] = network_config(model_spec("unet3d_crop"), channels=(4, 8), num_res_units=0, norm="batch")
    cfg["locator"]["network"] = network_config(model_spec("unet3d_grid"), channels=(4, 8), num_res_units=0,
                                               norm="batch")
    save_weights(threshold_unet(cfg["network"]), run / "model.safetensors")
    save_weights(threshold_unet(cfg["locator"]["network"]), run / "locator.safetensors")
    (run / "config.json").write_text(json.dumps({**cfg, "status": "complete"}))
    return run


@pytest.fixture(scope="module")
def cases() -> dict:
    """``{id: (image, label, centerline)}``: the tube phantom (``a``) and its left-right mirror (``b``),
    on one grid, so each can take the other's label and centerline."""
    image, label, graph = tube_phantom()
    nx = image.shape[2] - 1  # identity direction, 1 mm, origin 0: x mm = column index

    def mirror(vol):
        return vol.with_array(np.ascontiguousarray(vol.array[:, :, ::-1]), is_label=vol.is_label)

    return {"a": (image, label, graph),
            "b": (mirror(image), mirror(label), graph.transformed(lambda p: p * [-1.0, 1.0, 1.0] + [nx, 0.0, 0.0]))}


def nonsense(label) -> tuple:
    """Valid files that say nothing true: an empty mask and a straight centerline across the scan."""
    line = CenterlineGraph.from_polylines([np.linspace([5.0, 35.0, 5.0], [35.0, 5.0, 28.0], 20)], [np.full(20, 1.5)])
    return label.with_array(np.zeros_like(label.array), is_label=True), line


def write_dataset(root: Path, scans: dict, truths: dict) -> Path:
    """Split layout ``root/test/Normal/{CTCA,Annotations,Centerlines}``: ``scans[id]`` is the image,
    ``truths[id]`` the (label, centerline) written as that case's."""
    base = root / "test" / "Normal"
    for cid, image in scans.items():
        label, graph = truths[cid]
        write_volume(image, base / "CTCA" / f"{cid}.nrrd")
        write_volume(label, base / "Annotations" / f"{cid}.nrrd")
        write_centerline(graph, base / "Centerlines" / f"{cid}.vtp")
    return root


def rows(test_dir: Path) -> dict:
    with open(test_dir / "metrics.csv", newline="") as fh:
        return {(r["case_id"], r["centerline"]): r for r in csv.DictReader(fh)}


def test_test_auto_predictions_ignore_the_cases_labels_and_centerlines(auto_run, cases, tmp_path, cli):
    scans = {cid: c[0] for cid, c in cases.items()}
    own = write_dataset(tmp_path / "own", scans, {cid: (c[1], c[2]) for cid, c in cases.items()})
    # a gets b's label and centerline; b an empty label and a straight line
    swapped = write_dataset(tmp_path / "swapped", scans, {"a": cases["b"][1:], "b": nonsense(cases["b"][1])})
    base = ["test", "--model", auto_run, "--device", "cpu"]
    first = cli(base + ["--data", own, "--out", tmp_path / "t1", "--centerline", "auto"])
    assert first.code == 0, first.err
    # ORACLE before auto on every case: nothing of an oracle run may carry over into the next auto run
    second = cli(base + ["--data", swapped, "--out", tmp_path / "t2", "--centerline", "gt", "--centerline", "auto"])
    assert second.code == 0, second.err
    r1, r2 = rows(tmp_path / "t1"), rows(tmp_path / "t2")
    for cid in ("a", "b"):
        assert int(r1[cid, "auto"]["crops"]) > 0  # the crop model ran on the locator's centerline
        assert float(r1[cid, "auto"]["dice"]) > 0.8
        saved = (tmp_path / "t1" / "pred" / f"{cid}_seg.nrrd").read_bytes()
        assert (tmp_path / "t2" / "pred" / f"{cid}_seg.nrrd").read_bytes() == saved, cid
        assert r2[cid, "auto"]["crops"] == r1[cid, "auto"]["crops"]
    # the swap did reach the scoring: a is scored against b's mirror image, b's empty label is flagged
    assert float(r2["a", "auto"]["dice"]) < 0.5 < float(r1["a", "auto"]["dice"])
    assert r2["b", "auto"]["empty_reference"] == "True" and r2["b", "auto"]["dice"] == "nan"
    # and where a centerline is allowed in (ORACLE), the swapped one changes the mask: a leak would show
    for cid in ("a", "b"):
        assert ((tmp_path / "t2" / "pred-oracle" / f"{cid}_seg.nrrd").read_bytes()
                != (tmp_path / "t2" / "pred" / f"{cid}_seg.nrrd").read_bytes()), cid


def _entry(out: Path, cid: str = "a") -> dict:
    """``summary.json``'s entry of ``cid`` without what may differ (the input path, the clock)."""
    entry = next(c for c in json.loads((out / "summary.json").read_text())["cases"] if c["id"] == cid)
    return {k: v for k, v in entry.items() if k not in ("input", "timings_s")}


def test_predict_auto_ignores_labels_and_centerlines_beside_the_scan(auto_run, cases, tmp_path, cli):
    image, label, graph = cases["a"]
    _, other_label, other_graph = cases["b"]
    alone = tmp_path / "alone"
    write_volume(image, alone / "a.nrrd")
    # beside the scan, under the names users give them: its own mask and centerline, or another case's
    beside = {"own": (label, graph), "other": (other_label, other_graph)}
    for name, (lab, g) in beside.items():
        folder = tmp_path / name
        shutil.copytree(alone, folder)
        write_volume(lab, folder / "a_seg.nrrd")
        write_volume(lab, folder / "a.label.nii.gz")
        write_centerline(g, folder / "a.vtp")
        write_centerline(g, folder / "a.mrk.json")
    # a dataset's CTCA folder, Annotations/ and Centerlines/ beside it (the other case's files named a)
    data = write_dataset(tmp_path / "data", {"a": image, "b": cases["b"][0]},
                         {"a": (other_label, other_graph), "b": nonsense(other_label)})
    ctca = data / "test" / "Normal" / "CTCA"
    inputs = {"alone": alone / "a.nrrd", "own": tmp_path / "own" / "a.nrrd", "other": tmp_path / "other" / "a.nrrd",
              "dataset": ctca / "a.nrrd", "dataset-folder": ctca, "folder": tmp_path / "other"}
    for name, scan in inputs.items():
        res = cli(["predict", "--model", auto_run, "-i", scan, "-o", tmp_path / "out" / name, "--centerline", "auto",
                   "--save-prob", "--device", "cpu"])
        assert res.code == 0, (name, res.err)
    ref = tmp_path / "out" / "alone"
    assert _entry(ref)["centerline_source"] == "auto" and _entry(ref)["n_crops"] > 0
    assert _entry(ref)["vessel_volume_mm3"] > 0.8 * label.array.sum()
    for name in inputs:
        out = tmp_path / "out" / name
        for f in PREDICT_FILES:
            assert (out / f).read_bytes() == (ref / f).read_bytes(), (name, f)
        assert _entry(out) == _entry(ref), name

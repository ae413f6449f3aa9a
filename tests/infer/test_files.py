"""infer.files.predict at scale: parts for job arrays and torchrun, one merged summary.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coroseg.errors import CorosegError
from coroseg.infer.files import predict, select_part
from coroseg.io.volume import write_volume


def _scans(folder: Path, phantom, n: int) -> list[str]:
    image, _, _ = phantom
    names = [f"case{i:02d}" for i in range(n)]
    for name in names:
        write_volume(image, folder / f"{name}.nrrd")
    return names


def _summary_ids(out: Path) -> list[str]:
    return [c["id"] for c in json.loads((out / "summary.json").read_text())["cases"]]


def test_parts_cover_the_list_exactly_once_in_any_order():
    paths = [Path(f"/x/s{i}.nrrd") for i in (5, 3, 9, 1, 7, 2, 8)]
    parts = [select_part(paths, 3, k) for k in range(3)]
    assert sorted(p for part in parts for p in part) == sorted(paths)  # all, none twice
    assert [len(p) for p in parts] == [3, 2, 2]
    assert parts == [select_part(list(reversed(paths)), 3, k) for k in range(3)]  # the input order is irrelevant
    assert select_part(paths, 1, 0) == sorted(paths, key=lambda p: p.name)


def test_three_parts_into_one_folder_write_every_scan_once(tmp_path, fake_run, phantom):
    names = _scans(tmp_path / "in", phantom, 5)
    run = fake_run("unet3d_grid")
    got = [[s["id"] for s in predict(run, tmp_path / "in", tmp_path / "out", device="cpu", progress=False,
                                     num_parts=3, part_id=k)] for k in range(3)]
    assert got == [["case00", "case03"], ["case01", "case04"], ["case02"]]
    assert sorted(_summary_ids(tmp_path / "out")) == names  # the parts' summaries merged
    # a re-run of a part with --continue finds its scans complete and segments nothing
    assert predict(run, tmp_path / "in", tmp_path / "out", device="cpu", progress=False, num_parts=3, part_id=1,
                   skip_complete=True) == []
    # more parts than scans: the extra parts have nothing to do
    assert predict(run, tmp_path / "in", tmp_path / "out2", device="cpu", progress=False, num_parts=9,
                   part_id=7) == []


def test_torchrun_environment_picks_the_part(tmp_path, fake_run, phantom, monkeypatch):
    _scans(tmp_path / "in", phantom, 4)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    done = predict(fake_run("unet3d_grid"), tmp_path / "in", tmp_path / "out", device="cpu", progress=False)
    assert [s["id"] for s in done] == ["case01", "case03"]
    with pytest.raises(CorosegError, match="under torchrun each process takes part RANK of WORLD_SIZE"):
        predict(fake_run("unet3d_grid"), tmp_path / "in", tmp_path / "o", device="cpu", num_parts=2, part_id=0)


@pytest.mark.parametrize("parts, message", [((3, None), "--num-parts and --part-id go together"),
                                            ((2, 2), r"--part-id must be from 0 to --num-parts - 1 \(1\), found 2")])
def test_bad_parts_are_refused(tmp_path, fake_run, phantom, parts, message):
    _scans(tmp_path / "in", phantom, 2)
    with pytest.raises(CorosegError, match=message):
        predict(fake_run("unet3d_grid"), tmp_path / "in", tmp_path / "out", device="cpu", num_parts=parts[0],
                part_id=parts[1])
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_torchrun_two_processes_predict_every_scan_once(tmp_path, grid_run, phantom):
    names = _scans(tmp_path / "in", phantom, 5)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "coroseg", "predict", "--model", str(grid_run), "-i", str(tmp_path / "in"),
           "-o", str(tmp_path / "out"), "--device", "cpu"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    ids = _summary_ids(tmp_path / "out")
    assert sorted(ids) == names and len(ids) == len(set(ids))
    assert all((tmp_path / "out" / f"{n}_seg.nrrd").is_file() for n in names)
    assert not list((tmp_path / "out").glob(".*"))  # no staging folder or lock left behind

"""The CLI: help is instant and complete, errors are one line with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from coroseg.io.volume import Volume, write_volume


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coroseg", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_help_lists_commands() -> None:
    out = run_cli("--help")
    assert out.returncode == 0
    assert "info" in out.stdout


def test_info_on_volume(tmp_path: Path) -> None:
    lab = np.zeros((4, 5, 6), np.uint8)
    lab[1:3, 1:3, 1:3] = 1
    p = write_volume(Volume(lab, spacing=(0.625, 0.4, 0.4)), tmp_path / "mask.nrrd")
    out = run_cli("info", str(p))
    assert out.returncode == 0, out.stderr
    assert "6 x 5 x 4" in out.stdout
    assert "0.4 x 0.4 x 0.625" in out.stdout
    assert "label_voxels: 8" in out.stdout


def test_info_bad_file_is_one_line_exit_2(tmp_path: Path) -> None:
    p = tmp_path / "broken.nrrd"
    p.write_text("NRRD0004\ngarbage\n")
    out = run_cli("info", str(p))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken.nrrd" in lines[0]
    assert "Traceback" not in out.stderr


def test_info_real_dicom_series(shared: Path) -> None:
    out = run_cli("info", str(shared / "real-ct" / "dicom-series"))
    assert out.returncode == 0, out.stderr
    assert "512 x 512 x 20" in out.stdout
    assert "0.9766 x 0.9766 x 2.0" in out.stdout


def test_info_real_asoca_mask(shared: Path) -> None:
    out = run_cli("info", str(shared / "asoca-anatomy" / "Annotations" / "Normal_1.nrrd"))
    assert out.returncode == 0, out.stderr
    assert "512 x 512 x 204" in out.stdout
    assert "0.416 x 0.416 x 0.625" in out.stdout
    assert "label_values: 0, 1" in out.stdout


def test_info_on_slicer_markups(tmp_path: Path) -> None:
    """.mrk.json, which predict writes, is described as a centerline (it was refused as a volume)."""
    import networkx as nx

    from coroseg.io.centerline import CenterlineGraph
    from coroseg.io.centerline_files import write_centerline

    g = nx.Graph()
    g.add_node(0, pos=np.array([0.0, 0.0, 0.0]), radius=1.0)
    g.add_node(1, pos=np.array([5.0, 0.0, 0.0]), radius=1.0)
    g.add_edge(0, 1)
    write_centerline(CenterlineGraph(g), tmp_path / "c.mrk.json")
    out = run_cli("info", str(tmp_path / "c.mrk.json"))
    assert out.returncode == 0, out.stderr
    assert "length_mm: 5.0" in out.stdout

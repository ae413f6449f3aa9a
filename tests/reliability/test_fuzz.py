"""Fuzzing the readers: any bytes give a valid object or a :class:`CorosegError`, never a crash or hang.

Inputs are random byte strings and valid files with bytes flipped, cut or inserted; hypothesis
keeps the cases small and the run short (``max_examples`` 60 per reader, 2 s deadline each).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coroseg.errors import CorosegError
from coroseg.io.centerline import CenterlineGraph
from coroseg.io.centerline_files import read_centerline, write_centerline
from coroseg.io.volume import Volume, read_volume, write_volume

SETTINGS = settings(max_examples=60, deadline=2000, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _valid_volume_bytes(ext: str, compress: bool) -> bytes:
    import tempfile
    from pathlib import Path

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        p = write_volume(Volume(rng.integers(-100, 500, (3, 4, 5)).astype(np.int16), (1.0, 0.8, 0.8),
                                (1.0, 2.0, 3.0)), Path(d) / f"v{ext}", compress=compress)
        return p.read_bytes()


def _valid_centerline_bytes(ext: str) -> bytes:
    import tempfile
    from pathlib import Path

    pts = np.array([[0.0, 0.0, 0.0], [1.0, 0.5, 2.0], [2.0, 1.0, 4.0]])
    g = CenterlineGraph.from_polylines([pts, np.array([[1.0, 0.5, 2.0], [3.0, 0.0, 2.5]])],
                                       [np.full(3, 1.0), np.full(2, 0.8)])
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"c{ext}"
        write_centerline(g, p, **({"binary": False} if ext == ".vtp" else {}))
        return p.read_bytes()


def mutated(valid: bytes):
    """Random bytes, or ``valid`` with a few bytes overwritten, a cut, or an insertion."""
    edit = st.tuples(st.integers(0, max(0, len(valid) - 1)), st.binary(min_size=1, max_size=8))
    flips = st.lists(edit, min_size=1, max_size=4).map(
        lambda es: _apply(valid, es))
    cut = st.integers(0, len(valid)).map(lambda n: valid[:n])
    insert = edit.map(lambda e: valid[:e[0]] + e[1] + valid[e[0]:])
    return st.one_of(st.binary(max_size=600), flips, cut, insert)


def _apply(data: bytes, edits) -> bytes:
    b = bytearray(data)
    for pos, new in edits:
        b[pos:pos + len(new)] = new
    return bytes(b)


def _check_volume(path) -> None:
    try:
        vol = read_volume(path)
    except CorosegError:
        return
    assert vol.array.ndim == 3 and min(vol.shape) >= 1
    assert all(s > 0 for s in vol.spacing)


VOLUMES = [(".nrrd", False), (".nrrd", True), (".nii", False), (".nii.gz", True), (".mha", False)]


@pytest.mark.parametrize("ext, compress", VOLUMES, ids=[f"{e}{'-gz' if c else ''}" for e, c in VOLUMES])
def test_read_volume_never_crashes(tmp_path, ext, compress):
    valid = _valid_volume_bytes(ext, compress)

    @SETTINGS
    @given(data=mutated(valid))
    def run(data):
        p = tmp_path / f"f{ext}"
        p.write_bytes(data)
        _check_volume(p)

    run()


@pytest.mark.parametrize("ext", [".vtp", ".gml", ".mrk.json"])
def test_read_centerline_never_crashes(tmp_path, ext):
    valid = _valid_centerline_bytes(ext)

    @SETTINGS
    @given(data=mutated(valid))
    def run(data):
        p = tmp_path / f"f{ext}"
        p.write_bytes(data)
        try:
            g = read_centerline(p)
        except CorosegError:
            return
        assert len(g) > 0 and np.all(np.isfinite(g.positions()))

    run()

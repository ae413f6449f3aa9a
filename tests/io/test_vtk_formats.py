"""What VTK, ParaView and 3D Slicer write: appended ``.vtp`` data (raw / base64, with and without
zlib), the ``SPACE`` field, legacy ``.vtk`` POLYDATA (ASCII / BINARY, file versions 4 and 5), and
folders of ``.mrk.json`` curves. Every file is built here byte by byte with struct, zlib and
base64 (no coroseg writer), and must read back to the exact points and radii."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from coroseg.errors import CorosegError, InputError
from coroseg.io.centerline import CenterlineGraph
from coroseg.io.centerline_files import read_centerline, write_centerline
from coroseg.io.volume import Volume
from coroseg.io.vtk_legacy import read_vtk_polylines
from coroseg.io.vtp import MARKER, read_vtp_data

# two VMTK-style paths ostium -> end point sharing their first three points (written twice)
TRUNK = np.array([[10.0, -20.0, 30.0], [10.5, -20.25, 31.0], [11.0, -20.5, 32.0]])
LEFT = np.array([[12.0, -20.5, 33.0], [13.0, -20.75, 34.5]])
RIGHT = np.array([[10.0, -21.5, 33.0], [9.5, -22.0, 34.0], [9.25, -23.0, 35.0], [9.0, -24.0, 36.0]])
POINTS = np.concatenate([TRUNK, LEFT, TRUNK, RIGHT])  # 12 points, file order
LINES = [np.arange(0, 5), np.arange(5, 12)]
# mm, one per file point; the shared trunk has the same radii in both paths (1/8 steps: exact in float32)
RADIUS = np.array([2.0, 1.875, 1.75, 1.5, 1.25, 2.0, 1.875, 1.75, 1.625, 1.5, 1.375, 1.25])
FLIP = np.array([-1.0, -1.0, 1.0])


def expected_graph(flip: bool = False) -> CenterlineGraph:
    pts = POINTS * FLIP if flip else POINTS
    return CenterlineGraph.from_polylines([pts[ln] for ln in LINES], [RADIUS[ln] for ln in LINES], merge_tol=1e-6)


def assert_graph(g: CenterlineGraph, ref: CenterlineGraph) -> None:
    """Same nodes (positions and radii, exactly), same edges, 1 ostium, 1 branch point, 2 ends."""
    assert len(g) == len(ref) == 9
    assert g.graph.number_of_edges() == ref.graph.number_of_edges() == 8
    assert (len(g.ostia()), len(g.intersections()), len(g.endpoints())) == (1, 1, 2)
    a, b = np.lexsort(g.positions().T), np.lexsort(ref.positions().T)
    np.testing.assert_array_equal(g.positions()[a], ref.positions()[b])
    np.testing.assert_array_equal(g.radii()[a], ref.radii()[b])


# ---- hand-built VTK XML with appended data --------------------------------------------------
def _block(raw: bytes, *, compress: bool, blocksize: int = 40) -> tuple[bytes, bytes]:
    """(header, data) of one array as vtkXMLWriter lays it out, UInt32 header."""
    if not compress:
        return struct.pack("<I", len(raw)), raw
    blocks = [raw[i: i + blocksize] for i in range(0, len(raw), blocksize)]
    comp = [zlib.compress(b) for b in blocks]
    last = len(raw) % blocksize
    return struct.pack(f"<{3 + len(comp)}I", len(comp), blocksize, last, *map(len, comp)), b"".join(comp)


def appended_vtp(*, encoding: str, compress: bool, space: str | None = None, radius_name: str = "Radius",
                 joint_base64: bool = False) -> bytes:
    """A .vtp as Slicer / ParaView write it: every array, the SPACE string too, in <AppendedData>."""
    arrays = [("String", "SPACE", (space + "\0").encode() if space else None, 1),
              ("Float32", radius_name, RADIUS.astype("<f4").tobytes(), 1),
              ("Float64", "Points", POINTS.astype("<f8").tobytes(), 3),
              ("Int64", "connectivity", np.concatenate(LINES).astype("<i8").tobytes(), 1),
              ("Int64", "offsets", np.array([5, 12], "<i8").tobytes(), 1)]
    body, tags = b"", {}
    for vtype, name, raw, ncomp in arrays:
        if raw is None:
            continue
        head, data = _block(raw, compress=compress)
        if encoding == "raw":
            piece = head + data
        elif joint_base64:
            piece = base64.b64encode(head + data)
        else:  # VTK's way: header and data encoded separately
            piece = base64.b64encode(head) + base64.b64encode(data)
        nc = f' NumberOfComponents="{ncomp}"' if ncomp > 1 else ""
        tag = "Array" if vtype == "String" else "DataArray"
        tags[name] = (f'<{tag} type="{vtype}" Name="{name}"{nc} NumberOfTuples="1" format="appended" '
                      f'offset="{len(body)}"/>')
        body += piece
    comp = ' compressor="vtkZLibDataCompressor"' if compress else ""
    field = f"<FieldData>{tags['SPACE']}</FieldData>" if space else ""
    xml = (f'<?xml version="1.0"?>\n<VTKFile type="PolyData" version="1.0" byte_order="LittleEndian" '
           f'header_type="UInt32"{comp}>\n  <PolyData>\n    {field}\n'
           '    <Piece NumberOfPoints="12" NumberOfVerts="0" NumberOfLines="2" NumberOfStrips="0" NumberOfPolys="0">\n'
           f'      <PointData Scalars="{radius_name}">{tags[radius_name]}</PointData>\n'
           f"      <Points>{tags['Points']}</Points>\n"
           f"      <Lines>{tags['connectivity']}{tags['offsets']}</Lines>\n"
           f'    </Piece>\n  </PolyData>\n  <AppendedData encoding="{encoding}">\n   _')
    return xml.encode() + body + b"\n  </AppendedData>\n</VTKFile>\n"


CASES = [("raw", False), ("raw", True), ("base64", False), ("base64", True)]


@pytest.mark.parametrize("encoding, compress", CASES, ids=[f"{e}-{'zlib' if c else 'plain'}" for e, c in CASES])
@pytest.mark.parametrize("space", [None, "LPS", "RAS"])
def test_appended_vtp_reads_back_exactly(tmp_path: Path, encoding: str, compress: bool, space: str | None) -> None:
    path = tmp_path / "cl.vtp"
    path.write_bytes(appended_vtp(encoding=encoding, compress=compress, space=space))
    points, lines, radius, found_space = read_vtp_data(path)
    np.testing.assert_array_equal(points, POINTS)
    assert [ln.tolist() for ln in lines] == [ln.tolist() for ln in LINES]
    np.testing.assert_array_equal(radius, RADIUS)
    assert found_space == space
    assert_graph(read_centerline(path), expected_graph(flip=space == "RAS"))


def test_appended_base64_header_and_data_encoded_together(tmp_path: Path) -> None:
    path = tmp_path / "joint.vtp"
    path.write_bytes(appended_vtp(encoding="base64", compress=False, joint_base64=True,
                                  radius_name="MaximumInscribedSphereRadius"))
    assert_graph(read_centerline(path), expected_graph())


def test_space_field_wins_over_a_reference_that_prefers_another_frame(tmp_path: Path) -> None:
    """Without SPACE, auto picks the frame that puts the points inside the reference; with it, the file decides."""
    ref = Volume(np.zeros((40, 40, 40), np.uint8), origin=(-15.0, 0.0, 20.0))  # holds the RAS reading only
    plain, stated = tmp_path / "plain.vtp", tmp_path / "stated.vtp"
    plain.write_bytes(appended_vtp(encoding="raw", compress=True))
    stated.write_bytes(appended_vtp(encoding="raw", compress=True, space="LPS"))
    assert_graph(read_centerline(plain, reference=ref), expected_graph(flip=True))
    assert_graph(read_centerline(stated, reference=ref), expected_graph())
    assert_graph(read_centerline(stated, reference=ref, coords="ras"), expected_graph(flip=True))  # explicit wins


@pytest.mark.parametrize("coords, space", [("lps", "LPS"), ("ras", "RAS"), ("image", None)])
@pytest.mark.parametrize("binary", [True, False])
def test_written_vtp_states_its_frame(tmp_path: Path, coords: str, space: str | None, binary: bool) -> None:
    ref = Volume(np.zeros((40, 40, 40), np.uint8), spacing=(1.0, 0.5, 0.5), origin=(-15.0, 0.0, 20.0))
    g = expected_graph()
    path = tmp_path / "cl.vtp"
    write_centerline(g, path, coords=coords, reference=ref, binary=binary)
    text = path.read_text()
    assert ('<Array type="String" Name="SPACE"' in text) == (space is not None)
    assert (MARKER in text) == (coords == "lps")  # kept for older coroseg versions
    assert read_vtp_data(path)[3] == space
    if space is not None:  # read back exactly with coords="auto", even with a reference that prefers another frame
        assert_graph(read_centerline(path, reference=ref), g)
        codes = text.split('Name="SPACE"')[1].split(">")[1].split("<")[0].split()
        assert bytes(int(c) for c in codes) == space.encode() + b"\0"  # what Slicer writes: 76 80 83 0


def test_old_files_with_only_the_marker_still_read_as_lps(tmp_path: Path) -> None:
    path = tmp_path / "old.vtp"
    write_centerline(expected_graph(), path, binary=False)
    text = path.read_text()
    start, end = text.index("    <FieldData>"), text.index("</FieldData>\n") + len("</FieldData>\n")
    path.write_text(text[:start] + text[end:])  # as coroseg wrote it before the SPACE field
    ref = Volume(np.zeros((40, 40, 40), np.uint8), origin=(-15.0, 0.0, 20.0))  # would pick RAS
    assert read_vtp_data(path)[3] == "LPS"
    assert_graph(read_centerline(path, reference=ref), expected_graph())


def test_appended_errors_name_the_file_and_the_array(tmp_path: Path) -> None:
    good = appended_vtp(encoding="raw", compress=True, space="RAS")
    (tmp_path / "cut.vtp").write_bytes(good[: len(good) - 80])
    with pytest.raises(InputError, match=r"cut\.vtp: DataArray '\w+': corrupt or truncated binary data"):
        read_centerline(tmp_path / "cut.vtp")
    (tmp_path / "space.vtp").write_bytes(appended_vtp(encoding="raw", compress=False, space="XYZ"))
    with pytest.raises(InputError, match=r"space\.vtp: FieldData SPACE is 'XYZ'; expected LPS or RAS"):
        read_centerline(tmp_path / "space.vtp")
    bad = good.replace(b'encoding="raw"', b'encoding="hex"')
    (tmp_path / "enc.vtp").write_bytes(bad)
    with pytest.raises(InputError, match=r"enc\.vtp: <AppendedData encoding='hex'> is not supported"):
        read_centerline(tmp_path / "enc.vtp")
    (tmp_path / "off.vtp").write_bytes(good.replace(b'offset="0"', b'offset="x"', 1))
    with pytest.raises(InputError, match=r"off\.vtp: DataArray 'SPACE': offset='x' is not a whole number"):
        read_centerline(tmp_path / "off.vtp")


# ---- legacy .vtk ------------------------------------------------------------------------------
def legacy_ascii(title: str = "3D Slicer output. SPACE=RAS") -> str:
    pts = "\n".join(" ".join(repr(float(v)) for v in p) for p in POINTS)
    cells = "\n".join(f"{len(ln)} " + " ".join(str(i) for i in ln) for ln in LINES)
    size = sum(len(ln) + 1 for ln in LINES)
    normals = "\n".join("0 0 1" for _ in POINTS)
    return (f"# vtk DataFile Version 4.2\n{title}\nASCII\nDATASET POLYDATA\n"
            f"POINTS 12 double\n{pts}\n"
            f"LINES 2 {size}\n{cells}\n\n"
            "POINT_DATA 12\n"
            f"NORMALS Normals float\n{normals}\n"
            "SCALARS MaximumInscribedSphereRadius double 1\nLOOKUP_TABLE default\n"
            + " ".join(repr(float(r)) for r in RADIUS) + "\n"
            "FIELD FieldData 1\nEdgeArray 2 12 int\n" + " ".join("0 1" for _ in POINTS) + "\n"
            "CELL_DATA 2\nSCALARS CellId int 1\nLOOKUP_TABLE default\n0 1\n")


def legacy_binary_v5() -> bytes:
    """What VTK >= 9 writes: file version 5.1, OFFSETS + CONNECTIVITY, METADATA blocks, big-endian."""
    offsets = np.array([0, 5, 12], ">i8").tobytes()
    conn = np.concatenate(LINES).astype(">i8").tobytes()
    return (b"# vtk DataFile Version 5.1\nvtk output\nBINARY\nDATASET POLYDATA\n"
            b"POINTS 12 float\n" + POINTS.astype(">f4").tobytes() + b"\n"
            b"METADATA\nINFORMATION 2\nNAME L2_NORM_RANGE LOCATION vtkDataArray\nDATA 2 37.4 47.1\n"
            b"NAME L2_NORM_FINITE_RANGE LOCATION vtkDataArray\nDATA 2 37.4 47.1\n\n"
            b"LINES 3 12\nOFFSETS vtktypeint64\n" + offsets + b"\nCONNECTIVITY vtktypeint64\n" + conn + b"\n"
            b"POINT_DATA 12\nFIELD FieldData 2\n"
            b"Other 3 12 float\n" + np.zeros(36, ">f4").tobytes() + b"\n"
            b"Radius 1 12 double\n" + RADIUS.astype(">f8").tobytes() + b"\n")


def legacy_binary_v4() -> bytes:
    """Version 4 cells: ``[k, id_1 .. id_k]`` as big-endian int32; radius as SCALARS."""
    cells = np.concatenate([[len(ln), *ln] for ln in LINES]).astype(">i4").tobytes()
    return (b"# vtk DataFile Version 4.2\n3D Slicer output. SPACE=LPS\nBINARY\nDATASET POLYDATA\n"
            b"POINTS 12 double\n" + POINTS.astype(">f8").tobytes() + b"\n"
            b"LINES 2 14\n" + cells + b"\n"
            b"POINT_DATA 12\nSCALARS Radius float\nLOOKUP_TABLE default\n" + RADIUS.astype(">f4").tobytes() + b"\n")


def test_legacy_ascii_with_slicer_space(tmp_path: Path) -> None:
    path = tmp_path / "cl.vtk"
    path.write_text(legacy_ascii())
    points, lines, radius, space = read_vtk_polylines(path)
    np.testing.assert_array_equal(points, POINTS)  # text keeps float64 precision
    assert [ln.tolist() for ln in lines] == [ln.tolist() for ln in LINES]
    np.testing.assert_array_equal(radius, RADIUS)
    assert space == "RAS"
    assert_graph(read_centerline(path), expected_graph(flip=True))


def test_legacy_ascii_without_space_is_resolved_like_vtp(tmp_path: Path) -> None:
    path = tmp_path / "cl.vtk"
    path.write_text(legacy_ascii(title="vmtk output"))
    assert_graph(read_centerline(path), expected_graph())  # no reference: LPS
    ref = Volume(np.zeros((40, 40, 40), np.uint8), origin=(-15.0, 0.0, 20.0))
    assert_graph(read_centerline(path, reference=ref), expected_graph(flip=True))


@pytest.mark.parametrize("maker, space", [(legacy_binary_v5, None), (legacy_binary_v4, "LPS")], ids=["v5", "v4"])
def test_legacy_binary(tmp_path: Path, maker, space) -> None:
    path = tmp_path / "cl.vtk"
    path.write_bytes(maker())
    points, lines, radius, found = read_vtk_polylines(path)
    np.testing.assert_array_equal(points, POINTS)  # the values are exact in float32
    assert [ln.tolist() for ln in lines] == [ln.tolist() for ln in LINES]
    np.testing.assert_array_equal(radius, RADIUS)
    assert found == space
    assert_graph(read_centerline(path), expected_graph())


@pytest.mark.parametrize("edit, problem", [
    (lambda b: b[:150], r"POINTS: 36 values do not fit in the rest of the file"),
    (lambda b: b.replace(b"DATASET POLYDATA", b"DATASET STRUCTURED_POINTS"), r"expected DATASET POLYDATA"),
    (lambda b: b.replace(b"LINES 3 12", b"LINES 3 13"), r"LINES offsets are inconsistent with 13 connectivity"),
    (lambda b: b.replace(b"BINARY", b"BINARY!"), r"expected ASCII or BINARY on line 3"),
    (lambda b: b"hello\n" + b, r"not a legacy VTK file"),
], ids=["truncated", "not_polydata", "bad_count", "bad_mode", "not_vtk"])
def test_legacy_errors_name_the_file(tmp_path: Path, edit, problem: str) -> None:
    path = tmp_path / "bad.vtk"
    path.write_bytes(edit(legacy_binary_v5()))
    with pytest.raises(InputError, match=r"bad\.vtk: (" + problem + ")"):
        read_centerline(path)


def test_legacy_index_out_of_range(tmp_path: Path) -> None:
    text = legacy_ascii().replace("5 6 7 8 9 10 11", "5 6 7 8 9 10 99")
    (tmp_path / "idx.vtk").write_text(text)
    with pytest.raises(InputError, match=r"idx\.vtk: LINES refer to point 99; file has 12 points"):
        read_centerline(tmp_path / "idx.vtk")


def test_vtk_is_not_a_written_format(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cl\.vtk: unsupported centerline file type \.vtk; expected one of "
                                         r"\.vtp, \.gml, \.mrk\.json"):
        write_centerline(expected_graph(), tmp_path / "cl.vtk")


# ---- a folder of .mrk.json curves -------------------------------------------------------------
def _curve_file(path: Path, points: np.ndarray, radii: list | None, system: str = "LPS") -> None:
    """One curve per file, the way Slicer saves a markups curve node."""
    meas = [] if radii is None else [{"name": "Radius", "enabled": False, "units": "mm",
                                      "controlPointValues": radii}]
    doc = {"@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
                      "Resources/Schema/markups-schema-v1.0.3.json#",
           "markups": [{"type": "Curve", "coordinateSystem": system, "coordinateUnits": "mm",
                        "controlPoints": [{"id": str(i + 1), "position": list(map(float, p))}
                                          for i, p in enumerate(points)],
                        "measurements": meas}]}
    path.write_text(json.dumps(doc))


def test_folder_of_curves_is_one_centerline(tmp_path: Path) -> None:
    folder = tmp_path / "curves"
    folder.mkdir()
    trunk = np.concatenate([TRUNK, LEFT])  # curve 1: ostium -> left end
    branch = np.concatenate([TRUNK[-1:], RIGHT])  # curve 2 starts where the branch leaves the trunk
    _curve_file(folder / "Centerline curve (0).mrk.json", trunk, RADIUS[:5].tolist())
    _curve_file(folder / "Centerline curve (1).mrk.json", branch * FLIP, [1.75, *RADIUS[8:].tolist()], system="RAS")
    (folder / "notes.txt").write_text("not a curve")
    g = read_centerline(folder)
    assert_graph(g, expected_graph())
    from coroseg.info import describe

    info = describe(folder)
    assert (info["kind"], info["format"], info["nodes"], info["branches"]) == \
        ("centerline", "folder of 3D Slicer curves", 9, 3)


def test_folder_without_curves(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: folder holds no \.mrk\.json files"):
        read_centerline(tmp_path / "empty")
    pts = tmp_path / "points"
    pts.mkdir()
    (pts / "F.mrk.json").write_text(json.dumps({"markups": [{"type": "Fiducial", "controlPoints": []}]}))
    with pytest.raises(InputError, match=r"points: none of the 1 \.mrk\.json files holds a curve"):
        read_centerline(pts)
    (pts / "G.mrk.json").write_text("{")
    with pytest.raises(InputError, match=r"G\.mrk\.json: not valid JSON"):  # a broken file names itself
        read_centerline(pts)


# ---- the new readers never crash on damaged bytes ----------------------------------------------
@pytest.mark.parametrize("make, name", [
    (lambda: appended_vtp(encoding="raw", compress=True, space="LPS"), "f.vtp"),
    (lambda: appended_vtp(encoding="base64", compress=True, space="RAS"), "f.vtp"),
    (legacy_binary_v5, "f.vtk"),
    (lambda: legacy_ascii().encode(), "f.vtk"),
], ids=["raw-zlib", "base64-zlib", "legacy-binary", "legacy-ascii"])
def test_damaged_files_give_an_input_error_or_a_graph(tmp_path: Path, make, name: str) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    valid = make()
    edit = st.tuples(st.integers(0, len(valid) - 1), st.binary(min_size=1, max_size=6))

    @settings(max_examples=40, deadline=2000, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.one_of(st.integers(0, len(valid)).map(lambda n: valid[:n]),
                          st.lists(edit, min_size=1, max_size=3).map(lambda es: _apply(valid, es))))
    def run(data: bytes) -> None:
        path = tmp_path / name
        path.write_bytes(data)
        try:
            g = read_centerline(path)
        except CorosegError:
            return
        assert len(g) > 0 and np.all(np.isfinite(g.positions()))

    run()


def _apply(data: bytes, edits) -> bytes:
    b = bytearray(data)
    for pos, new in edits:
        b[pos: pos + len(new)] = new
    return bytes(b)

"""Centerline files: round trips (.vtp ascii/binary, .gml, .mrk.json), the ASOCA files, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from coroseg.errors import InputError
from coroseg.io.centerline import CenterlineGraph
from coroseg.io.centerline_files import (
    centerline_outside,
    check_centerline_in_image,
    mask_hit_rate,
    read_centerline,
    write_centerline,
)
from coroseg.io.volume import Volume, read_volume
from coroseg.io.vtp import choose_convention, from_lps, polylines_to_vtp_text, read_vtp, read_vtp_polylines, to_lps

SHARED = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()
ASOCA = SHARED / "asoca-anatomy"
needs_asoca = pytest.mark.skipif(not ASOCA.exists(), reason="../shared/data/asoca-anatomy is absent")
OBLIQUE = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def y_tree_polylines() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Left tree: trunk (0,0,0)->(0,0,10) in 1 mm steps, then two 5-step branches (a Y).
    Right tree: a straight 4-point line. 11 + 5 + 5 + 4 = 25 nodes, 2 ostia, 3 end points."""
    trunk = np.stack([np.zeros(11), np.zeros(11), np.arange(11.0)], axis=1)
    s = np.arange(1, 6)[:, None]
    a = trunk[-1] + s * np.array([1.0, 0.0, 1.0])
    b = trunk[-1] + s * np.array([-1.0, 0.5, 1.0])
    right = np.array([[30.0, 5.0, 0.0], [30.0, 6.0, 0.5], [30.0, 7.0, 1.0], [30.0, 8.25, 1.5]])
    lines = [np.concatenate([trunk, a]), np.concatenate([trunk, b]), right]
    radii = [np.linspace(2.0, 1.0, len(ln)) for ln in lines]
    radii[1][:11] = radii[0][:11]  # shared points share their radius
    return lines, radii


@pytest.fixture
def y_tree() -> CenterlineGraph:
    lines, radii = y_tree_polylines()
    return CenterlineGraph.from_polylines(lines, radii)


def _assert_same_tree(back: CenterlineGraph, ref: CenterlineGraph, atol: float = 1e-9) -> None:
    assert len(back) == len(ref)
    assert back.graph.number_of_edges() == ref.graph.number_of_edges()
    for query in ("ostia", "endpoints", "intersections"):
        pa = np.array(sorted(map(tuple, back.positions()[[back.nodes.index(n) for n in getattr(back, query)()]])))
        pb = np.array(sorted(map(tuple, ref.positions()[[ref.nodes.index(n) for n in getattr(ref, query)()]])))
        np.testing.assert_allclose(pa, pb, atol=atol)
    order_b = np.lexsort(back.positions().T)
    order_r = np.lexsort(ref.positions().T)
    np.testing.assert_allclose(back.positions()[order_b], ref.positions()[order_r], atol=atol)
    np.testing.assert_allclose(back.radii()[order_b], ref.radii()[order_r], atol=atol)
    assert back.length_mm() == pytest.approx(ref.length_mm(), abs=1e-6)


def test_y_tree_fixture_known_answer(y_tree: CenterlineGraph) -> None:
    assert len(y_tree) == 25
    assert len(y_tree.ostia()) == 2
    assert len(y_tree.endpoints()) == 3
    assert len(y_tree.intersections()) == 1
    assert y_tree.n_branches() == 4


@pytest.mark.parametrize("name,options", [
    ("tree.vtp", {"binary": True}),
    ("tree.vtp", {"binary": False}),
    ("tree.gml", {}),
    ("tree.mrk.json", {}),
])
def test_round_trip(tmp_path: Path, y_tree: CenterlineGraph, name: str, options: dict) -> None:
    path = tmp_path / name
    write_centerline(y_tree, path, **options)
    back = read_centerline(path)
    _assert_same_tree(back, y_tree)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temporary file


def test_vtp_written_polylines_run_ostium_to_end(tmp_path: Path, y_tree: CenterlineGraph) -> None:
    write_centerline(y_tree, tmp_path / "t.vtp", binary=False)
    pts, lines, rad = read_vtp_polylines(tmp_path / "t.vtp")
    assert [len(ln) for ln in lines] == [16, 16, 4]
    np.testing.assert_allclose(pts[lines[0][0]], [0, 0, 0])
    np.testing.assert_allclose(sorted(map(tuple, pts[[ln[-1] for ln in lines]])),
                               [(-5, 2.5, 15), (5, 0, 15), (30, 8.25, 1.5)])
    assert rad is not None and rad[lines[0][0]] == pytest.approx(2.0)


@pytest.mark.parametrize("coords", ["ras", "image"])
def test_vtp_other_conventions_round_trip(tmp_path: Path, y_tree: CenterlineGraph, coords: str) -> None:
    ref = Volume(np.zeros((20, 30, 40), np.uint8), spacing=(1.0, 0.5, 1.5), origin=(-20.0, -3.0, -2.0),
                 direction=OBLIQUE)
    write_centerline(y_tree, tmp_path / "t.vtp", coords=coords, reference=ref)
    _assert_same_tree(read_vtp(tmp_path / "t.vtp", coords=coords, reference=ref), y_tree, atol=1e-9)


def test_convention_maps_and_auto_choice() -> None:
    ref = Volume(np.zeros((10, 20, 20), np.uint8), spacing=(2.0, 1.0, 1.0), origin=(-100.0, -80.0, 5.0))
    lps = np.array([[-95.0, -70.0, 9.0], [-90.0, -65.0, 15.0]])
    # image convention: (-o_x, -o_y, o_z) + ijk * spacing
    img = from_lps(lps, "image", ref)
    np.testing.assert_allclose(img, [[105.0, 90.0, 9.0], [110.0, 95.0, 15.0]])
    np.testing.assert_allclose(to_lps(img, "image", ref), lps)
    np.testing.assert_allclose(from_lps(lps, "ras"), lps * [-1, -1, 1])
    assert choose_convention(lps, ref) == "lps"
    assert choose_convention(img, ref) == "image"
    assert choose_convention(lps * [-1, -1, 1], ref) == "ras"
    assert choose_convention(img, None) == "lps"


def test_vtp_uint32_header_float32_and_uncompressed_binary(tmp_path: Path) -> None:
    """Hand-made VTK-style arrays: UInt32 header, separately base64'd header, no compressor."""
    import base64
    import struct

    pts = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 2]], dtype="<f4")
    conn = np.arange(3, dtype="<i4")

    def enc(a: np.ndarray) -> str:
        raw = a.tobytes()
        return base64.b64encode(struct.pack("<I", len(raw))).decode() + base64.b64encode(raw).decode()

    text = (
        '<?xml version="1.0"?>\n<VTKFile type="PolyData" version="0.1" byte_order="LittleEndian" '
        'header_type="UInt32">\n<PolyData><Piece NumberOfPoints="3" NumberOfLines="1">\n'
        f'<Points><DataArray type="Float32" NumberOfComponents="3" format="binary">{enc(pts)}</DataArray></Points>\n'
        f'<Lines><DataArray type="Int32" Name="connectivity" format="binary">{enc(conn)}</DataArray>\n'
        f'<DataArray type="Int32" Name="offsets" format="ascii">3</DataArray></Lines>\n'
        '</Piece></PolyData></VTKFile>\n')
    (tmp_path / "u.vtp").write_text(text)
    g = read_centerline(tmp_path / "u.vtp", coords="lps")
    assert len(g) == 3 and len(g.ostia()) == 1 and len(g.endpoints()) == 1
    assert np.isnan(g.radii()).all()
    assert g.length_mm() == pytest.approx(2.0)


# ---- real ASOCA centerlines -----------------------------------------------------------------
@needs_asoca
def test_asoca_normal_1_structure() -> None:
    path = ASOCA / "Centerlines" / "Normal_1.vtp"
    pts, lines, rad = read_vtp_polylines(path)
    assert (len(pts), len(lines)) == (14607, 10)
    assert rad is not None and 0.19 < rad.min() < rad.max() < 2.2
    mask = read_volume(ASOCA / "Annotations" / "Normal_1.nrrd", is_label=True)
    g = read_centerline(path, reference=mask)
    # shared points are bit-identical: 8034 distinct points, two binary trees of 10 paths
    assert (len(g), len(g.ostia()), len(g.endpoints()), len(g.intersections())) == (8034, 2, 10, 8)
    assert centerline_outside(g, mask) == 0.0
    check_centerline_in_image(g, mask, path)
    # without the reference the ASOCA convention cannot be resolved: all points fall outside
    g_lps = read_centerline(path)
    with pytest.raises(InputError, match=r"Normal_1\.vtp: 8034 of 8034 centerline points lie outside the image"):
        check_centerline_in_image(g_lps, mask, path)


@needs_asoca
def test_asoca_hit_rate_all_cases() -> None:
    """>= 95 % of the centerline points of every case lie in the lumen mask or within one voxel."""
    for case in range(1, 13):
        mask = read_volume(ASOCA / "Annotations" / f"Normal_{case}.nrrd", is_label=True)
        g = read_centerline(ASOCA / "Centerlines" / f"Normal_{case}.vtp", reference=mask)
        inside, near = mask_hit_rate(g.positions(), mask)
        assert near >= 0.95, f"Normal_{case}: only {near:.1%} of points within one voxel of the mask"
        assert inside >= 0.95, f"Normal_{case}: only {inside:.1%} of points inside the mask"
        assert len(g.ostia()) == 2


def test_mask_hit_rate_known_answer() -> None:
    m = np.zeros((5, 5, 5), np.uint8)
    m[2, 2, 2] = 1
    vol = Volume(m)
    pts = np.array([[2, 2, 2], [3, 2, 2], [4.2, 2, 2], [50, 50, 50]], float)  # (x, y, z) = (i, j, k)
    assert mask_hit_rate(pts, vol) == (0.25, 0.5)


# ---- errors: each InputError names the file -------------------------------------------------
def _vtp_text(binary: bool = True) -> str:
    lines, radii = y_tree_polylines()
    return polylines_to_vtp_text(lines, radii, binary=binary)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nothere\.vtp: no such file"):
        read_centerline(tmp_path / "nothere.vtp")


def test_unsupported_extension(tmp_path: Path, y_tree: CenterlineGraph) -> None:
    (tmp_path / "cl.txt").write_text("1 2 3\n")
    with pytest.raises(InputError, match=r"cl\.txt: unsupported centerline file type \.txt"):
        read_centerline(tmp_path / "cl.txt")
    with pytest.raises(InputError, match=r"cl\.csv: unsupported"):
        write_centerline(y_tree, tmp_path / "cl.csv")


def test_corrupt_xml(tmp_path: Path) -> None:
    (tmp_path / "bad.vtp").write_text(_vtp_text()[:-40])
    with pytest.raises(InputError, match=r"bad\.vtp: not a valid VTK XML file"):
        read_centerline(tmp_path / "bad.vtp")


def test_not_polydata(tmp_path: Path) -> None:
    (tmp_path / "grid.vtp").write_text('<?xml version="1.0"?><VTKFile type="ImageData"></VTKFile>')
    with pytest.raises(InputError, match=r"grid\.vtp: expected a VTK XML PolyData file"):
        read_centerline(tmp_path / "grid.vtp")


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_base64(tmp_path: Path, cut: float) -> None:
    text = _vtp_text(binary=True)
    # cut the Points array's base64 payload short (keeping the XML valid)
    m = re.search(r'(Name="Points" NumberOfComponents="3" format="binary">\s*)(\S+)', text)
    assert m is not None
    payload = m.group(2)
    short = payload[: int(len(payload) * cut) // 4 * 4]
    (tmp_path / "trunc.vtp").write_text(text[: m.start(2)] + short + text[m.end(2):])
    with pytest.raises(InputError, match=r"trunc\.vtp: DataArray 'Points': corrupt or truncated"):
        read_centerline(tmp_path / "trunc.vtp")


def test_bad_base64_characters(tmp_path: Path) -> None:
    text = _vtp_text(binary=True)
    m = re.search(r'Name="Points" NumberOfComponents="3" format="binary">\s*(\S)', text)
    (tmp_path / "junk.vtp").write_text(text[: m.start(1)] + "!" + text[m.start(1) + 1:])
    with pytest.raises(InputError, match=r"junk\.vtp: DataArray 'Points': corrupt"):
        read_centerline(tmp_path / "junk.vtp")


def test_nan_coordinate_vtp(tmp_path: Path) -> None:
    lines, radii = y_tree_polylines()
    lines[0] = lines[0].copy()
    lines[0][3, 1] = np.nan
    (tmp_path / "nan.vtp").write_text(polylines_to_vtp_text(lines, radii, binary=False))
    with pytest.raises(InputError, match=r"nan\.vtp: point 3 has a NaN or infinite coordinate"):
        read_centerline(tmp_path / "nan.vtp")


def test_vtp_without_lines(tmp_path: Path) -> None:
    text = ('<?xml version="1.0"?><VTKFile type="PolyData"><PolyData><Piece NumberOfPoints="1">'
            '<Points><DataArray type="Float64" NumberOfComponents="3" format="ascii">1 2 3</DataArray>'
            '</Points></Piece></PolyData></VTKFile>')
    (tmp_path / "empty.vtp").write_text(text)
    with pytest.raises(InputError, match=r"empty\.vtp: centerline file holds no polylines"):
        read_centerline(tmp_path / "empty.vtp")


def test_vtp_index_out_of_range(tmp_path: Path) -> None:
    text = _vtp_text(binary=False)
    text = re.sub(r'(Name="connectivity" format="ascii">\s*)0 ', r"\g<1>999 ", text)
    (tmp_path / "idx.vtp").write_text(text)
    with pytest.raises(InputError, match=r"idx\.vtp: Lines connectivity refers to point 999"):
        read_centerline(tmp_path / "idx.vtp")


def test_gml_missing_attribute(tmp_path: Path, y_tree: CenterlineGraph) -> None:
    write_centerline(y_tree, tmp_path / "g.gml")
    text = (tmp_path / "g.gml").read_text()
    text = re.sub(r'\n\s*r "[^"]*"', "", text, count=1)
    (tmp_path / "g.gml").write_text(text)
    with pytest.raises(InputError, match=r"g\.gml: node '0' lacks attribute 'r'"):
        read_centerline(tmp_path / "g.gml")


def test_gml_nan_position_and_bad_topology(tmp_path: Path, y_tree: CenterlineGraph) -> None:
    write_centerline(y_tree, tmp_path / "g.gml")
    text = (tmp_path / "g.gml").read_text()
    (tmp_path / "nan.gml").write_text(re.sub(r'x "[^"]*"', 'x "nan"', text, count=1))
    with pytest.raises(InputError, match=r"nan\.gml: node '0' has a NaN or infinite position"):
        read_centerline(tmp_path / "nan.gml")
    (tmp_path / "topo.gml").write_text(text.replace('topology "OSTIUM"', 'topology "ROOT"', 1))
    with pytest.raises(InputError, match=r"topo\.gml: node '\d+' has topology 'ROOT'"):
        read_centerline(tmp_path / "topo.gml")
    (tmp_path / "junk.gml").write_text("graph [ node [ id 0 ")
    with pytest.raises(InputError, match=r"junk\.gml: not a valid GML graph"):
        read_centerline(tmp_path / "junk.gml")


def test_markups_document_and_errors(tmp_path: Path, y_tree: CenterlineGraph) -> None:
    write_centerline(y_tree, tmp_path / "c.mrk.json")
    doc = json.loads((tmp_path / "c.mrk.json").read_text())
    assert doc["@schema"].endswith("markups-schema-v1.0.3.json")
    assert len(doc["markups"]) == 4  # one curve per branch
    assert {m["coordinateSystem"] for m in doc["markups"]} == {"LPS"}
    assert doc["markups"][0]["controlPoints"][0]["position"] == [0.0, 0.0, 0.0]  # starts at an ostium
    (tmp_path / "bad.mrk.json").write_text("{")
    with pytest.raises(InputError, match=r"bad\.mrk\.json: not valid JSON"):
        read_centerline(tmp_path / "bad.mrk.json")
    (tmp_path / "none.mrk.json").write_text('{"markups": []}')
    with pytest.raises(InputError, match=r"none\.mrk\.json: markups file holds no curves"):
        read_centerline(tmp_path / "none.mrk.json")


def test_check_centerline_in_image(y_tree: CenterlineGraph) -> None:
    ref = Volume(np.zeros((20, 20, 20), np.uint8), spacing=(1.0, 1.0, 1.0), origin=(-10.0, -10.0, -2.0))
    # the right tree (x = 30) lies outside: 4 of 25 points
    assert centerline_outside(y_tree, ref) == pytest.approx(4 / 25)
    with pytest.raises(InputError, match=r"cl\.vtp: 4 of 25 centerline points lie outside the image"):
        check_centerline_in_image(y_tree, ref, "cl.vtp")
    check_centerline_in_image(y_tree, ref, "cl.vtp", max_outside=0.2)


def test_gml_frame_from_its_attribute_else_from_the_reference(tmp_path: Path, y_tree: CenterlineGraph) -> None:
    """coroseg's GML says ``coordinates "LPS"``; HCATNetwork's says nothing (the prior work's graphs keep
    the ASOCA ``.vtp`` frame), so without the attribute the frame is resolved as for ``.vtp``."""
    ref = Volume(np.zeros((30, 40, 60), np.uint8), spacing=(1.0, 0.5, 1.0), origin=(-20.0, -6.0, -5.0))
    write_centerline(y_tree, tmp_path / "lps.gml")
    _assert_same_tree(read_centerline(tmp_path / "lps.gml", reference=ref), y_tree)
    image = y_tree.transformed(lambda p: from_lps(p, "image", ref))
    write_centerline(image, tmp_path / "img.gml")
    text = (tmp_path / "img.gml").read_text().replace('  coordinates "LPS"\n', "")
    (tmp_path / "img.gml").write_text(text)
    assert choose_convention(image.positions(), ref) == "image"
    _assert_same_tree(read_centerline(tmp_path / "img.gml", reference=ref), y_tree, atol=1e-9)
    _assert_same_tree(read_centerline(tmp_path / "img.gml", reference=ref, coords="image"), y_tree, atol=1e-9)
    _assert_same_tree(read_centerline(tmp_path / "img.gml"), image)  # no reference: as stored (LPS)

"""3D Slicer files coroseg writes: ``.mrk.json`` curves valid against Slicer's markups schema, and
``.seg.nrrd`` segmentations with Slicer's segment metadata on the input's exact grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from coroseg.errors import CorosegError
from coroseg.io.centerline import CenterlineGraph
from coroseg.io.centerline_files import read_centerline, write_centerline
from coroseg.io.slicer import UNKNOWN_RADIUS, curves_document
from coroseg.io.slicer_seg import CORONARY_ARTERIES, read_segment_metadata, segment_extent
from coroseg.io.volume import Volume, read_volume, strip_extension, volume_extension, write_volume

SCHEMA = json.loads((Path(__file__).parent / "fixtures" / "markups-schema-v1.0.3-subset.json").read_text())
OBLIQUE = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


# ---- a minimal JSON-schema check (jsonschema is not a dependency) -----------------------------
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v),
    "null": lambda v: v is None,
}


def schema_errors(value, schema: dict, where: str = "$") -> list[str]:
    """Violations of the keywords the fixture uses: type, enum, required, properties, items,
    minItems, maxItems, anyOf (draft-07 meanings; JSON has no NaN, so a number is finite)."""
    errors: list[str] = []
    if "type" in schema and not _TYPES[schema["type"]](value):
        return [f"{where}: expected {schema['type']}, found {json.dumps(value)[:40]}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if "anyOf" in schema and all(schema_errors(value, s, where) for s in schema["anyOf"]):
        errors.append(f"{where}: matches none of anyOf")
    if isinstance(value, dict):
        errors += [f"{where}: lacks required key {k!r}" for k in schema.get("required", []) if k not in value]
        for k, sub in schema.get("properties", {}).items():
            if k in value:
                errors += schema_errors(value[k], sub, f"{where}.{k}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            errors.append(f"{where}: {len(value)} items, expected {schema.get('minItems')}..{schema.get('maxItems')}")
        if "items" in schema:
            for i, item in enumerate(value):
                errors += schema_errors(item, schema["items"], f"{where}[{i}]")
    return errors


def test_the_schema_check_catches_what_slicer_refuses() -> None:
    """Known answers: the null radii coroseg used to write, a 2-number position, a wrong frame."""
    good = {"@schema": "x", "markups": [{"type": "Curve", "coordinateSystem": "LPS",
                                        "controlPoints": [{"position": [1.0, 2, 3.5]}],
                                        "measurements": [{"name": "Radius", "controlPointValues": [1.5]}]}]}
    assert schema_errors(good, SCHEMA) == []
    bad = json.loads(json.dumps(good))
    bad["markups"][0]["measurements"][0]["controlPointValues"] = [1.5, None]
    bad["markups"][0]["controlPoints"][0]["position"] = [1.0, 2.0]
    bad["markups"][0]["coordinateSystem"] = "IJK"
    assert sorted(schema_errors(bad, SCHEMA)) == [
        "$.markups[0].controlPoints[0].position: 2 items, expected 3..3",
        "$.markups[0].coordinateSystem: 'IJK' is not one of ['LPS', 'RAS']",
        "$.markups[0].measurements[0].controlPointValues[1]: expected number, found null",
    ]
    assert schema_errors({"markups": []}, SCHEMA) == ["$: lacks required key '@schema'"]


def _tree_with_unknown_radii() -> CenterlineGraph:
    """A Y tree whose radii are known except at two points, and a second tree with no radius at all."""
    trunk = np.stack([np.zeros(6), np.zeros(6), np.arange(6.0)], axis=1)
    a = trunk[-1] + np.arange(1, 4)[:, None] * np.array([1.0, 0.0, 1.0])
    b = trunk[-1] + np.arange(1, 4)[:, None] * np.array([-1.0, 0.0, 1.0])
    ra = np.array([2.0, 1.9, np.nan, 1.7, 1.6, 1.5, 1.25, 1.0, 0.75])
    rb = np.concatenate([ra[:6], [1.2, np.nan, 0.7]])
    other = np.array([[40.0, 0.0, 0.0], [41.0, 0.0, 0.0], [42.0, 0.0, 0.0]])
    return CenterlineGraph.from_polylines([np.concatenate([trunk, a]), np.concatenate([trunk, b]), other],
                                          [ra, rb, np.full(3, np.nan)])


def test_markups_written_are_valid_against_slicers_schema(tmp_path: Path) -> None:
    g = _tree_with_unknown_radii()
    path = tmp_path / "c.mrk.json"
    write_centerline(g, path)
    doc = json.loads(path.read_text())
    assert schema_errors(doc, SCHEMA) == []
    assert "null" not in path.read_text() and "NaN" not in path.read_text()
    curves = {m["name"]: m for m in doc["markups"]}
    assert len(curves) == 4  # trunk, two branches, the other tree
    trunk = curves["c-0"]["measurements"][0]["controlPointValues"]
    assert trunk == [2.0, 1.9, UNKNOWN_RADIUS, 1.7, 1.6, 1.5]  # the unknown radius is 0.0, the rest as is
    no_radius = [m for m in doc["markups"] if m["controlPoints"][0]["position"][0] == 40.0]
    assert no_radius[0]["measurements"] == []  # nothing known: no Radius measurement at all


def test_markups_round_trip_keeps_unknown_radii_unknown(tmp_path: Path) -> None:
    g = _tree_with_unknown_radii()
    write_centerline(g, tmp_path / "c.mrk.json")
    back = read_centerline(tmp_path / "c.mrk.json")
    order_b, order_g = np.lexsort(back.positions().T), np.lexsort(g.positions().T)
    np.testing.assert_array_equal(back.positions()[order_b], g.positions()[order_g])
    np.testing.assert_array_equal(back.radii()[order_b], g.radii()[order_g])  # NaN where NaN, exact elsewhere
    assert int(np.isnan(back.radii()).sum()) == 2 + 3


def test_markups_null_radii_of_earlier_versions_still_read(tmp_path: Path) -> None:
    doc = curves_document(CenterlineGraph.from_polylines([np.eye(3)], [np.array([1.0, 2.0, 3.0])]))
    doc["markups"][0]["measurements"][0]["controlPointValues"] = [1.0, None, 3.0]
    (tmp_path / "old.mrk.json").write_text(json.dumps(doc))
    r = read_centerline(tmp_path / "old.mrk.json").radii()
    assert sorted(r[np.isfinite(r)]) == [1.0, 3.0] and int(np.isnan(r).sum()) == 1


# ---- .seg.nrrd ---------------------------------------------------------------------------------
def _mask() -> Volume:
    arr = np.zeros((6, 7, 8), np.uint8)
    arr[2:4, 1:5, 0:3] = 1  # k 2..3, j 1..4, i 0..2
    arr[5, 6, 7] = 1  # one voxel in the far corner widens the box to the whole grid's end
    return Volume(arr, spacing=(1.25, 0.375, 0.4), origin=(-101.3, 12.7, -250.125), direction=OBLIQUE,
                  is_label=True)


def test_segment_extent_known_answer() -> None:
    arr = np.zeros((6, 7, 8), np.uint8)
    arr[2:4, 1:5, 0:3] = 1
    assert segment_extent(arr, 1) == (0, 2, 1, 4, 2, 3)  # (i0, i1, j0, j1, k0, k1)
    assert segment_extent(arr, 2) == (0, -1, 0, -1, 0, -1)  # absent: VTK's empty extent


def test_seg_nrrd_has_slicers_metadata_and_the_exact_geometry(tmp_path: Path) -> None:
    mask = _mask()
    path = write_volume(mask, tmp_path / "case_7_seg.seg.nrrd")
    img = sitk.ReadImage(str(path))
    meta = {k: img.GetMetaData(k) for k in img.GetMetaDataKeys()}
    assert meta["Segment0_ID"] == "Segment_1"
    assert meta["Segment0_Name"] == "Coronary arteries"
    assert meta["Segment0_LabelValue"] == "1" and meta["Segment0_Layer"] == "0"
    assert meta["Segment0_Color"] == "0.847059 0.396078 0.309804"
    assert meta["Segment0_Extent"] == "0 7 1 6 2 5"
    assert meta["Segment0_Tags"] == (
        "TerminologyEntry:Segmentation category and type - DICOM master list~SCT^123037004^Anatomical Structure"
        "~SCT^41801008^Coronary artery~^^~Anatomic codes - DICOM master list~^^~^^|")
    assert meta["Segmentation_MasterRepresentation"] == "Binary labelmap"
    assert meta["Segmentation_ContainedRepresentationNames"] == "Binary labelmap|"
    assert meta["Segmentation_ReferenceImageExtentOffset"] == "0 0 0"
    # geometry exactly the input's (ITK order), voxels exactly the mask
    assert img.GetSize() == (8, 7, 6)
    assert img.GetSpacing() == (0.4, 0.375, 1.25)
    assert img.GetOrigin() == (-101.3, 12.7, -250.125)
    np.testing.assert_array_equal(np.array(img.GetDirection()).reshape(3, 3), OBLIQUE)
    assert img.GetPixelIDTypeAsString() == "8-bit unsigned integer"
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), mask.array)
    # a plain NRRD on disk: Slicer's header lines, readable by any NRRD reader
    head = path.read_bytes()[:4000].split(b"\n\n")[0].decode("ascii").splitlines()
    assert head[0] == "NRRD0004" and "space: left-posterior-superior" in head
    assert "Segment0_Name:=Coronary arteries" in head
    assert read_segment_metadata(path)[0]["Name"] == "Coronary arteries"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # written atomically


def test_seg_nrrd_reads_back_as_a_mask_named_by_its_case(tmp_path: Path) -> None:
    mask = _mask()
    path = write_volume(mask, tmp_path / "case_7.seg.nrrd")
    assert volume_extension(path) == ".seg.nrrd"
    assert strip_extension(path) == "case_7"
    assert strip_extension("case_7_seg.seg.nrrd") == "case_7_seg" and strip_extension("x.nrrd") == "x"
    back = read_volume(path, is_label=True)
    np.testing.assert_array_equal(back.array, mask.array)
    assert back.spacing == mask.spacing and back.origin == mask.origin
    np.testing.assert_array_equal(back.direction, mask.direction)


def test_seg_nrrd_refuses_what_is_not_its_segment(tmp_path: Path) -> None:
    mask = _mask()
    two = mask.with_array(mask.array * 2)
    with pytest.raises(CorosegError, match=r"x\.seg\.nrrd: label value 2 is no segment's; a \.seg\.nrrd written "
                                           r"here holds 0, 1"):
        write_volume(two, tmp_path / "x.seg.nrrd")
    prob = mask.with_array(mask.array * 0.5, is_label=False)
    with pytest.raises(CorosegError, match=r"p\.seg\.nrrd: a \.seg\.nrrd holds label values; found non-integer"):
        write_volume(prob, tmp_path / "p.seg.nrrd")
    assert not list(tmp_path.iterdir())
    assert CORONARY_ARTERIES.label_value == 1

"""``coroseg info``: describe a volume, a centerline file or a dataset folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coroseg.io.volume import Volume, check_regular_file, read_volume, volume_extension


def orientation_code(vol: Volume) -> str:
    """Three-letter ITK/DICOM orientation of the index axes i, j, k (e.g. ``LPS``, ``RAS``)."""
    import SimpleITK as sitk

    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(
        tuple(float(d) for d in vol.direction.ravel()))


def describe_volume(vol: Volume) -> dict:
    """Size, spacing, orientation and value statistics of a volume."""
    arr = vol.array
    out = {
        "kind": "volume",
        "size_xyz": list(vol.shape[::-1]),
        "spacing_xyz_mm": [round(s, 4) for s in vol.spacing[::-1]],
        "origin_lps_mm": [round(o, 3) for o in vol.origin],
        "orientation": orientation_code(vol),
        "dtype": str(arr.dtype),
        "min": float(arr.min()),
        "max": float(arr.max()),
        "mean": float(arr.mean()),
    }
    uniq = np.unique(arr) if arr.dtype.kind in "iub" and arr.max() - arr.min() <= 255 else None
    if uniq is not None and len(uniq) <= 8:
        out["label_values"] = [int(u) for u in uniq]
        fg = int(np.count_nonzero(arr))
        out["label_voxels"] = fg
        out["label_volume_mm3"] = round(fg * float(np.prod(vol.spacing)), 1)
    return out


def describe_centerline(path: Path) -> dict:
    from coroseg.io.centerline_files import read_centerline

    g = read_centerline(path)
    r = g.radii()
    return {
        "kind": "centerline",
        "nodes": len(g),
        "ostia": len(g.ostia()),
        "endpoints": len(g.endpoints()),
        "intersections": len(g.intersections()),
        "branches": g.n_branches(),
        "length_mm": round(g.length_mm(), 1),
        "radius_mm": [round(float(np.nanmin(r)), 2), round(float(np.nanmax(r)), 2)] if len(r) else [],
    }


#: what training uses for a case without a centerline file (:func:`coroseg.data.cache.load_centerline`)
FROM_MASK = "extracted from the mask"
NO_CENTERLINE = "none (no label to extract it from)"


def centerline_source(case, root: Path) -> str:
    """Where training takes ``case``'s centerline from: its file (relative to the dataset
    ``root``), :data:`FROM_MASK`, or :data:`NO_CENTERLINE`."""
    if case.centerline is not None:
        try:
            return Path(case.centerline).relative_to(root).as_posix()
        except ValueError:
            return str(case.centerline)
    return FROM_MASK if case.label is not None else NO_CENTERLINE


def _source_kind(case, source: str) -> str:
    """``Centerlines_graphs/*.GML`` for ``.../Centerlines_graphs/n1.GML``; the other sources as they are."""
    if case.centerline is None:
        return source
    p = Path(case.centerline)
    if p.is_dir():
        return f"{p.parent.name}/<id>/*.mrk.json"
    ext = p.name[-len(".mrk.json"):] if p.name.lower().endswith(".mrk.json") else p.suffix
    return f"{p.parent.name}/*{ext}"


def describe_dataset(path: Path) -> dict:
    from coroseg.data.layouts import discover_cases

    layout, cases = discover_cases(path)
    counts: dict[str, int] = {}
    for c in cases:
        key = f"{c.split or 'unsplit'}/{c.group or '-'}"
        counts[key] = counts.get(key, 0) + 1
    sources = {c.case_id: centerline_source(c, path) for c in cases}
    kinds: dict[str, int] = {}
    for c in cases:
        kind = _source_kind(c, sources[c.case_id])
        kinds[kind] = kinds.get(kind, 0) + 1
    out = {
        "kind": "dataset",
        "layout": layout,
        "cases": len(cases),
        "with_label": sum(c.label is not None for c in cases),
        "with_centerline": sum(c.centerline is not None for c in cases),
        "by_split_group": counts,
        "first_cases": [c.case_id for c in cases[:5]],
    }
    values = sorted({c.label_values for c in cases if c.label_values is not None})
    if values:
        out["vessel_labels"] = [int(v) for v in values[0]] if len(values) == 1 else [list(v) for v in values]
    out["centerline_from"] = kinds
    out["case_centerline"] = sources
    return out


def describe(path: str | Path) -> dict:
    """Describe whatever ``path`` is: a volume file, a DICOM folder, a centerline or a dataset."""
    from coroseg.errors import InputError

    path = Path(path)
    if not path.exists():
        raise InputError("no such file or folder", path)
    if not path.is_dir():
        check_regular_file(path)  # a named pipe would block the reader forever
    from coroseg.io.centerline_files import centerline_extension

    if path.is_file() and centerline_extension(path):  # .vtp, .vtk, .gml, .mrk.json
        return describe_centerline(path)
    if path.is_file() or volume_extension(path):
        out = {"path": str(path), **describe_volume(read_volume(path))}
        if path.is_file() and path.name.lower().endswith(".seg.nrrd"):
            from coroseg.io.slicer_seg import read_segment_metadata

            out["segments"] = [f"{m.get('Name', '?')} (label {m.get('LabelValue', '?')})"
                               for m in read_segment_metadata(path)]
        return out
    # a folder: a DICOM series, a folder of Slicer curves, or a dataset
    if _holds_dicom_files(path):  # a DICOM folder's own problems (missing slice, 2 series) win
        return {"path": str(path), "format": "DICOM series", **describe_volume(read_volume(path))}
    from coroseg.io.centerline_files import is_markups_folder

    if is_markups_folder(path):
        return {"path": str(path), "format": "folder of 3D Slicer curves", **describe_centerline(path)}
    try:
        return {"path": str(path), **describe_dataset(path)}
    except InputError as dataset_error:
        try:
            return {"path": str(path), "format": "DICOM series", **describe_volume(read_volume(path))}
        except InputError:
            raise dataset_error from None


def _holds_dicom_files(folder: Path, *, look_at: int = 8) -> bool:
    """True when one of the first ``look_at`` files directly in ``folder`` has the DICOM preamble."""
    files = [p for p in sorted(folder.iterdir()) if p.is_file()][:look_at]
    for p in files:
        try:
            with p.open("rb") as fh:
                fh.seek(128)
                if fh.read(4) == b"DICM":
                    return True
        except OSError:
            continue
    return False


def format_description(info: dict) -> str:
    """Human-readable, one ``key: value`` per line."""
    lines = []
    for k, v in info.items():
        if isinstance(v, list):
            v = " x ".join(str(x) for x in v) if k.startswith(("size", "spacing")) else ", ".join(str(x) for x in v)
        elif isinstance(v, dict):
            one = ", ".join(f"{a}: {b}" for a, b in v.items())
            if len(one) > 100:  # e.g. one line per case: each under the key, indented
                lines.append(f"{k:>16}:")
                lines.extend(f"{'':>18}{a}: {b}" for a, b in v.items())
                continue
            v = one
        lines.append(f"{k:>16}: {v}")
    return "\n".join(lines)

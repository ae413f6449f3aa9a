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


def describe_dataset(path: Path) -> dict:
    from coroseg.data.layouts import discover_cases

    layout, cases = discover_cases(path)
    counts: dict[str, int] = {}
    for c in cases:
        key = f"{c.split or 'unsplit'}/{c.group or '-'}"
        counts[key] = counts.get(key, 0) + 1
    return {
        "kind": "dataset",
        "layout": layout,
        "cases": len(cases),
        "with_label": sum(c.label is not None for c in cases),
        "with_centerline": sum(c.centerline is not None for c in cases),
        "by_split_group": counts,
        "first_cases": [c.case_id for c in cases[:5]],
    }


def describe(path: str | Path) -> dict:
    """Describe whatever ``path`` is: a volume file, a DICOM folder, a centerline or a dataset."""
    from coroseg.errors import InputError

    path = Path(path)
    if not path.exists():
        raise InputError("no such file or folder", path)
    if not path.is_dir():
        check_regular_file(path)  # a named pipe would block the reader forever
    from coroseg.io.centerline_files import centerline_extension

    if path.is_file() and centerline_extension(path):  # .vtp, .gml, .mrk.json
        return describe_centerline(path)
    if path.is_file() or volume_extension(path):
        return {"path": str(path), **describe_volume(read_volume(path))}
    # a folder: a DICOM series, or a dataset
    if _holds_dicom_files(path):  # a DICOM folder's own problems (missing slice, 2 series) win
        return {"path": str(path), "format": "DICOM series", **describe_volume(read_volume(path))}
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
            v = ", ".join(f"{a}: {b}" for a, b in v.items())
        lines.append(f"{k:>16}: {v}")
    return "\n".join(lines)

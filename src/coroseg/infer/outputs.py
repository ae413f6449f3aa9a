"""Writing what ``coroseg predict`` hands back: masks, probabilities, centerlines, mesh, summary.

Every file goes through :func:`coroseg.io.volume.write_volume` or
:func:`coroseg.io.atomic.atomic_path`, so an interrupted run never leaves a half-written file.
Meshes are binary STL in LPS world millimetres (3D Slicer >= 4.11 reads the ``SPACE=LPS``
header comment and places them on the image).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from coroseg.io.atomic import atomic_path
from coroseg.io.centerline import CenterlineGraph
from coroseg.io.dicom_seg import DICOM_SEG, DICOM_SEG_EXTENSION
from coroseg.io.volume import Volume, volume_extension

#: output extension for each input kind (a DICOM folder has none)
DEFAULT_EXTENSION = ".nii.gz"
_EXT_MAP = {".nhdr": ".nrrd", ".mhd": ".mha", ".seg.nrrd": ".nrrd"}
#: ``predict --format``: ``input`` keeps the input's extension; ``seg.nrrd`` writes the mask as a
#: 3D Slicer segmentation (:mod:`coroseg.io.slicer_seg`) and the probability map as ``.nrrd``;
#: ``dicom-seg`` (DICOM series inputs) a DICOM SEG of the series (:mod:`coroseg.io.dicom_seg`),
#: the probability map as ``.nii.gz``
OUTPUT_FORMATS = ("input", "nii.gz", "nii", "nrrd", "mha", "seg.nrrd", DICOM_SEG)


def output_extension(input_path: str | Path) -> str:
    """The extension outputs keep for an input: the input's own, ``.nii.gz`` for DICOM folders.

    Detached-header formats become their single-file equivalents (``.nhdr`` -> ``.nrrd``,
    ``.mhd`` -> ``.mha``) so each output is one file; a ``.seg.nrrd`` input gives ``.nrrd``.
    """
    p = Path(input_path)
    ext = None if p.is_dir() else volume_extension(p)
    if ext is None:
        return DEFAULT_EXTENSION
    return _EXT_MAP.get(ext, ext)


def check_output_format(output_format: str) -> None:
    """Raise :class:`~coroseg.errors.CorosegError` unless ``output_format`` is one of :data:`OUTPUT_FORMATS`."""
    from coroseg.errors import CorosegError

    if output_format not in OUTPUT_FORMATS:
        raise CorosegError(f"--format must be one of {', '.join(OUTPUT_FORMATS)}, not {output_format!r}")


def output_extensions(input_path: str | Path, output_format: str = "input") -> tuple[str, str]:
    """``(mask extension, probability extension)`` for an input and ``predict --format``.

    ``"input"``: both :func:`output_extension`; ``"seg.nrrd"``: the mask ``.seg.nrrd`` (a
    Slicer segmentation), the probability ``.nrrd`` (a probability is no segmentation);
    ``"dicom-seg"``: the mask ``.dcm`` (a DICOM SEG), the probability ``.nii.gz``; any other
    format: both that extension.

    Raises
    ------
    CorosegError
        ``output_format`` is none of :data:`OUTPUT_FORMATS`.
    """
    check_output_format(output_format)
    if output_format == "input":
        ext = output_extension(input_path)
        return ext, ext
    if output_format == "seg.nrrd":
        return ".seg.nrrd", ".nrrd"
    if output_format == DICOM_SEG:
        return DICOM_SEG_EXTENSION, DEFAULT_EXTENSION
    return f".{output_format}", f".{output_format}"


def mesh_from_mask(mask: Volume, *, level: float = 0.5, step_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Triangle surface of a binary mask in LPS world coordinates.

    Parameters
    ----------
    mask : Volume
        ``array`` (Z, Y, X) of {0, 1}.
    level : float
        Iso-level for :func:`skimage.measure.marching_cubes`.
    step_size : int
        Marching-cubes step in voxels (larger = coarser, faster).

    Returns
    -------
    vertices : (V, 3) ndarray of float, LPS mm
    faces : (F, 3) ndarray of int
        Wound so that normals (right-hand rule) point out of the vessel in world space.
        Empty arrays when the mask is empty.
    """
    from skimage.measure import marching_cubes

    arr = np.asarray(mask.array, dtype=np.float32)
    if not (arr > level).any():
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    # pad so surfaces touching the volume border are closed
    padded = np.pad(arr, 1)
    verts, faces, _, _ = marching_cubes(padded, level=level, step_size=step_size, allow_degenerate=False)
    verts = verts - 1.0  # back to the unpadded index frame (k, j, i)
    world = mask.index_to_world(verts)
    # skimage's faces, with the default gradient_direction="descent", enclose a negative volume
    # in index space (checked in the tests: signed volume < 0); an index -> world map with a
    # negative determinant mirrors space and so makes them outward. Reverse the winding when
    # the map preserves orientation, so normals (right-hand rule) always point outward in LPS.
    if np.linalg.det(mask.affine[:3, :3]) > 0:
        faces = faces[:, ::-1]
    return world, faces.astype(np.int64)


def write_stl(path: str | Path, vertices: np.ndarray, faces: np.ndarray, *, header: str = "coroseg SPACE=LPS") -> Path:
    """Write a binary STL (little-endian float32), atomically.

    Parameters
    ----------
    vertices : (V, 3) ndarray, mm
    faces : (F, 3) ndarray of int
    header : str
        At most 80 ASCII characters; ``SPACE=LPS`` tells 3D Slicer the coordinate frame.
    """
    path = Path(path)
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    tri = v[f]  # (F, 3, 3)
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norm = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.divide(normals, norm, out=np.zeros_like(normals), where=norm > 0)
    rec = np.zeros(len(f), dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    rec["n"] = normals
    rec["v"] = tri
    head = header.encode("ascii")[:80].ljust(80, b" ")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(head)
        fh.write(struct.pack("<I", len(f)))
        fh.write(rec.tobytes())
    return path


def read_stl(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a binary STL written by :func:`write_stl`: ``(normals (F, 3), triangles (F, 3, 3))``."""
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<I", data[80:84])
    rec = np.frombuffer(data[84:84 + 50 * n], dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    return rec["n"].astype(float), rec["v"].astype(float)


def write_centerline_files(graph: CenterlineGraph, stem: Path) -> list[Path]:
    """Write ``<stem>.vtp``, ``<stem>.gml`` and ``<stem>.mrk.json`` (Slicer markups curve)."""
    from coroseg.io.centerline_files import write_centerline

    paths = [Path(f"{stem}.vtp"), Path(f"{stem}.gml"), Path(f"{stem}.mrk.json")]
    for p in paths:
        write_centerline(graph, p)
    return paths


def mask_stats(seg: Volume, graph: CenterlineGraph | None) -> dict:
    """Vessel volume (mm^3), tree length (mm), branch/ostium/end-point counts."""
    vox = float(np.prod(seg.spacing))
    out = {"vessel_volume_mm3": float(np.count_nonzero(seg.array)) * vox}
    if graph is None:
        out.update(tree_length_mm=None, n_branches=None, n_ostia=None, n_endpoints=None)
    else:
        out.update(tree_length_mm=graph.length_mm(), n_branches=graph.n_branches(),
                   n_ostia=len(graph.ostia()), n_endpoints=len(graph.endpoints()))
    return out


def geometry_dict(vol: Volume) -> dict:
    """Shape, spacing, origin and direction as plain lists (for summary.json)."""
    return {"shape": list(vol.shape), "spacing": list(vol.spacing), "origin": list(vol.origin),
            "direction": vol.direction.round(8).tolist()}


__all__ = ["output_extension", "output_extensions", "check_output_format", "OUTPUT_FORMATS",
           "mesh_from_mask", "write_stl", "read_stl", "write_centerline_files",
           "mask_stats", "geometry_dict", "DEFAULT_EXTENSION"]

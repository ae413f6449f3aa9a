"""Read and write centerline files by extension, and check them against an image.

=============  ======  =====  ===============================================
extension      read    write  format
=============  ======  =====  ===============================================
``.vtp``       yes     yes    VTK XML PolyData, VMTK polylines (:mod:`.vtp`)
``.vtk``       yes     no     legacy VTK POLYDATA, ASCII or BINARY (:mod:`.vtk_legacy`)
``.gml``       yes     yes    HCATNetwork ``SimpleCenterlineGraph`` (:mod:`.gml`)
``.mrk.json``  yes     yes    3D Slicer markups curves (:mod:`.slicer`)
folder         yes     no     ``.mrk.json`` curve files, one per curve as Slicer saves them
=============  ======  =====  ===============================================

Extensions match in any case (``.GML``). All readers return a
:class:`~coroseg.io.centerline.CenterlineGraph` in LPS mm and raise
:class:`~coroseg.errors.InputError` naming the file for anything a user can fix. All writers
are atomic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coroseg.errors import CorosegError, InputError
from coroseg.io.centerline import CenterlineGraph
from coroseg.io.volume import Volume

#: what :func:`write_centerline` writes
CENTERLINE_EXTENSIONS = (".vtp", ".gml", ".mrk.json")
#: what :func:`read_centerline` reads (and a folder of ``.mrk.json`` files)
READ_EXTENSIONS = (".vtp", ".vtk", ".gml", ".mrk.json")


def centerline_extension(path: str | Path) -> str | None:
    """The readable extension of ``path``, lower case (``.mrk.json`` counts as one), else ``None``."""
    name = Path(path).name.lower()
    return next((e for e in READ_EXTENSIONS if name.endswith(e)), None)


def is_markups_folder(path: str | Path) -> bool:
    """True for a folder holding ``.mrk.json`` files and no volume file (a centerline saved by Slicer)."""
    from coroseg.io.slicer import markups_files
    from coroseg.io.volume import volume_extension

    path = Path(path)
    try:
        if not path.is_dir() or not markups_files(path):
            return False
        return not any(p.is_file() and volume_extension(p) for p in path.iterdir())
    except OSError:
        return False


def read_centerline(path: str | Path, *, reference: Volume | None = None,
                    coords: str = "auto") -> CenterlineGraph:
    """Read a centerline file (``.vtp``, ``.vtk``, ``.gml``, ``.mrk.json``) or a folder of
    ``.mrk.json`` curves, in LPS mm.

    Parameters
    ----------
    path : str or Path
        A file, or a folder of 3D Slicer ``.mrk.json`` files (one curve each, as Slicer saves
        them), read as one centerline (:func:`coroseg.io.slicer.read_markups_folder`).
    reference : Volume, optional
        The image the centerline belongs to. ``.vtp``, ``.vtk`` and ``.gml`` (whose files may
        not state their frame): picks (``coords="auto"``) or applies (``coords="image"``) the
        coordinate convention, see :mod:`coroseg.io.vtp`.
    coords : {"auto", "lps", "ras", "image"}
        ``.vtp``, ``.vtk`` and ``.gml`` only; markups state their frame.

    Raises
    ------
    InputError
        Missing file, unsupported extension, corrupt content, NaN/inf coordinates, empty graph.
    """
    from coroseg.io.vtp import COORDS

    if coords not in COORDS:
        raise CorosegError(f"--coords must be one of {', '.join(COORDS)}, not {coords!r}")
    path = Path(path)
    if path.is_dir():
        from coroseg.io.slicer import read_markups_folder

        return _checked(read_markups_folder(path), path)
    ext = centerline_extension(path)
    if ext is None:
        raise InputError(f"unsupported centerline file type {''.join(path.suffixes) or '(none)'}; "
                         f"expected one of {', '.join(READ_EXTENSIONS)} or a folder of .mrk.json files", path)
    if not path.exists():
        raise InputError("no such file", path)
    if ext == ".vtp":
        from coroseg.io.vtp import read_vtp

        graph = read_vtp(path, coords=coords, reference=reference)
    elif ext == ".vtk":
        from coroseg.io.vtk_legacy import read_vtk

        graph = read_vtk(path, coords=coords, reference=reference)
    elif ext == ".gml":
        from coroseg.io.gml import read_gml

        graph = read_gml(path, coords=coords, reference=reference)
    else:
        from coroseg.io.slicer import read_markups

        graph = read_markups(path)
    return _checked(graph, path)


def _checked(graph: CenterlineGraph, path: Path) -> CenterlineGraph:
    if len(graph) == 0:
        raise InputError("centerline is empty", path)
    pos = graph.positions()
    if not np.all(np.isfinite(pos)):
        raise InputError("centerline has NaN or infinite coordinates", path)
    return graph


def write_centerline(graph: CenterlineGraph, path: str | Path, **options) -> None:
    """Write ``graph`` to ``path``, the format chosen by extension; atomic.

    ``options`` go to the format's writer (``.vtp``: ``binary``, ``coords``, ``reference``).
    """
    path = Path(path)
    ext = centerline_extension(path)
    if ext not in CENTERLINE_EXTENSIONS:
        raise InputError(f"unsupported centerline file type {''.join(path.suffixes) or '(none)'}; "
                         f"expected one of {', '.join(CENTERLINE_EXTENSIONS)}", path)
    if ext == ".vtp":
        from coroseg.io.vtp import write_vtp

        write_vtp(graph, path, **options)
    elif ext == ".gml":
        from coroseg.io.gml import write_gml

        write_gml(graph, path, **options)
    else:
        from coroseg.io.slicer import write_markups

        write_markups(graph, path, **options)


def convert_centerline(src: str | Path, dst: str | Path, *, reference: str | Path | None = None,
                       coords: str = "auto") -> CenterlineGraph:
    """Read ``src`` (any centerline format), write ``dst`` (format by extension, LPS).

    ``reference`` is the image (or mask) the centerline belongs to: only its geometry is used,
    to resolve a ``.vtp`` file's frame and to refuse a centerline that lies outside it
    (:func:`check_centerline_in_image`).
    """
    from coroseg.io.volume import read_volume

    ref = None if reference is None else read_volume(reference)
    graph = read_centerline(src, reference=ref, coords=coords)
    if ref is not None:
        check_centerline_in_image(graph, ref, src)
    write_centerline(graph, dst)
    return graph


def outside_mask(points: np.ndarray, reference: Volume, *, margin_mm: float = 0.0) -> np.ndarray:
    """``(N,)`` bool: points (LPS mm) farther than ``margin_mm`` outside the image box.

    The box runs from the outer faces of the first to the last voxel (centres +- half a voxel).
    """
    idx = reference.world_to_index(np.asarray(points, dtype=float).reshape(-1, 3))
    tol = 0.5 + margin_mm / np.asarray(reference.spacing)
    shape = np.asarray(reference.shape)
    return np.any((idx < -tol) | (idx > shape - 1 + tol), axis=1)


def centerline_outside(graph: CenterlineGraph, reference: Volume, *, margin_mm: float = 2.0) -> float:
    """Fraction (0..1) of the graph's nodes lying more than ``margin_mm`` outside ``reference``."""
    if len(graph) == 0:
        return 0.0
    return float(outside_mask(graph.positions(), reference, margin_mm=margin_mm).mean())


def check_centerline_in_image(graph: CenterlineGraph, reference: Volume, path: str | Path, *,
                              max_outside: float = 0.05, margin_mm: float = 2.0) -> None:
    """Raise :class:`InputError` when more than ``max_outside`` of the points are outside.

    ``path`` names the centerline file in the message, e.g. ``"cl.vtp: 812 of 812 centerline
    points lie outside the image (more than 2 mm beyond its bounds; at most 5 % may) - is the
    centerline in another coordinate convention (LPS/RAS) or for another image?"``.
    """
    out = outside_mask(graph.positions(), reference, margin_mm=margin_mm)
    if len(out) and out.mean() > max_outside:
        raise InputError(
            f"{int(out.sum())} of {len(out)} centerline points lie outside the image (more than "
            f"{margin_mm:g} mm beyond its bounds; at most {100 * max_outside:g} % may) - is the "
            "centerline in another coordinate convention (LPS/RAS) or for another image?", path)


def mask_hit_rate(points: np.ndarray, mask: Volume) -> tuple[float, float]:
    """How well centerline points (LPS mm) agree with a lumen mask.

    Returns
    -------
    inside : float
        Fraction (0..1) of points whose voxel (nearest voxel centre) is foreground.
    near : float
        Fraction whose voxel or one of its 26 neighbours is foreground ("within one voxel").
    Points outside the grid count as misses.
    """
    points = np.asarray(points, dtype=float).reshape(-1, 3)
    if len(points) == 0:
        return 0.0, 0.0
    fg = np.asarray(mask.array) > 0
    idx = np.floor(mask.world_to_index(points) + 0.5).astype(np.int64)
    shape = np.asarray(fg.shape)
    inside = np.zeros(len(points), dtype=bool)
    near = np.zeros(len(points), dtype=bool)
    for dk in (-1, 0, 1):
        for dj in (-1, 0, 1):
            for di in (-1, 0, 1):
                q = idx + (dk, dj, di)
                ok = np.all((q >= 0) & (q < shape), axis=1)
                hit = np.zeros(len(points), dtype=bool)
                hit[ok] = fg[q[ok, 0], q[ok, 1], q[ok, 2]]
                near |= hit
                if dk == dj == di == 0:
                    inside = hit
    return float(inside.mean()), float(near.mean())

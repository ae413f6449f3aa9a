"""3D Slicer markups curves (``.mrk.json``) for centerlines.

One open curve (``"type": "Curve"``) per branch of the tree (:meth:`CenterlineGraph.branches`),
oriented away from the ostium, control points in LPS mm (``"coordinateSystem": "LPS"``), the
radius of each point stored as a ``Radius`` measurement with ``controlPointValues`` (as the
SlicerVMTK extension does). Drag the file into Slicer to overlay the centerline on the image.
Schema: https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/markups-schema-v1.0.3.json

Unknown radii. The schema wants numbers in ``controlPointValues`` (``null`` is invalid), so a
point whose radius is unknown (NaN) is written as :data:`UNKNOWN_RADIUS` = ``0.0``, never a
real vessel radius; a curve with no known radius at all gets no ``Radius`` measurement. The
reader turns a radius <= 0 (and the ``null`` earlier coroseg versions wrote) back into NaN.

Slicer saves each curve in its own file: :func:`read_markups_folder` reads a folder of
``.mrk.json`` files as one centerline (curves of different files that share end points join).
"""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import numpy as np

from coroseg.errors import InputError
from coroseg.io.atomic import write_json
from coroseg.io.centerline import CenterlineGraph

SCHEMA = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
          "Resources/Schema/markups-schema-v1.0.3.json")
MERGE_TOL_MM = 1e-6
#: ``controlPointValues`` entry of a point whose radius is unknown (the schema allows no null)
UNKNOWN_RADIUS = 0.0
MARKUPS_EXTENSION = ".mrk.json"


def oriented_branches(graph: CenterlineGraph) -> list[list[int]]:
    """``graph.branches()``, each reversed where needed to run away from its tree's ostium.

    Trees without an ostium are rooted at their lowest node id. Sorted by (first, last) node.
    """
    g = graph.graph
    depth: dict[int, int] = {}
    for comp in sorted(nx.connected_components(g), key=min):
        ostia = sorted(n for n in comp if g.nodes[n].get("topology") == "OSTIUM")
        root = ostia[0] if ostia else min(comp)
        depth.update(nx.single_source_shortest_path_length(g, root))
    out = []
    for b in graph.branches():
        out.append(b if depth[b[0]] <= depth[b[-1]] else b[::-1])
    return sorted(out, key=lambda b: (depth[b[0]], b[0], b[-1]))


def curves_document(graph: CenterlineGraph, *, name: str = "centerline") -> dict:
    """The markups JSON document (a dict) for ``graph``."""
    g = graph.graph
    markups = []
    for bi, branch in enumerate(oriented_branches(graph)):
        cps = []
        for pi, n in enumerate(branch):
            cps.append({
                "id": str(pi + 1),
                "label": f"{name}-{bi}-{pi + 1}",
                "description": "",
                "associatedNodeID": "",
                "position": [float(v) for v in g.nodes[n]["pos"]],
                "orientation": [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0],
                "selected": True,
                "locked": False,
                "visibility": True,
                "positionStatus": "defined",
            })
        radii = [float(g.nodes[n].get("radius", np.nan)) for n in branch]
        known = [r if np.isfinite(r) and r > 0 else UNKNOWN_RADIUS for r in radii]
        measurements = [] if not any(known) else [{
            "name": "Radius",
            "enabled": False,
            "units": "mm",
            "printFormat": "%5.3f %s",
            "controlPointValues": known,
        }]
        markups.append({
            "type": "Curve",
            "name": f"{name}-{bi}",
            "coordinateSystem": "LPS",
            "coordinateUnits": "mm",
            "locked": False,
            "fixedNumberOfControlPoints": False,
            "labelFormat": "%N-%d",
            "lastUsedControlPointNumber": len(cps),
            "controlPoints": cps,
            "measurements": measurements,
        })
    return {"@schema": SCHEMA, "markups": markups}


def write_markups(graph: CenterlineGraph, path: str | Path, *, name: str | None = None) -> None:
    """Write ``graph`` as a Slicer markups curve file (``.mrk.json``), atomically."""
    path = Path(path)
    if name is None:
        name = path.name[: -len(".mrk.json")] if path.name.endswith(".mrk.json") else path.stem
    write_json(path, curves_document(graph, name=name))


def _radius_measurement(measurements, n: int, curve: int, path: Path) -> np.ndarray:
    """The curve's ``Radius`` measurement per control point (NaN where absent, null or <= 0)."""
    rad = np.full(n, np.nan)
    if measurements is None:
        return rad
    if not isinstance(measurements, list):
        raise InputError(f"curve {curve}: 'measurements' must be a list of objects, "
                         f"found {type(measurements).__name__}", path)
    for meas in measurements:
        if not isinstance(meas, dict):
            raise InputError(f"curve {curve}: every measurement must be an object, found {meas!r:.40}", path)
        vals = meas.get("controlPointValues")
        if meas.get("name") == "Radius" and isinstance(vals, list) and len(vals) == n:
            try:
                rad = np.array([np.nan if v is None else float(v) for v in vals], dtype=float)
            except (TypeError, ValueError):
                raise InputError(f"curve {curve}: Radius 'controlPointValues' must be numbers or null", path) from None
    rad[~(rad > 0)] = np.nan  # UNKNOWN_RADIUS (0.0), null and nonsense radii: unknown
    return rad


def read_markups(path: str | Path, *, merge_tol: float = MERGE_TOL_MM) -> CenterlineGraph:
    """Read the curves (and open/closed polylines) of a markups file into one graph, LPS mm.

    Curves that share end points (as :func:`write_markups` writes them) are joined; the first
    point of a curve that no other curve touches is an ``OSTIUM``. ``RAS`` files are flipped.

    Raises
    ------
    InputError
        Missing file, invalid JSON, no curves, a control point without a numeric finite
        ``position``.
    """
    path = Path(path)
    lines, radii = markups_curves(path)
    if not lines:
        raise InputError("markups file holds no curves", path)
    return CenterlineGraph.from_polylines(lines, radii, merge_tol=merge_tol)


def markups_files(folder: str | Path) -> list[Path]:
    """The ``.mrk.json`` files directly in ``folder`` (hidden ones left out), in natural name order."""
    import re

    def key(p: Path) -> tuple:
        return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", p.name.lower()) if t)

    folder = Path(folder)
    return sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.name.lower().endswith(MARKUPS_EXTENSION)), key=key)


def read_markups_folder(folder: str | Path, *, merge_tol: float = MERGE_TOL_MM) -> CenterlineGraph:
    """Read every ``.mrk.json`` file of ``folder`` (Slicer saves one curve per file) as one graph.

    The curves of all files are joined as those of one file are (shared end points become one
    node); files are taken in natural name order, so ``Curve_2`` comes before ``Curve_10``. Files
    holding only other markups (points, planes) add nothing.

    Raises
    ------
    InputError
        The folder holds no ``.mrk.json`` file or no curve; a file's own problems name that file.
    """
    folder = Path(folder)
    files = markups_files(folder)
    if not files:
        raise InputError("folder holds no .mrk.json files; expected a centerline file or a folder of "
                         "3D Slicer curve files", folder)
    lines, radii = [], []
    for f in files:
        ln, rd = markups_curves(f)
        lines += ln
        radii += rd
    if not lines:
        raise InputError(f"none of the {len(files)} .mrk.json files holds a curve", folder)
    return CenterlineGraph.from_polylines(lines, radii, merge_tol=merge_tol)


def markups_curves(path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The curves of one markups file: control points ``(N_i, 3)`` in LPS mm and their radii."""
    if not path.is_file():
        raise InputError("no such file", path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON ({exc})", path) from None
    except RecursionError:
        raise InputError("not valid JSON (nested too deeply)", path) from None
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", path) from None
    marks = doc.get("markups") if isinstance(doc, dict) else None
    if not isinstance(marks, list):
        raise InputError("expected a Slicer markups file with a 'markups' list", path)
    lines, radii = [], []
    for mi, m in enumerate(marks):
        if not isinstance(m, dict) or m.get("type") not in ("Curve", "ClosedCurve"):
            continue
        cps = m.get("controlPoints") or []
        try:
            pts = np.array([cp["position"] for cp in cps], dtype=float).reshape(-1, 3)
        except (KeyError, TypeError, ValueError):
            raise InputError(f"curve {mi}: every control point needs a 3-number 'position'", path) from None
        if len(pts) == 0:
            continue
        if not np.all(np.isfinite(pts)):
            raise InputError(f"curve {mi} has a NaN or infinite control point position", path)
        if str(m.get("coordinateSystem", "LPS")).upper() == "RAS":
            pts = pts * np.array([-1.0, -1.0, 1.0])
        lines.append(pts)
        radii.append(_radius_measurement(m.get("measurements"), len(pts), mi, path))
    return lines, radii

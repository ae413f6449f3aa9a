"""Join mask pieces that continue a tree's end across a gap (the locator's broken branches).

The locator's mask on real tree geometry falls into 100-300 pieces: a branch that fades below the
threshold for a few millimetres (a stenosis, a thin segment, noise) comes back as a separate
piece, and the selection rules (size, hysteresis) drop it with the noise and the veins
(docs/results/generalisation.md, section 4). Veins and noise lie *beside* the tree or anywhere;
a lost distal branch lies *ahead* of one of the tree's end points, along the direction the vessel
was running. So a piece is joined when one of its voxels lies within ``gap_mm`` of a tree end and
inside a cone of half-angle ``max_angle_deg`` around that end's direction, its centre lies ahead
of the end as well, and its first few millimetres run along that direction (a vessel crossing
ahead is no continuation); ostia are never followed (they run into the aorta). Joined pieces
bring their own ends, so a chain of pieces along one vessel is followed for up to ``rounds``
rounds. Measured on the generalisation benchmark's dev sets and not on by default
(docs/results/generalisation.md, section 8): a distractor vessel running on from a tree end is
joined as readily as a lost branch.
"""

from __future__ import annotations

import numpy as np

from coroseg.io.volume import Volume

#: how far back from an end point its direction is measured (mm): a few vessel diameters
DIRECTION_MM = 5.0
#: the piece's centre must lie ahead of the end within this half-angle (a piece running back
#: beside the tree, like a vein, does not)
CENTRE_ANGLE_DEG = 60.0
#: and the piece must run along the end's direction where it starts: its principal axis within
#: this angle of it, measured over its voxels within DIRECTION_MM of its nearest one (a vessel
#: crossing ahead of the end is not its continuation)
AXIS_ANGLE_DEG = 45.0


def end_directions(graph, *, back_mm: float = DIRECTION_MM) -> tuple[np.ndarray, np.ndarray]:
    """Every end point of a centerline graph (degree 1, not an ostium: an ostium runs into the
    aorta, never into a lost branch) and the unit direction the vessel runs into it.

    Returns ``(positions (N, 3), directions (N, 3))`` in the graph's mm frame; the direction is
    from the point ``back_mm`` back along the branch to the end (fewer if the branch is shorter).
    """
    g = graph.graph

    def at(node):
        return np.asarray(g.nodes[node]["pos"], float)

    pos, dirs = [], []
    for n in g.nodes:
        if g.degree(n) != 1 or g.nodes[n].get("topology") == "OSTIUM":
            continue
        here = at(n)
        prev, cur, walked = n, next(iter(g.neighbors(n))), 0.0
        while True:
            walked += float(np.linalg.norm(at(cur) - at(prev)))
            nxt = [m for m in g.neighbors(cur) if m != prev]
            if walked >= back_mm or len(nxt) != 1:
                break
            prev, cur = cur, nxt[0]
        d = here - at(cur)
        norm = float(np.linalg.norm(d))
        if norm > 1e-6:
            pos.append(here)
            dirs.append(d / norm)
    return np.reshape(pos, (-1, 3)), np.reshape(dirs, (-1, 3))


def bridge_pieces(tree: np.ndarray, candidates: np.ndarray, grid: Volume, *, gap_mm: float,
                  max_angle_deg: float = 35.0, rounds: int = 3, min_piece_voxels: int = 3) -> np.ndarray:
    """``tree`` plus every piece of ``candidates`` that continues one of its ends (see module doc).

    Parameters
    ----------
    tree : (Z, Y, X) ndarray of bool
        The selected trees (on ``grid``).
    candidates : (Z, Y, X) ndarray of bool
        Where other pieces may come from (e.g. every piece of the thresholded probability);
        pieces touching ``tree`` are part of it already.
    grid : Volume
        Geometry of both masks (spacing, direction: distances and angles are in mm).
    gap_mm : float
        Largest gap between a tree end and the piece.
    max_angle_deg : float
        Half-angle of the cone around the end's direction in which the piece must start.

    Returns
    -------
    (Z, Y, X) ndarray of bool
    """
    import cc3d
    from scipy.spatial import cKDTree

    from coroseg.infer.postprocess import grow_into
    from coroseg.prior.skeleton import centerline_from_mask

    out = np.asarray(tree, bool).copy()
    if not out.any():
        return out
    # pieces already touching the trees (26-connected) belong to them: only the others are candidates
    free = np.asarray(candidates, bool) & ~grow_into(out, candidates)
    labels = cc3d.connected_components(free, connectivity=26)
    counts = np.bincount(labels.ravel())
    ids = [i for i in range(1, len(counts)) if counts[i] >= min_piece_voxels]
    if not ids:
        return out
    idx = np.argwhere(np.isin(labels, ids))
    lab = labels[tuple(idx.T)]
    world = grid.index_to_world(idx.astype(float))
    # each piece's voxels (mm) once, grouped by label: the rules below look at whole pieces
    order = np.argsort(lab, kind="stable")
    bounds = np.searchsorted(lab[order], np.append(ids, ids[-1] + 1))
    voxels = {i: world[order[a:b]] for i, a, b in zip(ids, bounds[:-1], bounds[1:])}
    centres = {i: v.mean(axis=0) for i, v in voxels.items()}
    kd = cKDTree(world)
    cos_near, cos_centre = np.cos(np.radians(max_angle_deg)), np.cos(np.radians(CENTRE_ANGLE_DEG))
    joined: set[int] = set()
    new = out
    for _ in range(rounds):
        graph = centerline_from_mask(grid.with_array(new.astype(np.uint8), is_label=True))
        ends, dirs = end_directions(graph)
        found: set[int] = set()
        for e, d, near in zip(ends, dirs, kd.query_ball_point(ends, gap_mm) if len(ends) else []):
            if not near:
                continue
            v = world[near] - e
            dist = np.linalg.norm(v, axis=1)
            ahead = (v @ d) >= cos_near * np.maximum(dist, 1e-6)
            for i in set(lab[np.asarray(near)[ahead]].tolist()) - joined - found:
                c = centres[i] - e
                if c @ d >= cos_centre * max(float(np.linalg.norm(c)), 1e-6) and _runs_along(voxels[i], e, d):
                    found.add(i)
        if not found:
            break
        joined |= found
        new = np.isin(labels, list(found))
        out |= new
    return out


def _runs_along(piece: np.ndarray, end: np.ndarray, direction: np.ndarray) -> bool:
    """Whether the piece's start (its voxels within DIRECTION_MM of its point nearest ``end``)
    runs within AXIS_ANGLE_DEG of ``direction`` (either sense). A start of fewer than 4 voxels (a
    thin stub) passes; a blob (no axis twice as long as the next) does not."""
    first = piece[np.argmin(np.linalg.norm(piece - end, axis=1))]
    start = piece[np.linalg.norm(piece - first, axis=1) <= DIRECTION_MM]
    if len(start) < 4:
        return True
    centred = start - start.mean(axis=0)
    evals, evecs = np.linalg.eigh(centred.T @ centred)
    if evals[-1] < 2.0 * max(evals[-2], 1e-9):  # a blob, not a tube: no axis to compare
        return False
    return abs(float(evecs[:, -1] @ direction)) >= np.cos(np.radians(AXIS_ANGLE_DEG))


__all__ = ["bridge_pieces", "end_directions"]

"""3D views of a prediction against the ground truth: a rotating GIF and a single PNG.

Method (fast on CPU, no OpenGL): every voxel of ``pred | ref`` is classed TP (in both),
FP (prediction only) or FN (ground truth only) and pooled onto an isotropic grid of pitch
``voxel_mm`` (default: the data's coarsest spacing, coarser for large extents so the grid
stays <= ``max_dim`` cells a side — about 1 mm for a whole coronary tree); a cell is shown
when its voxels fill ``min_fill`` of it and takes their majority class (see
:func:`classify_cells`). Only surface cells (a 6-neighbour outside) are kept. For each
frame these points are rotated about the superior (array z) axis and splatted with a
z-buffer onto the view plane, then shaded by depth (nearer is brighter) and by the smoothed
depth map's slope (a headlight): a solid-looking surface in a fraction of a second per
frame for a whole coronary tree.

View: at angle 0 the camera looks from anterior to posterior (a frontal view, patient's
right on the screen's left, superior up) for an LPS array with identity direction.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from coroseg.errors import InputError
from coroseg.io.atomic import atomic_path

__all__ = ["classify_cells", "render_frame", "render3d_gif", "render3d_png", "CLASS_COLOURS", "BACKGROUND"]

#: RGB colours of the classes 1=TP, 2=FP, 3=FN (and 1 = "prediction" when there is no reference)
CLASS_COLOURS = {1: (235, 185, 40), 2: (230, 55, 55), 3: (60, 125, 245)}
CLASS_NAMES = {1: "TP", 2: "FP", 3: "FN"}
BACKGROUND = (18, 18, 24)


def _check(pred: np.ndarray, ref: np.ndarray | None, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray | None]:
    pred = np.asarray(pred)
    if pred.ndim != 3:
        raise InputError(f"pred must be a 3D (Z, Y, X) array, found shape {pred.shape}")
    if ref is not None:
        ref = np.asarray(ref)
        if ref.shape != pred.shape:
            raise InputError(f"ref shape {ref.shape} differs from pred shape {pred.shape}")
    if len(spacing) != 3 or min(float(s) for s in spacing) <= 0:
        raise InputError(f"spacing must be 3 positive numbers (sz, sy, sx) mm, found {tuple(spacing)}")
    return pred.astype(bool, copy=False), None if ref is None else ref.astype(bool, copy=False)


def classify_cells(pred: np.ndarray, ref: np.ndarray | None, *, spacing: Sequence[float],
                   voxel_mm: float | None = None, max_dim: int = 200,
                   min_fill: float = 0.2) -> tuple[np.ndarray, float]:
    """Pool both masks onto an isotropic grid and label each cell TP=1 / FP=2 / FN=3.

    Each voxel of ``pred | ref`` has a class (TP, FP or FN); a cell is shown when its
    voxels fill at least ``min_fill`` of it (and always when it holds one voxel and the
    cell is no bigger than a voxel), and takes its majority class (ties: TP, then FP). At the
    data's own resolution this is the exact voxel classification.

    Parameters
    ----------
    pred, ref : (Z, Y, X) ndarray of bool (``ref`` may be None: every prediction cell is 1)
    spacing : tuple of 3 float, mm
    voxel_mm : float, optional
        Cell size; default ``max(max(spacing), extent_mm / max_dim)`` where ``extent_mm`` is
        the largest side of the masks' bounding box: the data's own resolution for small
        crops, about 1 mm for a whole coronary tree (150-200 mm) at the default ``max_dim``.
    max_dim : int
        Upper bound on the number of cells along any axis.
    min_fill : float in [0, 1]
        Fraction of a cell's volume that foreground voxels must fill for it to be shown.

    Returns
    -------
    labels : (z, y, x) ndarray of uint8
        Class per cell (0 = background), cropped to the foreground's bounding box plus one
        empty cell on every side. Shape ``(2, 2, 2)`` of zeros when both masks are empty.
    pitch : float, mm
        The cell size used.
    """
    pred, ref = _check(pred, ref, spacing)
    sp = np.asarray(spacing, dtype=float)
    # work inside the bounding box of pred | ref (whole CT volumes are mostly background)
    union = pred if ref is None else pred | ref
    box = []
    for ax in range(3):
        nz = np.flatnonzero(union.any(axis=tuple(a for a in range(3) if a != ax)))
        box.append(slice(int(nz[0]), int(nz[-1]) + 1) if nz.size else slice(0, 0))
    pred = pred[tuple(box)]
    ref = None if ref is None else ref[tuple(box)]
    idx_p = np.argwhere(pred)
    idx_r = np.argwhere(ref) if ref is not None else np.zeros((0, 3), int)
    allidx = np.concatenate([idx_p, idx_r]) if idx_r.size else idx_p
    if allidx.size == 0:
        return np.zeros((2, 2, 2), np.uint8), float(voxel_mm or max(sp.max(), 1.0))
    lo = allidx.min(axis=0) * sp
    hi = allidx.max(axis=0) * sp
    extent = float((hi - lo).max()) + float(sp.max())
    if voxel_mm is None:
        # ~1 mm for whole-heart volumes, finer for small (phantom) crops, never finer than the data
        voxel_mm = max(float(sp.max()), extent / max_dim)
    pitch = float(voxel_mm)

    dims = tuple(int(d) + 3 for d in np.floor((hi - lo) / pitch))
    # per cell, voxel counts of TP / FP / FN (class 1 = prediction when there is no ref)
    if ref is None:
        groups = {1: idx_p}
    else:
        groups = {1: np.argwhere(pred & ref), 2: np.argwhere(pred & ~ref), 3: np.argwhere(~pred & ref)}
    n_cells = int(np.prod(dims))
    counts = np.zeros((4, n_cells))
    for k, idx in groups.items():
        c = np.floor((idx * sp - lo) / pitch).astype(np.int64) + 1
        counts[k] = np.bincount(np.ravel_multi_index(c.T, dims), minlength=n_cells)
    # a cell is shown when its voxels cover >= min_fill of it (at least one voxel), so sub-cell
    # disagreements at boundaries do not paint a whole cell; its class is the majority class
    per_cell = max(1.0, float(np.prod(pitch / sp)))
    total = counts[1:].sum(axis=0)
    shown = total >= max(1.0, min_fill * per_cell)
    labels = np.where(shown, 1 + np.argmax(counts[1:], axis=0), 0).astype(np.uint8)
    return labels.reshape(dims), pitch


def _surface_points(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fg = labels > 0
    inner = fg.copy()
    inner[1:-1, 1:-1, 1:-1] = (fg[1:-1, 1:-1, 1:-1] & fg[:-2, 1:-1, 1:-1] & fg[2:, 1:-1, 1:-1]
                               & fg[1:-1, :-2, 1:-1] & fg[1:-1, 2:, 1:-1]
                               & fg[1:-1, 1:-1, :-2] & fg[1:-1, 1:-1, 2:])
    surf = fg & ~inner
    pts = np.argwhere(surf)
    return pts.astype(float), labels[surf]


def _render_points(pts: np.ndarray, cls: np.ndarray, shape: tuple[int, int, int], angle_deg: float,
                   canvas: tuple[int, int], scale: int = 1) -> np.ndarray:
    """Z-buffer splat of ``pts`` (cell coords k, j, i) rotated by ``angle_deg`` about axis k.

    The canvas is ``canvas`` cells, drawn at ``scale`` pixels per cell; every point is splatted
    as a square a little larger than one cell so rotated surfaces have no holes.
    """
    h, w = canvas[0] * scale, canvas[1] * scale
    img = np.empty((h, w, 3), np.uint8)
    img[:] = BACKGROUND
    if pts.shape[0] == 0:
        return img
    cz, cy, cx = ((np.asarray(shape, float) - 1) / 2)
    t = np.deg2rad(angle_deg)
    y, x = pts[:, 1] - cy, pts[:, 2] - cx
    # rotate in the (x, y) plane; camera looks along +y (anterior -> posterior)
    u = (np.cos(t) * x - np.sin(t) * y + canvas[1] / 2) * scale  # screen horizontal, pixels
    v = ((canvas[0] - 1) / 2 - (pts[:, 0] - cz) + 0.5) * scale  # superior up, pixels
    d0 = np.sin(t) * x + np.cos(t) * y  # depth: smaller = nearer the camera (cells)
    half = 0.6 * scale
    offs = np.arange(int(np.floor(-half)), int(np.ceil(half)) + 1)
    offs = offs[np.abs(offs + 0.0) <= half + 0.5] if offs.size > 1 else offs
    cols, rows, ds, cs = [], [], [], []
    for a in offs:
        for b in offs:
            cols.append(np.floor(u + b).astype(np.int64))
            rows.append(np.floor(v + a).astype(np.int64))
            ds.append(d0)
            cs.append(cls)
    col, row, d, klass_pts = (np.concatenate(q) for q in (cols, rows, ds, cs))
    ok = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    col, row, d, klass_pts = col[ok], row[ok], d[ok], klass_pts[ok]
    pix = row * w + col
    order = np.lexsort((-d, pix))  # per pixel, nearest (smallest d) last
    pix_s = pix[order]
    last = np.r_[pix_s[1:] != pix_s[:-1], True]
    sel = order[last]
    depth = np.full(h * w, np.nan)
    depth[pix[sel]] = d[sel]
    depth = depth.reshape(h, w)
    klass = np.zeros(h * w, np.uint8)
    klass[pix[sel]] = klass_pts[sel]
    klass = klass.reshape(h, w)
    # shading: depth cue (near bright) x headlight on the depth map's slope
    valid = np.isfinite(depth)
    dmin, dmax = np.nanmin(depth), np.nanmax(depth)
    dn = np.zeros_like(depth)
    dn[valid] = (depth[valid] - dmin) / max(dmax - dmin, 1e-6)
    # normals from the depth map smoothed over ~1 cell (normalised convolution inside the
    # silhouette, background pushed back by 2 cells so rims get a slope): hides voxel stairs
    from scipy.ndimage import gaussian_filter

    filled = np.where(valid, depth, dmax + 2.0)
    sigma = 0.9 * scale
    sm = gaussian_filter(filled, sigma)
    gy, gx = (g * scale for g in np.gradient(sm))  # slope in cells per cell
    gx, gy = np.clip(gx, -3, 3), np.clip(gy, -3, 3)
    lambert = 1.0 / np.sqrt(1.0 + gx * gx + gy * gy)
    shade = (0.35 + 0.65 * lambert) * (1.0 - 0.45 * dn)
    for k, rgb in CLASS_COLOURS.items():
        m = klass == k
        if m.any():
            img[m] = np.clip(np.asarray(rgb, float)[None, :] * shade[m][:, None], 0, 255).astype(np.uint8)
    return img


def _font(px: int):
    """Pillow's bundled scalable font at ``px`` pixels (its old bitmap default is 11 px, too small)."""
    from PIL import ImageFont

    return ImageFont.load_default(size=px)


def _legend(im, has_ref: bool, angle: float | None, title: str | None):
    from PIL import ImageDraw

    from coroseg.report.annotate import MIN_TEXT_PX

    draw = ImageDraw.Draw(im)
    px = max(MIN_TEXT_PX, im.size[0] // 22)
    font = _font(px)
    s = px
    x, y = 6, im.size[1] - 6 - s
    items = [(1, "prediction")] if not has_ref else [(1, "TP"), (2, "FP"), (3, "FN")]
    for k, name in items:
        draw.rectangle([x, y, x + s, y + s], fill=CLASS_COLOURS[k])
        draw.text((x + s + 4, y + s // 2), name, fill=(230, 230, 230), font=font, anchor="lm")
        x += s + 8 + int(draw.textlength(name, font=font)) + 8
    if title:
        draw.text((6, 5), title, fill=(230, 230, 230), font=font)
    if angle is not None:  # also keeps every GIF frame distinct (Pillow merges identical frames)
        text = f"{angle:.0f}\u00b0"
        draw.text((im.size[0] - 8 - int(draw.textlength(text, font=font)), y + s // 2), text,
                  fill=(150, 150, 160), font=font, anchor="lm")
    return im


def _prepare(pred, ref, spacing, voxel_mm):
    labels, pitch = classify_cells(pred, ref, spacing=spacing, voxel_mm=voxel_mm)
    pts, cls = _surface_points(labels)
    # canvas big enough for any rotation about z: the (y, x) diagonal, and the z extent
    diag = int(np.ceil(np.hypot(labels.shape[1], labels.shape[2]))) + 2
    side = max(diag, labels.shape[0] + 2)
    return labels, pts, cls, (side, side)


def _scale(canvas: tuple[int, int], size: int) -> int:
    """Pixels per cell: render at least at the output size (then downsample: anti-aliasing)."""
    return max(1, int(np.ceil(size / max(canvas))))


def render_frame(pred: np.ndarray, ref: np.ndarray | None, *, spacing: Sequence[float], angle: float = 0.0,
                 size: int = 320, voxel_mm: float | None = None) -> np.ndarray:
    """One rendered view as a ``(size, size, 3)`` uint8 RGB array (no legend).

    Parameters
    ----------
    pred, ref : (Z, Y, X) ndarray of bool (``ref`` may be None)
    spacing : tuple of 3 float, mm
    angle : float, degrees
        Rotation about the superior axis; 0 is a frontal (anterior) view.
    size : int
        Output side in pixels.
    """
    from PIL import Image

    labels, pts, cls, canvas = _prepare(pred, ref, spacing, voxel_mm)
    img = _render_points(pts, cls, labels.shape, angle, canvas, _scale(canvas, size))
    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.LANCZOS))


def _frames(pred, ref, spacing, angles, size, voxel_mm, title):
    from PIL import Image

    pred_b, ref_b = _check(pred, ref, spacing)
    labels, pts, cls, canvas = _prepare(pred_b, ref_b, spacing, voxel_mm)
    out = []
    for a in angles:
        img = Image.fromarray(_render_points(pts, cls, labels.shape, a, canvas, _scale(canvas, size)))
        img = img.resize((size, size), Image.Resampling.LANCZOS)
        out.append(_legend(img, ref_b is not None, a, title))
    return out


def render3d_gif(pred: np.ndarray, ref: np.ndarray | None, path: str | Path, *, spacing: Sequence[float],
                 n_frames: int = 24, size: int = 320, duration_ms: int = 120, voxel_mm: float | None = None,
                 title: str | None = None) -> Path:
    """Write a looping GIF of the masks rotating a full turn about the superior axis.

    Cells are coloured TP (gold), FP (red), FN (blue) — or gold "prediction" when ``ref`` is
    None — see the module docstring for the method.

    Parameters
    ----------
    pred, ref : (Z, Y, X) ndarray of bool (``ref`` may be None); may be empty
    path : str or Path
        Output GIF, written atomically.
    spacing : tuple of 3 float, mm
    n_frames : int
        Frames per turn (angles ``360 * f / n_frames``).
    size : int
        Frame side in pixels (frames are ``size x size``).
    duration_ms : int
        Display time per frame.
    voxel_mm : float, optional
        Render grid pitch (see :func:`classify_cells`).
    title : str, optional
        Text drawn in the top-left corner.

    Returns
    -------
    Path of the written GIF.
    """
    if n_frames < 1:
        raise InputError(f"n_frames must be >= 1, found {n_frames}")
    frames = _frames(pred, ref, spacing, [360.0 * f / n_frames for f in range(n_frames)], size, voxel_mm, title)
    path = Path(path)
    # one palette shared by all frames (built from a sample of all of them, legend included),
    # so colours do not flicker between frames and the small legend swatches keep their colour
    from PIL import Image

    strip = Image.new("RGB", (size, size * min(len(frames), 6)))
    for i, f in enumerate(frames[:: max(1, len(frames) // 6)][:6]):
        strip.paste(f, (0, i * size))
    palette = strip.quantize(colors=255, method=Image.Quantize.MEDIANCUT)
    pal = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    with atomic_path(path) as tmp:
        pal[0].save(tmp, format="GIF", save_all=True, append_images=pal[1:], duration=duration_ms, loop=0,
                    optimize=False, disposal=1)
    return path


def render3d_png(pred: np.ndarray, ref: np.ndarray | None, path: str | Path, *, spacing: Sequence[float],
                 angle: float = 30.0, size: int = 512, voxel_mm: float | None = None,
                 title: str | None = None) -> Path:
    """Write one rendered view (see :func:`render3d_gif`) as a ``size x size`` PNG."""
    img = _frames(pred, ref, spacing, [angle], size, voxel_mm, title)[0]
    path = Path(path)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path

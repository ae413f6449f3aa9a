"""Pictures of the cropping strategy: grid tiles vs centerline crops (PNG and GIF).

Matplotlib with the Agg backend (no display needed); every file is written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from coroseg.io.atomic import atomic_path
from coroseg.io.volume import Volume


def _rects_on_slice(centres: np.ndarray, size: Sequence[int], k: int) -> list[tuple[int, int, int, int]]:
    """(j0, i0, h, w) of the crops whose span in k contains slice ``k``."""
    s = np.asarray(size, dtype=np.int64)
    out = []
    for c in np.asarray(centres, dtype=np.int64).reshape(-1, 3):
        lo = c - s // 2
        if lo[0] <= k < lo[0] + s[0]:
            out.append((int(lo[1]), int(lo[2]), int(s[1]), int(s[2])))
    return out


def _window(image: Volume) -> tuple[float, float]:
    """Display range, computed once per figure (a percentile over a whole scan is slow)."""
    if image.is_label or not image.array.size:
        return 0.0, 1.0
    sample = image.array[:: max(1, image.shape[0] // 32)]  # every few slices is plenty
    lo, hi = np.percentile(sample, [1, 99.5])
    return float(lo), float(hi)


def _display(image: Volume, k: int, window: tuple[float, float] | None = None) -> np.ndarray:
    sl = np.asarray(image.array[k], dtype=float)
    if image.is_label:
        return sl
    lo, hi = window or _window(image)
    return np.clip((sl - lo) / max(hi - lo, 1e-6), 0, 1)


def _busiest_slice(centres: np.ndarray, size: Sequence[int], depth: int) -> int:
    counts = [len(_rects_on_slice(centres, size, k)) for k in range(depth)]
    return int(np.argmax(counts)) if counts else 0


def plot_crops_vs_grid(
    image: Volume,
    centres_crop: np.ndarray,
    centres_grid: np.ndarray,
    size: Sequence[int],
    path: str | Path,
    *,
    slice_index: int | None = None,
    label: Volume | None = None,
    dpi: int = 100,
    crop_title: str = "centerline crops",
) -> Path:
    """One axial slice, side by side: grid tiles (left) and centerline crops (right).

    Parameters
    ----------
    image : Volume
        Image (or label) shown in grey.
    centres_crop, centres_grid : (M, 3) ndarray of int
        Crop centres ``(k, j, i)`` (see :mod:`coroseg.prior.crops`).
    size : tuple of 3 int
        Crop size ``(k, j, i)`` in voxels (``(1, h, w)`` for 2D crops).
    path : path
        Output image (PNG recommended), written atomically.
    slice_index : int, optional
        Slice ``k``; default the slice crossed by the most centerline crops.
    label : Volume, optional
        Vessel mask drawn in red on both panels.
    crop_title : str
        Title of the right panel (say which centerline placed the crops).

    Returns
    -------
    Path
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    depth = image.shape[0]
    k = _busiest_slice(centres_crop, size, depth) if slice_index is None else int(slice_index)
    if not 0 <= k < depth:
        raise ValueError(f"slice_index must be in [0, {depth}), not {k}")
    sl = _display(image, k)
    aspect = image.spacing[1] / image.spacing[2]
    fig = Figure(figsize=(10, 5.4))
    FigureCanvasAgg(fig)  # Agg canvas, no pyplot global state
    axes = fig.subplots(1, 2)
    for ax, centres, title, colour in ((axes[0], centres_grid, "grid", "tab:orange"),
                                       (axes[1], centres_crop, crop_title, "tab:cyan")):
        ax.imshow(sl, cmap="gray", aspect=aspect, interpolation="nearest")
        if label is not None:
            m = np.ma.masked_equal(np.asarray(label.array[k]) > 0, False)
            ax.imshow(m, cmap="autumn", alpha=0.8, aspect=aspect, interpolation="nearest")
        rects = _rects_on_slice(centres, size, k)
        for j0, i0, h, w in rects:
            ax.add_patch(Rectangle((i0 - 0.5, j0 - 0.5), w, h, fill=False, edgecolor=colour, linewidth=1.2))
        ax.set_title(f"{title}: {len(rects)} on slice {k}, {len(np.asarray(centres).reshape(-1, 3))} total")
        ax.set_xlim(-0.5, sl.shape[1] - 0.5)
        ax.set_ylim(sl.shape[0] - 0.5, -0.5)
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    return path


def crops_gif(
    image: Volume,
    centres: np.ndarray,
    size: Sequence[int],
    path: str | Path,
    *,
    grid_centres: np.ndarray | None = None,
    step: int = 2,
    label: Volume | None = None,
    max_side: int = 256,
    duration_ms: int = 80,
) -> Path:
    """Animated GIF scrolling through axial slices with the crops drawn (Pillow).

    Crops are cyan, grid tiles (optional) orange, the vessel mask (optional) red. Every
    ``step``-th slice between the first and last slice touched by a crop is a frame; frames
    are downscaled to at most ``max_side`` pixels.

    Returns
    -------
    Path
    """
    from PIL import Image, ImageDraw

    if step < 1:
        raise ValueError(f"step must be >= 1, not {step}")
    s = np.asarray(size, dtype=np.int64)
    cs = np.asarray(centres, dtype=np.int64).reshape(-1, 3)
    depth = image.shape[0]
    if len(cs):
        k0 = max(0, int((cs[:, 0] - s[0] // 2).min()))
        k1 = min(depth, int((cs[:, 0] - s[0] // 2 + s[0]).max()))
    else:
        k0, k1 = 0, depth
    ny, nx_ = image.shape[1:]
    # physical aspect: rows scaled by sy/sx
    scale = max_side / max(ny * image.spacing[1] / image.spacing[2], nx_)
    out_w, out_h = max(1, int(round(nx_ * scale))), max(1, int(round(ny * image.spacing[1] / image.spacing[2] * scale)))
    fy, fx = out_h / ny, out_w / nx_
    frames = []
    win = _window(image)
    for k in range(k0, max(k1, k0 + 1), step):
        grey = (_display(image, k, win) * 255).astype(np.uint8)
        rgb = np.stack([grey] * 3, axis=-1)
        if label is not None:
            m = np.asarray(label.array[k]) > 0
            rgb[m] = (220, 30, 30)
        im = Image.fromarray(rgb).resize((out_w, out_h), Image.NEAREST)
        draw = ImageDraw.Draw(im)
        layers = [(grid_centres, (255, 150, 0))] if grid_centres is not None else []
        layers.append((cs, (0, 220, 255)))
        for cen, colour in layers:
            for j0, i0, h, w in _rects_on_slice(cen, s, k):
                draw.rectangle([i0 * fx, j0 * fy, (i0 + w) * fx - 1, (j0 + h) * fy - 1], outline=colour)
        draw.text((3, 3), f"k={k}", fill=(255, 255, 0))
        frames.append(im.convert("P", palette=Image.ADAPTIVE, colors=64))
    path = Path(path)
    with atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
    return path


def _slice_rgb(image: Volume, k: int, win, label: Volume | None, out_wh: tuple[int, int]):
    """Axial slice ``k`` as an RGB Pillow image of ``out_wh`` pixels, the vessel mask in red."""
    from PIL import Image

    grey = (_display(image, k, win) * 255).astype(np.uint8)
    rgb = np.stack([grey] * 3, axis=-1)
    if label is not None:
        rgb[np.asarray(label.array[k]) > 0] = (220, 30, 30)
    return Image.fromarray(rgb).resize(out_wh, Image.Resampling.NEAREST)


def _fixed_palette(greys: int, colours: Sequence[tuple[int, int, int]]):
    """A Pillow ``P`` image whose palette is ``greys`` grey levels plus ``colours`` exactly."""
    from PIL import Image

    entries = [(v, v, v) for v in np.linspace(0, 255, greys).round().astype(int)] + list(colours)
    flat = [int(c) for rgb in entries for c in rgb]
    pal = Image.new("P", (1, 1))
    pal.putpalette(flat + flat[-3:] * (256 - len(entries)))
    return pal


def crops_vs_grid_gif(
    image: Volume,
    centres_crop: np.ndarray,
    centres_grid: np.ndarray,
    size: Sequence[int],
    path: str | Path,
    *,
    label: Volume | None = None,
    crop_title: str = "centerline crops",
    step: int = 2,
    panel_px: int = 300,
    duration_ms: int = 110,
    greys: int = 32,
) -> Path:
    """Slice-scroll GIF: each axial slice twice, the fixed grid's tiles (left) and the crops (right).

    What the crop prior buys is seen only by scrolling: the grid covers every slice with tiles
    that are mostly background, the crops follow the tree. Each frame's header says how many
    boxes cross that slice and how many there are in all; a 10 mm ruler (or the largest 1-2-5
    step under a third of the panel) sits at the bottom right. The image is shown with its row
    ``j`` down and column ``i`` right (for an LPS-oriented scan: anterior up, patient's right on
    the left). Frames cover the slices crossed by a crop, every ``step``-th, on one fixed palette
    (``greys`` grey levels and the box, vessel and text colours, so no colour drifts between frames
    or is merged away): about 1 MB for a 160^3 phantom at the defaults.

    Parameters
    ----------
    image : Volume
        Image (windowed to [0, 1] and flagged ``is_label`` to be shown as is) or label.
    centres_crop, centres_grid : (M, 3) ndarray of int
        Box centres ``(k, j, i)`` in ``image`` voxels.
    size : tuple of 3 int
        Box size ``(k, j, i)`` in ``image`` voxels.
    crop_title : str
        Header of the right panel (say which centerline placed the crops).
    """
    from PIL import Image, ImageDraw, ImageFont

    from coroseg.report.annotate import nice_length_mm

    if step < 1:
        raise ValueError(f"step must be >= 1, not {step}")
    s = np.asarray(size, dtype=np.int64)
    crops = np.asarray(centres_crop, dtype=np.int64).reshape(-1, 3)
    grid = np.asarray(centres_grid, dtype=np.int64).reshape(-1, 3)
    depth, ny, nx_ = image.shape
    k0, k1 = (max(0, int((crops[:, 0] - s[0] // 2).min())), min(depth, int((crops[:, 0] - s[0] // 2 + s[0]).max()))) \
        if len(crops) else (0, depth)
    sy, sx = image.spacing[1], image.spacing[2]
    scale = panel_px / max(ny * sy / sx, nx_)  # screen pixels per column; rows keep the physical aspect
    w, h = max(1, int(round(nx_ * scale))), max(1, int(round(ny * sy / sx * scale)))
    font = ImageFont.load_default(size=15)
    head, foot, gap = 44, 26, 6
    bar_mm = nice_length_mm(nx_ * sx, fraction=0.33)
    bar_px = int(round(bar_mm / sx * scale))
    win = _window(image)
    frames = []
    for k in range(k0, max(k1, k0 + 1), step):
        canvas = Image.new("RGB", (2 * w + gap, h + head + foot), (0, 0, 0))
        draw = ImageDraw.Draw(canvas)
        for p, (cen, colour, name) in enumerate(((grid, (255, 150, 0), "fixed grid"),
                                                 (crops, (0, 220, 255), crop_title))):
            x0 = p * (w + gap)
            canvas.paste(_slice_rgb(image, k, win, label, (w, h)), (x0, head))
            rects = _rects_on_slice(cen, s, k)
            for j0, i0, rh, rw in rects:
                draw.rectangle([x0 + i0 * scale, head + j0 * h / ny, x0 + (i0 + rw) * scale - 1,
                                head + (j0 + rh) * h / ny - 1], outline=colour, width=2)
            draw.text((x0 + 4, 3), name, fill=colour, font=font)
            draw.text((x0 + 4, 22), f"{len(rects)} on this slice, {len(cen)} in all", fill=(220, 220, 220), font=font)
        draw.text((4, h + head + 4), f"axial slice {k}   red: vessel", fill=(220, 220, 220), font=font)
        xr = 2 * w + gap - 6
        draw.rectangle([xr - bar_px, h + head + 10, xr, h + head + 14], fill=(255, 255, 255))
        draw.text((xr - bar_px - 6, h + head + 12), f"{bar_mm:g} mm", fill=(255, 255, 255), font=font, anchor="rm")
        frames.append(canvas)
    palette = _fixed_palette(greys, [(255, 150, 0), (0, 220, 255), (220, 30, 30), (220, 220, 220), (255, 255, 255)])
    pal = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    path = Path(path)
    with atomic_path(path) as tmp:
        pal[0].save(tmp, format="GIF", save_all=True, append_images=pal[1:], duration=duration_ms, loop=0,
                    optimize=True)
    return path


__all__ = ["plot_crops_vs_grid", "crops_gif", "crops_vs_grid_gif"]

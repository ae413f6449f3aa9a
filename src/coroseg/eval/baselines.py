"""Classical baselines for the experiment table: global HU threshold and Frangi vesselness.

Two flavours of each:

- **oracle** — :func:`best_threshold_segmentation` and :func:`frangi_segmentation` with
  ``label=`` pick the threshold that maximises Dice *on the case itself*. An upper bound on
  what a single global threshold can do; not a fair method, reported as such.
- **fitted** — :func:`fit_threshold` picks one threshold maximising the mean Dice over
  training cases; :func:`apply_threshold` applies it to a test case. This is the honest row.

A segmentation is ``values >= threshold``. Threshold search is exact for every threshold on
the grid and fast: the number of voxels (and of label voxels) at or above each threshold
comes from one sorted-search / bincount pass, so Dice(t) = 2 TP(t) / (P(t) + |label|) for all
thresholds at once. Integer images (CT in HU) are searched at every integer between the
lowest and highest label intensity (a threshold outside that range is never better); float
images at 512 quantiles of the label intensities.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["threshold_grid", "dice_curve", "best_threshold_segmentation", "fit_threshold",
           "apply_threshold", "vesselness", "frangi_segmentation", "label_box"]


def _check_pair(image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(image)
    label = np.asarray(label)
    if image.shape != label.shape:
        raise ValueError(f"label shape {label.shape} does not match image shape {image.shape}")
    if label.dtype != np.bool_:
        label = label != 0
    return image, label


def threshold_grid(images: Sequence[np.ndarray], labels: Sequence[np.ndarray], *, n: int = 512) -> np.ndarray:
    """Candidate thresholds for the images' label intensities (sorted, unique).

    Integer images: every integer from the lowest to the highest intensity inside any label.
    Float images: ``n + 1`` quantiles of the pooled label intensities.
    """
    vals = [np.asarray(im)[np.asarray(lab) != 0] for im, lab in zip(images, labels)]
    vals = [v for v in vals if v.size]
    if not vals:
        raise ValueError("every label is empty; cannot choose a threshold")
    if all(v.dtype.kind in "iub" for v in vals):
        lo, hi = min(int(v.min()) for v in vals), max(int(v.max()) for v in vals)
        return np.arange(lo, hi + 1, dtype=float)
    pooled = np.concatenate([v.astype(float) for v in vals])
    return np.unique(np.quantile(pooled, np.linspace(0.0, 1.0, n + 1)))


def _count_ge(values: np.ndarray, t: np.ndarray) -> np.ndarray:
    """For sorted thresholds ``t``: number of ``values >= t[k]`` for every ``k``."""
    if values.dtype.kind in "iu" and np.all(t == np.round(t)) and values.size:
        lo, hi = int(values.min()), int(values.max())
        if hi - lo < 1 << 20:  # bincount over the value range: one pass
            c = np.bincount((values.ravel() - lo).astype(np.int64), minlength=hi - lo + 1)
            ge = np.concatenate([np.cumsum(c[::-1])[::-1], [0]])  # ge[i] = #values >= lo + i
            idx = np.clip(t.astype(np.int64) - lo, 0, hi - lo + 1)
            return ge[idx]
    # k = number of thresholds <= value  ->  value counts for thresholds 0..k-1
    k = np.searchsorted(t, values.ravel(), side="right")
    c = np.bincount(k, minlength=len(t) + 1)
    return np.cumsum(c[::-1])[::-1][1:]


def dice_curve(image: np.ndarray, label: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Dice of ``image >= t`` against ``label`` for each threshold ``t`` (sorted ascending).

    Parameters
    ----------
    image : (Z, Y, X) ndarray
        Intensities (HU) or a vesselness map.
    label : (Z, Y, X) ndarray of bool or 0/1
    thresholds : (K,) ndarray, sorted ascending

    Returns
    -------
    (K,) ndarray of float
        Dice per threshold (1.0 where label and segmentation are both empty).
    """
    image, label = _check_pair(image, label)
    t = np.asarray(thresholds, dtype=float)
    if np.any(np.diff(t) < 0):
        raise ValueError("thresholds must be sorted ascending")
    return _dice(image, label, t, int(np.count_nonzero(label)))


def _dice(values: np.ndarray, label: np.ndarray, t: np.ndarray, n_lab: int) -> np.ndarray:
    n_pred = _count_ge(values, t)
    tp = _count_ge(values[label], t)
    den = n_pred + n_lab
    return np.where(den > 0, 2.0 * tp / np.maximum(den, 1), 1.0)


def best_threshold_segmentation(image: np.ndarray, label: np.ndarray, *,
                                thresholds: np.ndarray | None = None) -> tuple[float, float]:
    """Oracle global threshold: the ``t`` maximising Dice of ``image >= t`` on this case.

    Parameters
    ----------
    image : (Z, Y, X) ndarray
        CT in HU (integer images are searched at every integer HU in the label's range).
    label : (Z, Y, X) ndarray of bool or 0/1
        Ground truth; must not be empty.
    thresholds : (K,) ndarray, optional
        Candidate thresholds; default :func:`threshold_grid`.

    Returns
    -------
    threshold : float
        The lowest threshold reaching the best Dice.
    dice : float
    """
    image, label = _check_pair(image, label)
    t = threshold_grid([image], [label]) if thresholds is None else np.sort(np.asarray(thresholds, float))
    d = dice_curve(image, label, t)
    k = int(np.argmax(d))
    return float(t[k]), float(d[k])


def fit_threshold(images: Sequence[np.ndarray], labels: Sequence[np.ndarray], *,
                  thresholds: np.ndarray | None = None) -> tuple[float, float]:
    """Non-oracle threshold: maximise the mean Dice over training cases.

    Parameters
    ----------
    images, labels : sequences of (Z, Y, X) ndarray
        Training images (HU or vesselness) and their labels; shapes may differ between cases.
    thresholds : (K,) ndarray, optional
        Candidates; default :func:`threshold_grid` of all cases together.

    Returns
    -------
    threshold : float
    mean_train_dice : float
    """
    images, labels = list(images), list(labels)
    if not images or len(images) != len(labels):
        raise ValueError(f"need the same number (>0) of images and labels, got {len(images)} and {len(labels)}")
    t = threshold_grid(images, labels) if thresholds is None else np.sort(np.asarray(thresholds, float))
    mean = np.mean([dice_curve(im, lab, t) for im, lab in zip(images, labels)], axis=0)
    k = int(np.argmax(mean))
    return float(t[k]), float(mean[k])


def apply_threshold(image: np.ndarray, threshold: float) -> np.ndarray:
    """Segmentation ``image >= threshold`` as a (Z, Y, X) bool array."""
    return np.asarray(image) >= threshold


# ---- Frangi -------------------------------------------------------------------------------
def label_box(label: np.ndarray, *, spacing: Sequence[float], margin_mm: float = 10.0) -> tuple[slice, ...]:
    """Bounding box of ``label`` grown by ``margin_mm`` on every side, clipped to the array."""
    idx = np.argwhere(np.asarray(label) != 0)
    if idx.size == 0:
        raise ValueError("label is empty; no box to restrict to")
    m = np.ceil(margin_mm / np.asarray(spacing, float)).astype(int)
    lo = np.maximum(idx.min(0) - m, 0)
    hi = np.minimum(idx.max(0) + m + 1, label.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _rescale(arr: np.ndarray, step: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    # output[o] = arr[o * step] (linear): a separable, memory-light resampling
    return ndimage.affine_transform(arr, step, output_shape=shape, order=1, mode="nearest")


def vesselness(image: np.ndarray, *, spacing: Sequence[float], sigmas_mm: Sequence[float] = (0.5, 1.0, 1.5, 2.0),
               black_ridges: bool = False, work_spacing: float | None = None) -> np.ndarray:
    """Frangi vesselness of a (cropped) volume with anisotropic spacing, on its own grid.

    :func:`skimage.filters.frangi` assumes isotropic voxels, so the image is linearly
    resampled to ``work_spacing`` mm (default: the finest spacing), filtered with
    ``sigmas_mm / work_spacing`` voxel scales, and resampled back. Cost and memory grow
    with the voxel count at ``work_spacing`` (about 1 GB per 10 M voxels): crop first.

    Parameters
    ----------
    image : (Z, Y, X) ndarray
    spacing : tuple of 3 float, mm (array order)
    sigmas_mm : sequence of float, mm
        Gaussian scales; a tube of radius r responds most at sigma ~ r / sqrt(2).
    black_ridges : bool
        False for bright (contrast-filled) vessels.
    work_spacing : float, mm, optional

    Returns
    -------
    (Z, Y, X) ndarray of float32, >= 0
    """
    from skimage.filters import frangi

    sp = np.asarray(spacing, float)
    iso = float(work_spacing) if work_spacing else float(sp.min())
    img = np.asarray(image, dtype=np.float32)
    shape_iso = tuple(int(np.floor((n - 1) * s / iso)) + 1 for n, s in zip(img.shape, sp))
    same = shape_iso == img.shape and np.allclose(sp, iso)
    work = img if same else _rescale(img, iso / sp, shape_iso)
    v = frangi(work, sigmas=[s / iso for s in sigmas_mm], black_ridges=black_ridges).astype(np.float32)
    if not same:
        v = _rescale(v, sp / iso, img.shape)
    return np.maximum(v, 0, out=v)


def frangi_segmentation(image: np.ndarray, *, spacing: Sequence[float],
                        sigmas_mm: Sequence[float] = (0.5, 1.0, 1.5, 2.0), black_ridges: bool = False,
                        label: np.ndarray | None = None, roi: tuple[slice, ...] | None = None,
                        margin_mm: float = 10.0, work_spacing: float | None = None
                        ) -> tuple[np.ndarray, float | None, float | None]:
    """Frangi vesselness over a region, plus the oracle threshold when ``label`` is given.

    The filter runs only inside ``roi`` (default: the label's bounding box grown by
    ``margin_mm``, i.e. an oracle heart-region crop; with neither, the whole image), at
    ``work_spacing`` (see :func:`vesselness`). Outside the region vesselness is 0.

    Parameters
    ----------
    image : (Z, Y, X) ndarray, HU
    spacing : tuple of 3 float, mm (array order)
    sigmas_mm, black_ridges, work_spacing
        See :func:`vesselness`.
    label : (Z, Y, X) ndarray of bool or 0/1, optional
        Ground truth: the threshold maximising Dice on the whole volume is returned.
    roi : tuple of slices, optional
        Region to filter.
    margin_mm : float
        Margin around the label's box when ``roi`` is not given.

    Returns
    -------
    vesselness : (Z, Y, X) ndarray of float32
    threshold : float or None
        Best threshold (``vesselness >= threshold``), ``None`` without ``label``.
    dice : float or None
    """
    image = np.asarray(image)
    if label is not None:
        image, label = _check_pair(image, label)
    if roi is None:
        roi = (label_box(label, spacing=spacing, margin_mm=margin_mm) if label is not None and label.any()
               else tuple(slice(0, n) for n in image.shape))
    out = np.zeros(image.shape, np.float32)
    out[roi] = vesselness(image[roi], spacing=spacing, sigmas_mm=sigmas_mm, black_ridges=black_ridges,
                          work_spacing=work_spacing)
    if label is None:
        return out, None, None
    vals = out[roi]
    lab_in = label[roi]
    t = threshold_grid([vals], [lab_in]) if lab_in.any() else np.array([np.inf])
    t = t[t > 0] if np.any(t > 0) else np.array([np.inf])  # t <= 0 would select the whole scan
    # label voxels outside the region are false negatives for every t > 0
    d = _dice(vals, lab_in, t, int(np.count_nonzero(label)))
    k = int(np.argmax(d))
    return out, float(t[k]), float(d[k])

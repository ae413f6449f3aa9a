"""Per-scan HU referencing: map each scan's fat and blood-pool levels onto fixed values.

A global clip-and-standardise (:mod:`coroseg.data.preprocess`) assumes every scan shares one HU
scale. Real CTCA does not: the bolus puts the blood pool anywhere from ~150 to ~900 HU, scanners
differ in calibration by tens of HU, and a network trained on one range reads a brighter
myocardium as vessel or a dimmer lumen as tissue. Here each scan's own **fat** and **blood-pool**
levels are measured and the scan is mapped linearly so that they land on :data:`FAT_HU` and
:data:`BLOOD_HU` — the same two anchors for training cases and for every scan at inference —
before the run's clip-and-standardise; a dim scan is stretched, a bright one only shifted (its
fat onto :data:`FAT_HU`), never compressed (:data:`MIN_GAIN`). The idea is the usual one in contrast CT (intensities
referenced to the aortic blood pool); the estimator is kept simple and explainable:

1. average the scan into ~2 mm blocks and smooth it (noise ~10x lower);
2. keep body voxels (> -500 HU: no air, no lung) whose 10 mm neighbourhood is *flat*
   (max - min below :data:`FLAT_RANGE_HU`): the interiors of large compartments (fat, muscle,
   liver, chambers, aorta), not edges, vessels, ribs or cortical bone;
3. find the peaks of their histogram; the **fat** level is the lowest peak and the **blood**
   level the brightest one that hold at least :data:`MIN_PEAK_SHARE` of those voxels (bone
   marrow and a dense superior vena cava are brighter but hold less).

When the two levels cannot be found, or lie too close to each other (no contrast?), the scan is
left as it is and the reason is returned, so callers can warn instead of guessing.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from coroseg.io.volume import Volume

#: the anchors every scan is mapped onto (HU): the middle of the phantom's fat and aorta ranges
FAT_HU = -90.0
BLOOD_HU = 440.0
#: block size the scan is averaged into before the histogram
BLOCK_MM = 2.0
#: a voxel is "flat" when its 5-block (10 mm) neighbourhood spans less than this (HU)
FLAT_RANGE_HU = 150.0
#: a histogram peak counts when this share of the flat body voxels lies within +-PEAK_HALF_WIDTH_HU
MIN_PEAK_SHARE = 0.02
PEAK_HALF_WIDTH_HU = 40.0
#: blood must lie at least this far above fat, else the scan is left unreferenced
MIN_SEPARATION_HU = 120.0
#: the map only ever stretches: a scan whose blood pool is brighter than BLOOD_HU above fat keeps its
#: contrast (gain 1, only shifted so its fat sits at FAT_HU). Compressing bright scans onto BLOOD_HU cost
#: 0.2-0.3 Dice on strong-bolus cases (docs/results/generalisation.md, section 5)
MIN_GAIN = 1.0
#: a larger stretch than this is not trusted (a mis-measured level); the scan is left as it is
MAX_GAIN = 4.0


@dataclasses.dataclass(frozen=True)
class ScanLevels:
    """A scan's measured fat and blood-pool levels (HU) and the linear map that references it.

    ``problem`` is None when both were found; otherwise it says why not, and the map is the
    identity (``gain`` 1, ``shift`` 0).
    """

    fat: float | None
    blood: float | None
    gain: float = 1.0
    shift: float = 0.0
    problem: str | None = None

    def apply(self, array: np.ndarray) -> np.ndarray:
        """``gain * array + shift`` as float32 (a new array)."""
        out = np.asarray(array, dtype=np.float32) * np.float32(self.gain)
        out += np.float32(self.shift)
        return out

    @property
    def warning(self) -> str | None:
        """The one-line warning for a scan left unreferenced, else None."""
        return None if self.problem is None else f"HU levels not referenced ({self.problem}); the scan is used as it is"

    def summary(self) -> dict:
        """What ``summary.json`` records as ``hu_levels``."""
        return {"fat": self.fat, "blood": self.blood, "gain": round(self.gain, 4), "shift": round(self.shift, 2)}


def _block_mean(array: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    """Mean over ``factors``-sized blocks (the partial blocks at the far edges are dropped)."""
    shape = [max(1, n // f) for n, f in zip(array.shape, factors)]
    cut = array[tuple(slice(0, s * f) for s, f in zip(shape, factors))]
    f = [min(f, n) for f, n in zip(factors, cut.shape)]
    return cut.reshape(shape[0], f[0], shape[1], f[1], shape[2], f[2]).mean(axis=(1, 3, 5), dtype=np.float32)


def measure_levels(vol: Volume) -> ScanLevels:
    """The fat and blood-pool levels of an HU scan and the map onto (:data:`FAT_HU`, :data:`BLOOD_HU`)
    (a blood pool brighter than that keeps its contrast: :data:`MIN_GAIN`).

    Parameters
    ----------
    vol : Volume
        CT in HU, any spacing.

    Returns
    -------
    ScanLevels
        With ``problem`` set (and an identity map) when the levels could not be measured.
    """
    from scipy import ndimage, signal

    factors = tuple(max(1, int(round(BLOCK_MM / float(s)))) for s in vol.spacing)
    small = ndimage.gaussian_filter(_block_mean(np.asarray(vol.array), factors), 1.0)
    if min(small.shape) < 5:
        return ScanLevels(None, None, problem=f"scan too small to measure its levels ({vol.array.shape})")
    spread = ndimage.maximum_filter(small, size=5) - ndimage.minimum_filter(small, size=5)
    values = small[(small > -500.0) & (spread < FLAT_RANGE_HU)]
    if values.size < 200:
        return ScanLevels(None, None, problem="too few homogeneous body voxels to measure the fat and blood levels")
    edges = np.arange(-500.0, 3000.0 + 10.0, 10.0)
    hist = np.histogram(values, bins=edges)[0].astype(float)
    smooth = ndimage.gaussian_filter1d(hist, 1.5)
    peaks = signal.find_peaks(smooth, prominence=0.02 * smooth.max())[0]
    centres = edges[:-1] + 5.0
    half = int(round(PEAK_HALF_WIDTH_HU / 10.0))
    shares = [hist[max(0, i - half):i + half + 1].sum() / values.size for i in peaks]
    kept = [float(centres[i]) for i, s in zip(peaks, shares) if s >= MIN_PEAK_SHARE]
    if len(kept) < 2:
        return ScanLevels(None, None, problem=f"found {len(kept)} tissue level(s), need fat and blood pool")
    fat, blood = min(kept), max(kept)
    if blood - fat < MIN_SEPARATION_HU:
        return ScanLevels(fat, blood, problem=f"blood pool ({blood:.0f} HU) less than {MIN_SEPARATION_HU:.0f} HU "
                                              f"above fat ({fat:.0f} HU): no contrast to reference")
    gain = max((BLOOD_HU - FAT_HU) / (blood - fat), MIN_GAIN)
    if gain > MAX_GAIN:
        return ScanLevels(fat, blood, problem=f"referencing would scale the scan by {gain:.2f}x")
    return ScanLevels(fat, blood, gain=float(gain), shift=float(FAT_HU - gain * fat))


def reference_volume(vol: Volume) -> tuple[Volume, ScanLevels]:
    """``vol`` mapped so its fat and blood pool sit at (:data:`FAT_HU`, :data:`BLOOD_HU`), and the levels.

    Unchanged (the same object) when the levels could not be measured (``levels.problem``).
    """
    levels = measure_levels(vol)
    if levels.problem is not None:
        return vol, levels
    return vol.with_array(levels.apply(vol.array)), levels


def network_input(vol: Volume, intensity: dict) -> tuple[Volume, ScanLevels | None]:
    """``vol`` as the networks of a run with this ``intensity`` setting see it: referenced
    (:func:`reference_volume`) when ``intensity["reference"]``, else as it is (levels ``None``)."""
    if not intensity.get("reference"):
        return vol, None
    return reference_volume(vol)


__all__ = ["FAT_HU", "BLOOD_HU", "ScanLevels", "measure_levels", "reference_volume", "network_input"]

"""Random parameters of one phantom case, drawn once from a :class:`numpy.random.Generator`.

Everything random about a case lives in :class:`CaseParams`: scalar choices (sizes, angles,
HU levels, noise) are stored explicitly; high-dimensional noise (path tortuosity, tissue
texture, image noise) is stored as integer sub-seeds. :func:`render_case` builds the case
deterministically from the parameters, so ``CaseParams.to_dict()`` in the manifest replays
the case exactly (``CaseParams.from_dict``).

Ranges are deliberately *wider* than a typical CTCA (contrast 180-700 HU, noise 10-60 HU,
blur 0.25-0.75 mm, heart size +-20 %, free pose) so that models trained on the phantom meet
real scans inside the training distribution; the issue's nominal ranges sit in the middle.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from coroseg.choices import Preset

PRESETS = tuple(p.value for p in Preset)  # small, asoca


@dataclass
class GridParams:
    """Voxel grid. ``n_z`` is derived at render time from the tree extent (within bounds)."""

    preset: str
    spacing_xy: float  # mm, in-plane
    spacing_z: float  # mm, slice
    n_xy: int  # in-plane voxels (square)
    n_z_min: int
    n_z_max: int
    margin_z_mm: float  # slices kept above/below the coronary tree
    offset_mm: tuple[float, float, float]  # tree centre relative to the FOV centre (x, y, z)


@dataclass
class HeartParams:
    length_mm: float  # base (AV groove) to apex
    lv_radius_mm: float  # LV epicardial short-axis radius
    rv_radius_mm: float
    azimuth_deg: float  # long axis in the axial plane, from anterior towards patient left
    elevation_deg: float  # long axis below the axial plane
    roll_deg: float  # rotation about the long axis
    lv_wall_mm: float
    rv_wall_mm: float
    atrium_scale: float
    epicardial_fat_mm: float  # fat layer between myocardium and pericardium
    pericardial_fat_mm: float  # fat outside the pericardium
    aortic_root_radius_mm: float
    aorta_radius_mm: float
    pulmonary_trunk_radius_mm: float
    papillary: bool
    appendage: bool  # left atrial appendage (a bright pouch next to the LM/LCx)


@dataclass
class TreeParams:
    murray_exponent: float
    dominance: str  # "right" | "left"
    r_left_ostium_mm: float
    r_right_ostium_mm: float
    r_end_mm: float  # distal radius the main vessels taper to
    lm_length_mm: float
    lcx_lad_ratio: float  # r_LCx / r_LAD just after the left main bifurcation
    side_ratio: tuple[float, float]  # side-branch radius / parent radius range
    lad_extent: float  # fraction of the base-apex length the LAD reaches (may wrap the apex)
    lcx_extent_deg: float  # how far the LCx runs round the left AV groove
    rca_extent_deg: float
    pda_extent: float
    n_diagonals: int
    n_obtuse_marginals: int
    n_acute_marginals: int
    tortuosity_mm: float  # amplitude of the sideways meander on the surface
    tortuosity_wavelength_mm: float
    elevation_mm: float  # extra height of the centerline above the epicardium (beyond r)
    n_twigs: int  # small unlabelled arteries (r < 0.55 mm) and septal perforators
    seed: int  # branch positions, angles and meanders


@dataclass
class VeinParams:
    """Cardiac veins: unlabelled distractors beside the arteries."""

    r_distal_mm: float
    r_sinus_mm: float  # coronary sinus (<= 3 mm)
    hu: float
    gap_mm: float  # surface-to-surface gap to the artery they accompany
    side_deg: float  # which side of the LAD the great cardiac vein runs (+/-)
    middle_vein: bool
    small_cardiac_vein: bool
    follow_fraction: float  # fraction of side branches with a vein beside them


@dataclass
class Lesion:
    vessel: str  # LAD, LCx, RCA, ...
    position: float  # fraction of the vessel length
    length_mm: float
    severity: float  # lumen diameter reduction, 0-1
    kind: str  # "soft" | "calcified" | "mixed"
    plaque_hu: float
    calcium_hu: float
    angle_deg: float  # eccentricity direction about the vessel
    remodelling: float  # outer-wall growth, fraction of the nominal radius


@dataclass
class DiseaseParams:
    lesions: list[Lesion] = field(default_factory=list)
    bloom_mm: float = 0.0  # extra soft edge of calcium (blooming)


@dataclass
class ContrastParams:
    """HU levels. Coronary lumen at the ostium equals the aortic root."""

    aorta: float
    lv_offset: float  # LV/LA blood relative to the aorta
    right_heart: float  # RA/RV/pulmonary trunk (dimmer, mixing)
    svc: float  # dense contrast in the superior vena cava (or washed out)
    ivc: float
    mixing_hu: float  # swirl amplitude in the right heart
    distal_falloff: float  # fraction of lumen HU lost at the distal end
    myocardium: float
    fat: float
    lung: float
    lung_vessel: float
    muscle: float
    liver: float
    bone_cortex: float
    bone_marrow: float
    wall_hu: float  # normal vessel wall


@dataclass
class ChestParams:
    body_rx_mm: float
    retrosternal_mm: float  # gap between the pericardial fat and the anterior chest wall
    body_dx_mm: float  # body midline (x) relative to the heart base centre
    spine_gap_mm: float  # left atrium back wall to the vertebral body
    subcut_fat_mm: float
    wall_mm: float  # chest-wall thickness (muscle + ribs)
    rib_pitch_mm: float
    rib_radius_mm: float
    rib_phase_mm: float
    spine_radius_mm: float
    dome_dz_mm: float  # diaphragm dome top relative to the heart's lowest point
    n_lung_trees: int


@dataclass
class ImageParams:
    psf_sigma_mm: float
    noise_sigma_hu: float
    noise_corr_mm: float
    motion_blur_mm: float  # 0 = none
    motion_axis: int  # array axis blurred (1 = y, 2 = x)
    streak_hu: float  # streak amplitude from dense contrast in the SVC
    noise_seed: int
    texture_seed: int
    hu_offset: float = 0.0  # added to every voxel (scanner calibration); 0 in the training draw


@dataclass
class CaseParams:
    case_id: str
    diseased: bool
    grid: GridParams
    heart: HeartParams
    tree: TreeParams
    veins: VeinParams
    disease: DiseaseParams
    contrast: ContrastParams
    chest: ChestParams
    image: ImageParams
    anatomy_case: str | None = None  # real tree (anatomy mode): file stem

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CaseParams:
        d = dict(d)
        disease = dict(d["disease"])
        disease["lesions"] = [Lesion(**x) for x in disease["lesions"]]
        grid = dict(d["grid"])
        grid["offset_mm"] = tuple(grid["offset_mm"])
        tree = dict(d["tree"])
        tree["side_ratio"] = tuple(tree["side_ratio"])
        return cls(
            case_id=d["case_id"], diseased=d["diseased"], grid=GridParams(**grid),
            heart=HeartParams(**d["heart"]), tree=TreeParams(**tree), veins=VeinParams(**d["veins"]),
            disease=DiseaseParams(**disease), contrast=ContrastParams(**d["contrast"]),
            chest=ChestParams(**d["chest"]), image=ImageParams(**d["image"]),
            anatomy_case=d.get("anatomy_case"))


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(round(rng.uniform(lo, hi), 4))


def sample_case_params(rng: np.random.Generator, preset: str = "small", diseased: bool = False,
                       *, case_id: str = "case", anatomy_case: str | None = None) -> CaseParams:
    """Draw every random parameter of one case.

    Parameters
    ----------
    rng : numpy.random.Generator
        The only source of randomness; the same generator state gives the same parameters.
    preset : {"small", "asoca"}
        ``asoca``: 512 x 512 x 160-260 voxels, 0.33-0.45 mm in-plane, 0.625 mm slices.
        ``small``: the same anatomy at 0.8-1.0 mm, at most 160 voxels per axis.
    diseased : bool
        Draw 1-4 lesions (stenoses with soft, calcified or mixed plaque).
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, not {preset!r}")
    if preset == "asoca":
        sp_xy = _u(rng, 0.33, 0.45)
        grid = GridParams(preset, sp_xy, 0.625, 512, 160, 260, _u(rng, 8, 25),
                          (_u(rng, -12, 12), _u(rng, -12, 12), _u(rng, -4, 4)))
    else:
        sp_xy = _u(rng, 0.8, 1.0)
        grid = GridParams(preset, sp_xy, _u(rng, 0.8, 1.0), int(rng.integers(144, 161)), 96, 160,
                          _u(rng, 4, 12), (_u(rng, -6, 6), _u(rng, -6, 6), _u(rng, -3, 3)))
    size = rng.uniform(0.9, 1.2)  # global heart scale
    heart = HeartParams(
        length_mm=_u(rng, 80, 94) * size, lv_radius_mm=_u(rng, 31, 38) * size,
        rv_radius_mm=_u(rng, 30, 38) * size, azimuth_deg=_u(rng, 25, 60), elevation_deg=_u(rng, 15, 40),
        roll_deg=_u(rng, -20, 20), lv_wall_mm=_u(rng, 7, 13), rv_wall_mm=_u(rng, 2.5, 5),
        atrium_scale=_u(rng, 0.85, 1.2), epicardial_fat_mm=_u(rng, 0.5, 6),
        pericardial_fat_mm=_u(rng, 1, 14), aortic_root_radius_mm=_u(rng, 13, 18),
        aorta_radius_mm=_u(rng, 12, 18), pulmonary_trunk_radius_mm=_u(rng, 11, 15),
        papillary=bool(rng.random() < 0.8), appendage=bool(rng.random() < 0.85))
    tree = TreeParams(
        murray_exponent=_u(rng, 2.2, 2.7), dominance="right" if rng.random() < 0.8 else "left",
        r_left_ostium_mm=_u(rng, 1.7, 2.5), r_right_ostium_mm=_u(rng, 1.5, 2.3), r_end_mm=_u(rng, 0.45, 0.7),
        lm_length_mm=_u(rng, 5, 15), lcx_lad_ratio=_u(rng, 0.65, 1.0), side_ratio=(0.45, 0.8),
        lad_extent=_u(rng, 0.8, 1.05), lcx_extent_deg=_u(rng, 50, 110), rca_extent_deg=_u(rng, 120, 175),
        pda_extent=_u(rng, 0.4, 0.75), n_diagonals=int(rng.integers(1, 4)),
        n_obtuse_marginals=int(rng.integers(1, 4)), n_acute_marginals=int(rng.integers(1, 3)),
        tortuosity_mm=_u(rng, 0.5, 3.5), tortuosity_wavelength_mm=_u(rng, 12, 35),
        elevation_mm=_u(rng, 0.2, 2.0), n_twigs=int(rng.integers(6, 30)),
        seed=int(rng.integers(2**31)))
    aorta = _u(rng, 180, 700)
    # venous enhancement: usually 100-320 HU; in a late acquisition nearly arterial (30 % of cases)
    vein_hu = _u(rng, 100, 320) if rng.random() < 0.7 else _u(rng, 0.6, 0.95) * aorta
    veins = VeinParams(r_distal_mm=_u(rng, 0.9, 1.4), r_sinus_mm=_u(rng, 2.0, 3.0), hu=vein_hu,
                       gap_mm=_u(rng, 0.6, 3.5), side_deg=float(rng.choice([-1.0, 1.0])),
                       middle_vein=bool(rng.random() < 0.85), small_cardiac_vein=bool(rng.random() < 0.6),
                       follow_fraction=_u(rng, 0.3, 1.0))
    contrast = ContrastParams(
        aorta=aorta, lv_offset=_u(rng, -40, 30), right_heart=_u(rng, 0.3, 0.95) * aorta,
        svc=_u(rng, 80, 1600), ivc=_u(rng, 60, 160), mixing_hu=_u(rng, 20, 140),
        distal_falloff=_u(rng, 0.0, 0.4), myocardium=_u(rng, 80, 160), fat=_u(rng, -125, -55),
        lung=_u(rng, -900, -780), lung_vessel=_u(rng, 0.35, 0.9) * aorta, muscle=_u(rng, 35, 75),
        liver=_u(rng, 60, 130), bone_cortex=_u(rng, 700, 1300), bone_marrow=_u(rng, 150, 350),
        wall_hu=_u(rng, 40, 110))
    chest = ChestParams(
        body_rx_mm=_u(rng, 120, 160), retrosternal_mm=_u(rng, 2, 20), body_dx_mm=_u(rng, -25, 5),
        spine_gap_mm=_u(rng, 4, 18), subcut_fat_mm=_u(rng, 4, 30), wall_mm=_u(rng, 12, 25),
        rib_pitch_mm=_u(rng, 24, 34), rib_radius_mm=_u(rng, 3.5, 5.5), rib_phase_mm=_u(rng, 0, 30),
        spine_radius_mm=_u(rng, 15, 21), dome_dz_mm=_u(rng, -10, 15), n_lung_trees=int(rng.integers(24, 40)))
    motion = _u(rng, 0.2, 1.0) if rng.random() < 0.35 else 0.0
    image = ImageParams(
        psf_sigma_mm=_u(rng, 0.25, 0.75), noise_sigma_hu=_u(rng, 10, 60), noise_corr_mm=_u(rng, 0.3, 0.9),
        motion_blur_mm=motion, motion_axis=int(rng.integers(1, 3)),
        streak_hu=_u(rng, 0, 1) * max(0.0, contrast.svc - 300) * 0.25,
        noise_seed=int(rng.integers(2**31)), texture_seed=int(rng.integers(2**31)))
    disease = DiseaseParams()
    if diseased:
        disease = DiseaseParams(lesions=[_lesion(rng) for _ in range(int(rng.integers(1, 5)))],
                                bloom_mm=_u(rng, 0.2, 0.8))
    return CaseParams(case_id, diseased, grid, heart, tree, veins, disease, contrast, chest, image, anatomy_case)


def _lesion(rng: np.random.Generator) -> Lesion:
    vessel = str(rng.choice(["LAD", "LAD", "LCx", "RCA", "RCA", "LM", "D1", "OM1"]))
    kind = str(rng.choice(["soft", "calcified", "mixed"]))
    return Lesion(vessel=vessel, position=_u(rng, 0.1, 0.7), length_mm=_u(rng, 3, 14),
                  severity=_u(rng, 0.3, 0.9), kind=kind, plaque_hu=_u(rng, 25, 85),
                  calcium_hu=_u(rng, 600, 1500), angle_deg=_u(rng, 0, 360), remodelling=_u(rng, 0.0, 0.4))

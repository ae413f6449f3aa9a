"""Anatomy mode: CT around a real ASOCA tree; the label is the real mask on the preset grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from coroseg.errors import InputError
from coroseg.io.volume import read_volume, resample_to_grid
from coroseg.synth.anatomy import STRUCTURES
from coroseg.synth.dataset import case_params
from coroseg.synth.realtree import list_anatomy_cases, render_anatomy_case

REPO = Path(__file__).resolve().parents[2]
ANATOMY = (REPO / ".." / "shared" / "data" / "asoca-anatomy").resolve()
needs_anatomy = pytest.mark.skipif(not ANATOMY.exists(), reason="../shared/data/asoca-anatomy is absent")


def test_list_anatomy_cases_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="Annotations/ and Centerlines/"):
        list_anatomy_cases(tmp_path)
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.nrrd").write_bytes(b"")
    with pytest.raises(InputError, match="no Annotations/<id>.nrrd with a matching"):
        list_anatomy_cases(tmp_path)


@needs_anatomy
@pytest.mark.shared
def test_render_around_real_tree() -> None:
    cases = list_anatomy_cases(ANATOMY)
    assert len(cases) == 12
    ann = cases[0]
    p = case_params(0, seed=0, preset="small", group="Normal", anatomy_case=ann.stem)
    p.grid.spacing_xy = p.grid.spacing_z = 1.3  # coarse, for speed
    ph = render_anatomy_case(p, ann)
    real = read_volume(ann, is_label=True)
    expected = resample_to_grid(real, ph.label, order=0).array > 0
    np.testing.assert_array_equal(ph.label.array > 0, expected)
    assert ph.image.array.dtype == np.int16 and ph.image.same_grid(ph.label)
    # the lumen is bright, and the chest around it is there
    lumen = ph.image.array[ph.label.array > 0]
    assert np.median(lumen) > p.contrast.aorta * 0.4
    sid = ph.structures.array
    for name in ("lung", "myocardium", "left_blood", "fat"):
        assert (sid == STRUCTURES[name]).sum() > 100, name
    assert not ((sid == STRUCTURES["vein"]) & (ph.label.array > 0)).any()

"""write_report on a hand-made run + test folder; markdown tables; case discovery."""

from __future__ import annotations

import re

import pytest

from coroseg.errors import InputError
from coroseg.report.html import find_case_triplets, markdown_to_html, write_report


def test_find_case_triplets_prefers_auto(fake_run):
    _, test, data = fake_run
    cases = find_case_triplets(test, data)
    assert [c.case_id for c in cases] == ["Normal_1", "Normal_2"]
    assert cases[0].pred == test / "pred" / "auto" / "Normal_1_seg.nrrd"
    assert cases[0].image == data / "test" / "Normal" / "CTCA" / "Normal_1.nrrd"
    assert cases[1].label == data / "test" / "Normal" / "Annotations" / "Normal_2.nrrd"
    assert find_case_triplets(test)[0].image is None  # no dataset given
    with pytest.raises(InputError, match="test folder not found"):
        find_case_triplets(test / "nope")


def test_markdown_table():
    out = markdown_to_html("## T\n\n| a | b |\n|---|--:|\n| `x` | **2** |\n\ntext *it*")
    assert "<h4>T</h4>" in out
    assert '<th style="text-align:right">b</th>' in out
    assert "<td><code>x</code></td>" in out and "<strong>2</strong>" in out
    assert "<p>text <em>it</em></p>" in out
    assert markdown_to_html("<script>") == "<p>&lt;script&gt;</p>"


def test_write_report(fake_run):
    run, test, _ = fake_run
    out = write_report(run, test_dir=test, max_cases=2, max_3d=1)  # data dir from config.json
    assert out == test / "report.html"
    page = out.read_text(encoding="utf-8")
    for value in ("0.812", "0.701", "0.846", "∞", "0.7568 ± 0.0556", "unet3d_crop", "16 × 16 × 16"):
        assert value in page, value
    # curves + 2 overlays + crops-vs-grid still (+ GIFs: one 3D, one crops)
    assert page.count("data:image/png;base64") == 4
    assert page.count("data:image/gif;base64") == 2
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)  # nothing external
    assert "http://" not in page and "https://" not in page
    figs = sorted(p.name for p in (test / "figures").iterdir())
    assert figs == ["Normal_1_3d.gif", "Normal_1_3d.png", "Normal_1_crops.gif", "Normal_1_crops_vs_grid.png",
                    "Normal_1_overlay.png", "Normal_2_overlay.png", "training_curves.png"]


def test_write_report_run_only(tmp_path, fake_run):
    run, _, _ = fake_run
    (run / "config.json").unlink()
    out = write_report(run, tmp_path / "r.html")
    page = out.read_text(encoding="utf-8")
    assert "no config.json" in page
    assert page.count("data:image/png;base64") == 1  # training curves only
    with pytest.raises(InputError, match="run folder not found"):
        write_report(tmp_path / "missing")


def test_write_report_explicit_cases_without_image(tmp_path, fake_run):
    run, test, _ = fake_run
    pred = test / "pred" / "oracle" / "Normal_2_seg.nrrd"
    out = write_report(run, tmp_path / "r.html", cases=[("Normal_2", None, pred, None)], crop_figures=False)
    page = out.read_text(encoding="utf-8")
    assert "Normal_2: no image found" in page  # overlay skipped, said so
    assert "prediction (no ground truth)" in page
    assert page.count("data:image/gif;base64") == 1


def test_case_arrays_resamples_pred_onto_image_grid(tmp_path, volumes):
    import numpy as np

    from coroseg.io.volume import Volume, write_volume
    from coroseg.report.html import CaseFiles, _case_arrays

    image, _, ref = volumes
    write_volume(Volume(image, (1.0, 0.8, 0.8)), tmp_path / "img.nrrd")
    # prediction on a grid twice as coarse in-plane (e.g. the model grid), same origin
    coarse = ref[:, ::2, ::2].astype(np.uint8)
    write_volume(Volume(coarse, (1.0, 1.6, 1.6), is_label=True), tmp_path / "p.nrrd")
    img, pred, lab, spacing, _ = _case_arrays(CaseFiles("c", tmp_path / "img.nrrd", tmp_path / "p.nrrd", None))
    assert pred.shape == img.shape == ref.shape and lab is None
    assert spacing == (1.0, 0.8, 0.8)
    assert np.array_equal(pred[:, ::2, ::2], coarse > 0)  # nearest neighbour: coarse voxels land on even indices

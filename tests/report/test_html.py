"""write_report on a hand-made run + test folder; markdown tables; case discovery."""

from __future__ import annotations

import json
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
    assert markdown_to_html("<script>").strip() == "<p>&lt;script&gt;</p>"  # raw HTML is escaped


def _hrefs(page: str) -> list[str]:
    return re.findall(r'href="([^"]+)"', page)


def test_write_report(fake_run):
    run, test, _ = fake_run
    out = write_report(run, test_dir=test, max_cases=2, max_3d=1)  # data dir from config.json
    assert out == test / "report.html"
    page = out.read_text(encoding="utf-8")
    for value in ("0.812", "0.701", "0.846", "∞", "0.7568 ± 0.0556", "unet3d_crop", "16 × 16 × 16"):
        assert value in page, value
    # curves, 2 overlays, 2 radius profiles, one 3D view, the crops still and GIF: all inline, as WebP
    assert page.count('src="data:image/') == 8
    assert page.count('src="data:image/webp;base64') == 8
    assert not re.search(r"""src=["'](?!data:)""", page)  # every picture inline
    assert "http://" not in page and "https://" not in page
    figs = sorted(p.name for p in (test / "figures").iterdir())
    assert figs == ["Normal_1_3d.gif", "Normal_1_3d.png", "Normal_1_crops_vs_grid.gif", "Normal_1_crops_vs_grid.png",
                    "Normal_1_overlay.png", "Normal_1_radius.png", "Normal_2_overlay.png", "Normal_2_radius.png",
                    "training_curves.png"]
    # the case table links every case's files, relative to the page
    links = _hrefs(page)
    assert "pred/auto/Normal_1_seg.nrrd" in links and "pred/oracle/Normal_1_seg.nrrd" in links
    assert "../data/test/Normal/CTCA/Normal_2.nrrd" in links and "figures/Normal_2_radius.png" in links
    assert all((out.parent / h).is_file() for h in links)


def test_every_figure_says_which_centerline(fake_run):
    run, test, _ = fake_run
    page = write_report(run, test_dir=test, max_cases=1, max_3d=1).read_text(encoding="utf-8")
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert len(captions) == 4  # training curves, overlay, 3D, radius profile
    assert all("automatic centerline" in c for c in captions[1:])
    # the crop figures: the blind test locator finds nothing, so the crops are the ORACLE's, and it says why
    crops = page[page.index("Centerline crops vs a fixed grid"):]
    assert "placed on the ORACLE reference centerline" in crops
    assert "the locator found no coronary tree on this scan, so the reference centerline" in crops


def test_crops_on_the_automatic_centerline(fake_run, monkeypatch):
    """With a locator that finds the tree, the crops follow the automatic centerline and say so."""
    from coroseg.io.volume import read_volume
    from coroseg.prior.skeleton import centerline_from_mask
    from coroseg.report.crops import crop_plan, crops_caption

    run, test, data = fake_run
    case = find_case_triplets(test, data)[0]
    graph = centerline_from_mask(read_volume(case.label, is_label=True))
    monkeypatch.setattr("coroseg.infer.stages.locate", lambda *a, **k: (None, graph))
    plan = crop_plan(case, run)
    assert plan.source == "auto" and len(plan.crops) > 0
    assert plan.size == (16, 16, 16)  # model patch x model spacing / image spacing (the same here)
    assert "placed on the automatic centerline: the run's automatic centerline" in crops_caption(plan)


def test_report_of_a_coroseg_test_folder(fake_run):
    """`coroseg test` writes pred/ (mode from metrics.csv) and pred-oracle/: both found, both labelled."""
    run, test, data = fake_run
    for cid in ("Normal_1", "Normal_2"):
        (test / "pred" / "auto" / f"{cid}_seg.nrrd").rename(test / "pred" / f"{cid}_seg.nrrd")
        (test / "pred-oracle").mkdir(exist_ok=True)
        (test / "pred" / "oracle" / f"{cid}_seg.nrrd").rename(test / "pred-oracle" / f"{cid}_seg.nrrd")
    for sub in ("auto", "oracle"):
        (test / "pred" / sub).rmdir()
    cases = find_case_triplets(test, data)
    assert [(c.prior, c.pred.parent.name, c.oracle_pred.parent.name) for c in cases] == [
        ("auto", "pred", "pred-oracle"), ("auto", "pred", "pred-oracle")]
    (test / "metrics.csv").write_text("case_id,centerline,dice\nNormal_1,none,0.5\nNormal_2,none,0.4\n")
    assert {c.prior for c in find_case_triplets(test, data)} == {"none"}  # a grid model's predictions


def test_synthetic_data_notice(fake_run, tmp_path):
    from tests.report.conftest import write_manifest

    run, test, data = fake_run
    page = write_report(run, tmp_path / "a.html", test_dir=test, max_cases=0, max_3d=0,
                        crop_figures=False).read_text(encoding="utf-8")
    assert "Synthetic data" not in page  # a dataset without coroseg synth's manifest is not called synthetic
    write_manifest(data)
    page = write_report(run, tmp_path / "b.html", test_dir=test, max_cases=0, max_3d=0,
                        crop_figures=False).read_text(encoding="utf-8")
    assert "The test and training cases are <strong>synthetic CT phantoms</strong>" in page
    assert "2 phantoms (procedural coronary trees; preset small, seed 0)" in page


def test_training_section_epochs_and_why_stopped(fake_run, tmp_path):
    run, _, _ = fake_run
    page = write_report(run, tmp_path / "r.html").read_text(encoding="utf-8")
    # this log has no val_centerline column (a run from before it was recorded): the cell says so
    assert ("<td>model</td><td>3 (60 patches)</td><td>0.735 (epoch 3; centerline not recorded)</td>"
            "<td>patch budget reached (60 patches)</td>") in page
    assert "epochs=100" not in page  # a patch budget sets the epochs: the unused cap is not shown


@pytest.mark.parametrize("source, shown", [("auto", "automatic centerline"), ("reference", "ORACLE centerline"),
                                           ("", "whole volume")])
def test_training_table_names_the_validation_centerline(fake_run, tmp_path, source, shown):
    from coroseg.report.sections import training_rows

    run, _, _ = fake_run
    (run / "metrics.csv").write_text(
        "phase,epoch,step,patches,train_loss,val_dice,val_centerline,lr,seconds,patches_per_s\n"
        "locator,1,10,20,0.9,0.30,,0.001,1.0,20\n"
        f"model,1,10,20,0.9,0.41,{source},0.001,1.0,20\nmodel,2,20,40,0.7,,,0.001,1.0,20\n"
        f"model,3,30,60,0.5,0.7345,{source},0.0005,1.0,20\n")
    rows = {r[0]: r for r in training_rows(json.loads((run / "config.json").read_text()), run)}
    assert rows["model"][2] == f"0.735 (epoch 3; {shown})"
    assert rows["locator"][2] == "0.300 (epoch 1; whole volume)"
    page = write_report(run, tmp_path / "r.html", max_cases=0, max_3d=0, crop_figures=False).read_text()
    assert f"<td>0.735 (epoch 3; {shown})</td>" in page and "best validation Dice (centerline used)" in page


def test_report_size_scales_to_20_cases(tmp_path, fake_run):
    """Inline figures cost < 0.45 MB a case, so 20 fully drawn cases stay under 10 MB."""
    run, test, data = fake_run
    sizes = {}
    for n in (1, 2):
        cases = find_case_triplets(test, data)[:n]
        out = write_report(run, tmp_path / f"r{n}.html", cases=[tuple(c[:4]) + ("auto",) for c in cases],
                           max_cases=n, max_3d=n, crop_figures=False)
        sizes[n] = out.stat().st_size
    per_case = sizes[2] - sizes[1]
    assert per_case < 450_000, per_case
    assert sizes[1] + 19 * per_case < 10_000_000


def test_write_report_run_only(tmp_path, fake_run):
    run, _, _ = fake_run
    (run / "config.json").unlink()
    out = write_report(run, tmp_path / "r.html")
    page = out.read_text(encoding="utf-8")
    assert "no config.json" in page
    assert page.count('src="data:image/') == 1  # training curves only
    with pytest.raises(InputError, match="run folder not found"):
        write_report(tmp_path / "missing")


def test_write_report_explicit_cases_without_image(tmp_path, fake_run):
    run, test, _ = fake_run
    pred = test / "pred" / "oracle" / "Normal_2_seg.nrrd"
    out = write_report(run, tmp_path / "r.html", cases=[("Normal_2", None, pred, None)], crop_figures=False)
    page = out.read_text(encoding="utf-8")
    assert "Normal_2: no image found" in page  # overlay skipped, said so
    assert "prediction (no ground truth)" in page
    assert page.count('src="data:image/') == 2  # the training curves and the 3D view


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

"""Every validation Dice says which centerline its validation used: the epoch line, the curves, metrics.csv."""

from __future__ import annotations

import math
import types

import pytest

from coroseg.train.curves import curves_figure, read_metrics, val_label, val_source, write_metrics
from coroseg.train.phases import Phase


@pytest.mark.parametrize("row, source", [
    ({"val_centerline": "auto"}, "automatic centerline"),
    ({"val_centerline": "reference"}, "ORACLE centerline"),
    ({"val_centerline": None}, "whole volume"),        # a grid model or the locator, in memory
    ({"val_centerline": ""}, "whole volume"),          # ... and as read back from metrics.csv
    ({}, "centerline not recorded"),                   # a log from before the column existed
])
def test_val_source(row, source):
    assert val_source(row) == source


def test_val_label_names_every_source():
    assert val_label([{"val_centerline": "auto"}] * 3) == "val Dice (automatic centerline)"
    assert val_label([{"val_centerline": "reference"}]) == "val Dice (ORACLE centerline)"
    assert val_label([{"val_centerline": "auto"}, {"val_centerline": "reference"}]) == \
        "val Dice (automatic centerline / ORACLE centerline)"
    assert val_label([]) == "val Dice (whole volume)"


def _phase(name: str, *, attention: bool, locator: bool) -> Phase:
    cfg = types.SimpleNamespace(locator=object() if locator else None)
    return Phase(name=name, net_cfg={}, cfg=cfg, train_cases=[], val_cases=[], plan=lambda _e: [],
                 attention=object() if attention else None, best_file="b", last_file="l", budget=None, epochs=1)


@pytest.mark.parametrize("attention, locator, label", [
    (True, True, "val Dice (automatic centerline)"),     # a crop model with its locator: what predict runs
    (True, False, "val Dice (ORACLE centerline)"),       # a crop model without one: the reference centerline
    (False, False, "val Dice (whole volume)"),           # a grid model (and the locator phase)
])
def test_epoch_line_label(attention, locator, label):
    assert _phase("model", attention=attention, locator=locator).val_label == label


def _rows(phase: str, source: str | None, dice=(0.2, math.nan, 0.4)) -> list[dict]:
    return [{"phase": phase, "epoch": e + 1, "train_loss": 1.0 - 0.1 * e, "val_dice": d,
             "val_centerline": None if math.isnan(d) else source} for e, d in enumerate(dice)]


def test_curves_legend_names_the_centerline(tmp_path):
    import matplotlib.pyplot as plt

    rows = _rows("locator", None) + _rows("model", "auto")
    fig = curves_figure(rows)
    dice_ax = fig.axes[1]
    assert [t.get_text() for t in dice_ax.get_legend().get_texts()] == \
        ["locator: val Dice (whole volume)", "model: val Dice (automatic centerline)"]
    plt.close(fig)
    # read back from metrics.csv (strings, empty cells) the labels are the same
    write_metrics(tmp_path / "metrics.csv", _rows("model", "reference"))
    back = [{**r, "epoch": int(r["epoch"]), "train_loss": float(r["train_loss"]),
             "val_dice": float(r["val_dice"] or "nan")} for r in read_metrics(tmp_path / "metrics.csv")]
    assert [r["val_centerline"] for r in back] == ["reference", "", "reference"]
    fig = curves_figure(back)
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["model: val Dice (ORACLE centerline)"]
    plt.close(fig)

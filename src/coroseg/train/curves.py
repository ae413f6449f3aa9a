"""``metrics.csv`` and ``training_curves.png`` of a run (rewritten atomically after each epoch)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from coroseg.io.atomic import atomic_path, write_text

#: ``val_centerline``: the prior crop models were validated with: ``auto`` (the run's locator, as
#: ``predict`` runs) or ``reference`` (the dataset's centerline, an ORACLE: no locator trained); empty
#: for grid models and the locator, which take no prior
COLUMNS = ("phase", "epoch", "step", "patches", "train_loss", "val_dice", "val_centerline", "lr", "seconds",
           "patches_per_s")

#: what each ``val_centerline`` value means, as every display of a validation Dice names it; empty:
#: no centerline prior (grid models and the locator, scored on whole volumes)
VAL_SOURCES = {"auto": "automatic centerline", "reference": "ORACLE centerline", "": "whole volume"}


def val_source(row: Mapping) -> str:
    """Which prior a validation Dice was measured with, for its label (``"automatic centerline"``, ...).

    A crop model validated with the reference centerline is labelled ORACLE: that Dice is an upper
    bound, not what ``predict`` reaches. A log without the ``val_centerline`` column (a run made before
    coroseg recorded it) says so rather than guess.
    """
    if "val_centerline" not in row:
        return "centerline not recorded"
    value = row["val_centerline"] or ""
    return VAL_SOURCES.get(str(value), f"{value} centerline")


def val_label(rows: Sequence[Mapping]) -> str:
    """``"val Dice (automatic centerline)"`` for one phase's validated rows (several sources: all named)."""
    sources = dict.fromkeys(val_source(r) for r in rows) or {"whole volume": None}
    return f"val Dice ({' / '.join(sources)})"


def write_metrics(path: str | Path, rows: Sequence[dict]) -> None:
    """One row per epoch; an empty ``val_dice`` means no validation that epoch."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(r.get(k)) for k in COLUMNS})
    write_text(path, buf.getvalue())


def read_metrics(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _fmt(v: object) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def plot_curves(path: str | Path, rows: Sequence[dict]) -> None:
    """Training loss and validation Dice per epoch (:func:`curves_figure`), written to ``path`` as PNG."""
    import matplotlib.pyplot as plt

    fig = curves_figure(rows)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def curves_figure(rows: Sequence[dict]):
    """The curves' figure: training loss and validation Dice per epoch, one colour per phase (main
    model, locator); each Dice curve's legend says which centerline its validation used
    (:func:`val_label`), so a crop model's ORACLE-centerline Dice is never read as a result."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for phase in dict.fromkeys(r["phase"] for r in rows):
        rs = [r for r in rows if r["phase"] == phase]
        ax1.plot([r["epoch"] for r in rs], [r["train_loss"] for r in rs], marker=".", label=phase)
        vs = [r for r in rs if r.get("val_dice") is not None and not math.isnan(r["val_dice"])]
        if vs:
            ax2.plot([r["epoch"] for r in vs], [r["val_dice"] for r in vs], marker="o",
                     label=f"{phase}: {val_label(vs)}")
    ax1.set(xlabel="epoch", ylabel="training loss (Dice + CE)", title="training loss")
    ax2.set(xlabel="epoch", ylabel="Dice", title="validation Dice (whole volumes)", ylim=(0, 1))
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    return fig


__all__ = ["COLUMNS", "VAL_SOURCES", "val_source", "val_label", "write_metrics", "read_metrics", "plot_curves",
           "curves_figure"]

"""``coroseg experiment``: the prior work's comparison, on whole volumes, at equal total budgets.

Trains ``unet2d_grid``, ``unet2d_crop``, ``unet3d_grid``, ``unet3d_crop``, the ``unet3d_crop
--no-attention`` ablation and ``unet3d_crop`` at 50 % of the budget, for each seed. **The budget
is the total number of training patches of every network an arm trains**: a grid arm spends it
all on its model; a crop arm needs a locator for its automatic centerline and gives it
``locator_share`` of the budget (default half), the crop model the rest. Compute (patch voxels x
patches) and training seconds are recorded beside the patch counts, since 2D and 3D patches differ
in size. Each arm is tested on the held-out split (crop models with the automatic centerline and,
labelled ORACLE, the ground-truth one; an upper bound) with the prior work's columns plus HD95,
clDice and centerline recall by vessel radius; the key contrasts get paired differences with
bootstrap 95 % intervals over cases x seeds (:data:`CONTRASTS`). A dataset per seed (other
phantoms, another split of the real trees) is given as ``{seed: folder}``. Classical baselines
(global HU threshold, Frangi) are fitted on the first seed's training cases. Writes ``results.md``,
``results.csv`` (one row per case, arm, seed and centerline) and ``dice_vs_budget.png``; finished
runs are re-used, so an interrupted experiment continues where it stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from coroseg.errors import CorosegError
from coroseg.eval.centerline_recall import RADIUS_BANDS
from coroseg.eval.evaluate import write_csv
from coroseg.io.atomic import atomic_path, write_text
from coroseg.models.run import read_config, run_complete

log = logging.getLogger(__name__)

#: the prior work's columns ("Accuracy" is true voxel accuracy here, not recall), then ours
COLUMNS = (("dice", "Dice"), ("voxel_accuracy", "Accuracy"), ("precision", "Precision"),
           ("recall", "Recall"), ("hd95_mm", "HD95 (mm)"), ("cldice", "clDice"))
#: centerline recall overall and by reference radius band
CL_COLUMNS = (("cl_recall", "all"),) + tuple((f"cl_recall_{n}", f"r {lo:g}-{hi:g} mm" if math.isfinite(hi)
                                               else f"r > {lo:g} mm") for n, lo, hi in RADIUS_BANDS)
#: bootstrap resamples of the paired differences
BOOTSTRAP = 10_000


@dataclasses.dataclass(frozen=True)
class Arm:
    """One trained configuration of the experiment."""

    model: str
    budget_fraction: float = 1.0
    attention: bool = True

    @property
    def name(self) -> str:
        s = self.model + ("" if self.attention or not self.model.endswith("crop") else "_noatt")
        return s if self.budget_fraction == 1.0 else f"{s}@{int(round(self.budget_fraction * 100))}%"

    @property
    def is_crop(self) -> bool:
        return self.model.endswith("crop")

    def patches(self, total_budget: int, locator_share: float) -> tuple[int, int]:
        """``(model patches, locator patches)`` of this arm: its share of ``total_budget``, split."""
        total = max(1, int(round(total_budget * self.budget_fraction)))
        if not self.is_crop:
            return total, 0
        loc = min(total - 1, max(1, int(round(total * locator_share)))) if total > 1 else 0
        return max(1, total - loc), loc


ARMS = (Arm("unet2d_grid"), Arm("unet2d_crop"), Arm("unet3d_grid"), Arm("unet3d_crop"),
        Arm("unet3d_crop", attention=False), Arm("unet3d_crop", 0.5))
#: the 3D arms (the real-tree renders are too large for the 2D arms on a CPU budget)
ARMS_3D = tuple(a for a in ARMS if a.model.startswith("unet3d"))

#: (what it asks, arm A, centerline A, arm B, centerline B): the difference is A - B
CONTRASTS = (
    ("3D: crop vs grid at equal total budget", "unet3d_crop", "auto", "unet3d_grid", "none"),
    ("3D: crop at 50 % of the budget vs grid at 100 %", "unet3d_crop@50%", "auto", "unet3d_grid", "none"),
    ("3D crop: attention vs no attention (automatic centerline)", "unet3d_crop", "auto", "unet3d_crop_noatt",
     "auto"),
    ("2D: crop vs grid at equal total budget", "unet2d_crop", "auto", "unet2d_grid", "none"),
    ("3D crop: ORACLE vs automatic centerline (what the locator costs)", "unet3d_crop", "oracle", "unet3d_crop",
     "auto"),
)


def run_experiment(data_dir: str | Path | Mapping[int, str | Path], out_dir: str | Path, *,
                   patch_budget: int = 4000, locator_share: float = 0.5, seeds: Sequence[int] = (0,),
                   device: str = "auto", batch_size: int = 4, lr: float = 1e-3, val_every: int = 1,
                   arms: Sequence[Arm] = ARMS, baselines: bool = True, progress: bool = True,
                   overrides: dict | None = None, command: str | None = None) -> str:
    """Run every arm for every seed; return the ``results.md`` text (also written to ``out_dir``).

    Parameters
    ----------
    data_dir : path or mapping seed -> path
        One dataset for every seed, or a dataset per seed.
    patch_budget : int
        Total training patches of a full-budget arm, locator included.
    locator_share : float
        Share of a crop arm's budget that trains its locator (0 < share < 1).
    overrides : dict, optional
        Training options (fields of ``coroseg.train.options.TrainOptions``) for every arm alike,
        e.g. a CPU-sized network; recorded in ``results.md``.
    command : str, optional
        The command line that ran this, printed at the head of ``results.md``.
    """
    from coroseg.data.cache import reuse_prepared

    if not 0.0 < locator_share < 1.0:
        raise CorosegError(f"locator share must be between 0 and 1 (exclusive), not {locator_share}")
    for arm in arms:
        if arm.is_crop and arm.patches(patch_budget, locator_share)[1] < 1:
            raise CorosegError(f"a patch budget of {patch_budget} is too small for {arm.name}: a crop arm needs at "
                             f"least 2 patches (its model and its locator)")
    data_for = dict(data_dir) if isinstance(data_dir, Mapping) else {s: data_dir for s in seeds}
    out = Path(out_dir)
    rows: list[dict] = []
    for seed in seeds:
        with reuse_prepared():  # the arms of a seed share its cases: each read and resampled once
            rows += _run_seed(seed, Path(data_for[seed]), out, arms, patch_budget, locator_share, device=device,
                              batch_size=batch_size, lr=lr, val_every=val_every, progress=progress,
                              overrides=overrides)
    if baselines:
        first = arms[0].name.replace("@", "_")
        rows += classical_baselines(data_for[seeds[0]], out / "runs" / f"{first}_seed{seeds[0]}")
    write_csv(out / "results.csv", rows)
    text = results_markdown(rows, patch_budget=patch_budget, seeds=seeds, data_dir=data_dir,
                            overrides=overrides, locator_share=locator_share, command=command)
    write_text(out / "results.md", text)
    plot_dice_vs_budget(rows, out / "dice_vs_budget.png")
    return text


def _run_seed(seed: int, data: Path, out: Path, arms: Sequence[Arm], patch_budget: int, locator_share: float, *,
              device: str, batch_size: int, lr: float, val_every: int, progress: bool,
              overrides: dict | None) -> list[dict]:
    """Train (or re-use) and test every arm on one seed's dataset; the per-case rows."""
    from coroseg.eval.testing import test_run
    from coroseg.train import train

    tree = case_clusters(data)
    rows: list[dict] = []
    for arm in arms:
        run = out / "runs" / f"{arm.name.replace('@', '_')}_seed{seed}"
        n_model, n_loc = arm.patches(patch_budget, locator_share)
        if not run_complete(run):
            log.info("training %s seed %d (%d model + %d locator patches)", arm.name, seed, n_model, n_loc)
            opts = dict(overrides or {})
            if arm.model.startswith("unet2d"):
                opts.pop("patch_size", None)  # a 3D patch size does not apply to 2D models
            if arm.is_crop:
                opts["locator_budget"] = n_loc
            train(data, run, model=arm.model, attention=arm.attention, patch_budget=n_model,
                  batch_size=batch_size, lr=lr, val_every=val_every, device=device, seed=seed,
                  progress=progress, resume=(run / "last.safetensors").exists(), **opts)
        else:
            _check_budget(run, n_model, n_loc if arm.is_crop else None)
        modes = ("auto", "gt") if arm.is_crop else ("none",)
        case_rows, _ = test_run(run, data, run / "test", centerlines=modes, device=device,
                                save_predictions=False, progress=progress)
        cost = training_cost(run)
        for r in case_rows:
            rows.append({"arm": arm.name, "model": arm.model, "seed": seed, "model_patches": n_model,
                         "locator_patches": n_loc, "budget": n_model + n_loc,
                         "cluster": tree.get(r["case_id"], r["case_id"]), **cost, **r})
    return rows


def case_clusters(data_dir: Path) -> dict[str, str]:
    """Case id -> the real tree it was rendered from (anatomy-mode phantoms, from ``manifest.json``);
    cases of other datasets are their own cluster (absent here)."""
    try:
        manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}
    return {c["case_id"]: c["derived"]["anatomy_case"] for c in manifest.get("cases", [])
            if isinstance(c, dict) and (c.get("derived") or {}).get("anatomy_case")}


def _check_budget(run: Path, n_model: int, n_loc: int | None) -> None:
    """A finished run is re-used only when it was trained with this arm's budgets."""
    train_cfg = read_config(run).train
    found = (train_cfg.get("patch_budget"), (train_cfg.get("options") or {}).get("locator_budget"))
    if found[0] != n_model or (n_loc is not None and found[1] != n_loc):
        raise CorosegError(f"finished run was trained with {found[0]} model / {found[1]} locator patches, this "
                           f"experiment asks {n_model} / {n_loc}; use a new --out folder", run)


def training_cost(run: Path) -> dict:
    """Compute of a finished run: patches seen, giga-voxels of patches (model + locator), training seconds."""
    cfg = read_config(run)
    with open(run / "metrics.csv", newline="") as fh:
        history = list(csv.DictReader(fh))
    seen, gvox, secs = 0, 0.0, 0.0
    for phase, size in (("model", cfg.patch_size), ("locator", cfg.locator.patch_size if cfg.locator else None)):
        mine = [h for h in history if h["phase"] == phase]
        if mine and size is not None:
            n = int(mine[-1]["patches"])  # each phase counts its own patches
            seen += n
            gvox += n * float(np.prod(size)) / 1e9
            secs += sum(float(h["seconds"]) for h in mine)
    return {"patches_seen": seen, "gvox": float(f"{gvox:.4g}"), "train_s": round(secs, 1)}


def classical_baselines(data_dir: str | Path, run_dir: Path) -> list[dict]:
    """Global HU threshold and Frangi vesselness, each thresholded at a value fitted on train cases."""
    from coroseg.data.cache import read_case
    from coroseg.eval.baselines import apply_threshold, fit_threshold, frangi_segmentation
    from coroseg.eval.metrics import all_metrics
    from coroseg.eval.testing import split_cases

    def load(split: str):
        out = []
        for c in split_cases(run_dir, data_dir, split):
            img, lab = read_case(c)  # the same checks (grid, 0/1 values) as training and test
            out.append((c, img, lab.array > 0))
        return out

    train_cases, test_cases = load("train"), load("test")
    rows: list[dict] = []
    t_hu, _ = fit_threshold([i.array for _, i, _ in train_cases], [lab for _, _, lab in train_cases])
    for c, img, lab in test_cases:
        rows.append({"arm": "HU threshold (fitted on train)", "model": "threshold", "seed": 0, "budget": 0,
                     "case_id": c.case_id, "centerline": "none", "threshold": t_hu,
                     **all_metrics(apply_threshold(img.array, t_hu), lab, spacing=img.spacing)})
    # Frangi runs over the whole scan (no label box at test time) at a coarser working spacing
    vess_train = [frangi_segmentation(i.array, spacing=i.spacing, roi=None, work_spacing=1.0)[0]
                  for _, i, _ in train_cases]
    t_fr, _ = fit_threshold(vess_train, [lab for _, _, lab in train_cases])
    for c, img, lab in test_cases:
        v = frangi_segmentation(img.array, spacing=img.spacing, work_spacing=1.0)[0]
        rows.append({"arm": "Frangi + threshold (fitted on train)", "model": "frangi", "seed": 0, "budget": 0,
                     "case_id": c.case_id, "centerline": "none", "threshold": t_fr,
                     **all_metrics(apply_threshold(v, t_fr), lab, spacing=img.spacing)})
    return rows


def _per_seed_means(rows: list[dict], arm: str, mode: str, key: str) -> np.ndarray:
    seeds = sorted({r["seed"] for r in rows if r["arm"] == arm and r["centerline"] == mode})
    out = []
    for s in seeds:
        vals = np.array([float(r[key]) for r in rows if r["arm"] == arm and r["centerline"] == mode
                         and r["seed"] == s], float)
        vals = vals[np.isfinite(vals)]
        out.append(vals.mean() if vals.size else np.nan)
    return np.array(out)


def _cell(values: np.ndarray, key: str) -> str:
    d = 2 if key.endswith("_mm") else 3
    finite = np.asarray(values, float)[np.isfinite(values)]
    if not finite.size:
        return "n/a"
    sd = float(np.std(finite, ddof=1)) if finite.size > 1 else 0.0  # sample std over seeds
    return f"{finite.mean():.{d}f} ± {sd:.{d}f}"


def _excluded(rows: list[dict], arm: str, mode: str) -> int:
    """Case rows of ``arm``/``mode`` left out of some mean (a non-finite metric, e.g. infinite HD95)."""
    return sum(1 for r in rows if r["arm"] == arm and r["centerline"] == mode
               and not all(math.isfinite(float(r[k])) for k, _ in COLUMNS))


def paired_difference(rows: list[dict], a: tuple[str, str], b: tuple[str, str], key: str = "dice", *,
                      seed: int = 0, resamples: int = BOOTSTRAP) -> dict | None:
    """Mean of ``A - B`` over the (seed, case) pairs both arms were tested on, with a bootstrap 95 % interval.

    ``a`` and ``b`` are ``(arm, centerline)``. Pairs whose value is not finite in either arm are
    left out. Returns None when no pair exists.

    The pairs are not independent: every case of a seed shares that seed's trained models, and
    the renders of one real tree share its anatomy. So the bootstrap is two-level: draw the
    seeds with replacement, then within each drawn seed its clusters (a row's ``cluster``: the
    real tree of an anatomy render, else the case itself) with replacement, and average every
    pair of what was drawn. With one seed only the second level remains.
    """
    def values(arm: str, mode: str) -> dict:
        return {(int(r["seed"]), r["case_id"]): (float(r[key]), str(r.get("cluster") or r["case_id"]))
                for r in rows if r["arm"] == arm and r["centerline"] == mode and key in r}

    va, vb = values(*a), values(*b)
    keys = sorted(k for k in va.keys() & vb.keys() if math.isfinite(va[k][0]) and math.isfinite(vb[k][0]))
    if not keys:
        return None
    diff = np.array([va[k][0] - vb[k][0] for k in keys])
    # seed -> list of per-cluster (sum of differences, number of pairs)
    groups: dict[int, dict[str, list[float]]] = {}
    for k, d in zip(keys, diff):
        cell = groups.setdefault(k[0], {}).setdefault(va[k][1], [0.0, 0.0])
        cell[0] += float(d)
        cell[1] += 1.0
    seeds = sorted(groups)
    sums = [np.array([c[0] for c in groups[s].values()]) for s in seeds]
    counts = [np.array([c[1] for c in groups[s].values()]) for s in seeds]
    rng = np.random.default_rng(seed)
    boots = np.empty(resamples)
    for i in range(resamples):
        total = n = 0.0
        for j in (rng.integers(0, len(seeds), len(seeds)) if len(seeds) > 1 else (0,)):
            pick = rng.integers(0, len(sums[j]), len(sums[j]))
            total += sums[j][pick].sum()
            n += counts[j][pick].sum()
        boots[i] = total / n
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"n": len(keys), "seeds": len(seeds), "clusters": sum(len(g) for g in groups.values()),
            "mean": float(diff.mean()), "lo": float(lo), "hi": float(hi),
            "a_mean": float(np.mean([va[k][0] for k in keys])), "b_mean": float(np.mean([vb[k][0] for k in keys]))}


#: added to a verdict on a recall-only metric
RECALL_ONLY = " (recall only)"
#: fewer pairs than this get no verdict: a bootstrap of one or two values has no width to speak of
MIN_PAIRS = 5


def verdict(d: dict) -> str:
    """Plain words for a paired difference's interval."""
    if d["n"] < MIN_PAIRS or d.get("clusters", d["n"]) < 2:
        return f"too few pairs for a verdict ({d['n']})"
    if d["lo"] > 0:
        words = "A better (interval above 0)"
    elif d["hi"] < 0:
        words = "B better (interval below 0)"
    else:
        words = "no clear difference (interval spans 0)"
    return words + ("; one training seed: case-to-case spread only" if d["seeds"] < 2 else "")


def _data_text(data_dir) -> str:
    if isinstance(data_dir, Mapping):
        return ", ".join(f"seed {k}: `{v}`" for k, v in data_dir.items())
    return f"`{data_dir}`"


def results_markdown(rows: list[dict], *, patch_budget: int, seeds: Sequence[int], data_dir,
                     overrides: dict | None = None, locator_share: float = 0.5, command: str | None = None) -> str:
    """The results: the prior work's table with budgets and compute, centerline recall by radius,
    the key contrasts with paired bootstrap intervals, and every case's row."""
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    n_cases = {s: len({r["case_id"] for r in rows if r["seed"] == s and r.get("model_patches")}) for s in seeds}
    lines = ["# coroseg experiment: centerline crops vs grid, whole-volume metrics, equal total budgets", ""]
    if command:
        lines += ["```bash", command, "```", ""]
    lines += [
        f"Data: {_data_text(data_dir)}; total patch budget {patch_budget} per full arm (a crop arm gives "
        f"{locator_share:.0%} of it to its locator); seeds {list(seeds)}; held-out cases per seed "
        f"{n_cases}; machine: {platform.machine()} {platform.system()}, {platform.python_version()}; "
        f"training overrides: {overrides or 'none'}.",
        "Each cell: mean over a seed's held-out cases, then mean ± sample standard deviation over seeds. "
        "Accuracy is true voxel accuracy (the prior work's 'accuracy' was recall). ORACLE rows use the "
        "ground-truth centerline at test time: an upper bound, not a result. Compute: giga-voxels of training "
        "patches (model + locator); seconds: training time of both networks. Excluded: case rows left out of a mean "
        "(a non-finite metric such as the infinite HD95 of an empty prediction).", "",
        "| Model | Centerline | Model patches | Locator patches | Total | Compute (Gvox) | Train s | "
        + " | ".join(c for _, c in COLUMNS) + " | Excluded |",
        "|" + "---|" * (8 + len(COLUMNS)),
    ]
    label = {"none": "-", "auto": "auto", "oracle": "ORACLE (gt)"}
    for arm in arms:
        for mode in ("none", "auto", "oracle"):
            mine = [r for r in rows if r["arm"] == arm and r["centerline"] == mode]
            if not mine:
                continue
            first = mine[0]
            cost = [f"{first.get('model_patches') or '-'}", f"{first.get('locator_patches') or '-'}",
                    f"{first.get('budget') or '-'}",
                    _cell(_per_seed_means(rows, arm, mode, "gvox"), "gvox") if "gvox" in first else "-",
                    f"{np.mean([float(r['train_s']) for r in mine]):.0f}" if "train_s" in first else "-"]
            cells = [_cell(_per_seed_means(rows, arm, mode, key), key) for key, _ in COLUMNS]
            lines.append(f"| {arm} | {label[mode]} | " + " | ".join(cost + cells)
                         + f" | {_excluded(rows, arm, mode)} |")
    if any("cl_recall" in r for r in rows):
        lines += ["", "## Centerline recall by vessel radius", "",
                  "Share of the reference centerline (sampled every 0.5 mm) inside the prediction, by the "
                  "reference radius there: thin distal branches are where a centerline prior should help.", "",
                  "| Model | Centerline | " + " | ".join(c for _, c in CL_COLUMNS) + " |",
                  "|" + "---|" * (2 + len(CL_COLUMNS))]
        for arm in arms:
            for mode in ("none", "auto", "oracle"):
                if any(r["arm"] == arm and r["centerline"] == mode and "cl_recall" in r for r in rows):
                    cells = [_cell(_per_seed_means(rows, arm, mode, k), k) for k, _ in CL_COLUMNS]
                    lines.append(f"| {arm} | {label[mode]} | " + " | ".join(cells) + " |")
    contrast_lines = []
    for what, arm_a, mode_a, arm_b, mode_b in CONTRASTS:
        for key in ("dice", "cl_recall_thin"):
            d = paired_difference(rows, (arm_a, mode_a), (arm_b, mode_b), key) if any(key in r for r in rows) else None
            if d is None:
                continue
            contrast_lines.append(
                f"| {what} | {arm_a} ({label[mode_a]}) − {arm_b} ({label[mode_b]}) | {key} "
                f"| {d['n']} ({d['clusters']}, {d['seeds']}) "
                f"| {d['a_mean']:.3f} vs {d['b_mean']:.3f} | {d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}] "
                f"| {verdict(d)}{RECALL_ONLY if key != 'dice' else ''} |")
    if contrast_lines:
        lines += ["", "## Key contrasts: paired differences", "",
                  f"A − B over the (seed, case) pairs both were tested on; 95 % percentile interval of a "
                  f"two-level bootstrap ({BOOTSTRAP} resamples: the seeds drawn with replacement, then within each "
                  "seed its clusters — the cases, or the real trees of anatomy renders — with replacement), since "
                  "a seed's cases share its trained models. `cl_recall_thin`: centerline recall where the reference "
                  "radius is below 1 mm — a recall, so over-segmentation raises it: read it beside Dice.", "",
                  "| Contrast | A − B | Metric | Pairs (clusters, seeds) | A vs B | Difference [95 % CI] | Verdict |",
                  "|---|---|---|---|---|---|---|", *contrast_lines]
    lines += ["", "## Every case", "", "| Arm | Centerline | Seed | Case | Dice | clDice | HD95 (mm) | CL recall |"
              " CL recall r < 1 mm |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def f(key: str, d: int = 3, r: dict = r) -> str:
            v = float(r.get(key, float("nan")))
            return f"{v:.{d}f}" if math.isfinite(v) else ("inf" if v == float("inf") else "-")

        lines.append(f"| {r['arm']} | {label.get(r['centerline'], r['centerline'])} | {r['seed']} | {r['case_id']} | "
                     f"{f('dice')} | {f('cldice')} | {f('hd95_mm', 2)} | {f('cl_recall')} | {f('cl_recall_thin')} |")
    return "\n".join(lines) + "\n"


def plot_dice_vs_budget(rows: list[dict], path: Path) -> None:
    """Dice of ``unet3d_crop`` (auto and oracle) and ``unet3d_grid`` against the patch budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    for model, mode, style in (("unet3d_crop", "auto", "o-"), ("unet3d_crop", "oracle", "o--"),
                               ("unet3d_grid", "none", "s-")):
        sel = [r for r in rows if r["model"] == model and r["centerline"] == mode and "_noatt" not in r["arm"]]
        budgets = sorted({r["budget"] for r in sel})
        if not budgets:
            continue
        means = [np.nanmean([float(r["dice"]) for r in sel if r["budget"] == b]) for b in budgets]
        ax.plot(budgets, means, style, label=f"{model} ({'ORACLE centerline' if mode == 'oracle' else mode})")
    ax.set_xlabel("training patches (budget)")
    ax.set_ylabel("held-out Dice (whole volume)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)

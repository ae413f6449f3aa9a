"""The ``coroseg`` command line: parse options, call one library function, print the result.

Heavy imports (torch, MONAI, SimpleITK) happen inside the commands so ``--help`` is instant.
Expected failures (:class:`~coroseg.errors.CorosegError`) print one line and exit with 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from coroseg import __version__
from coroseg.choices import Architecture, Coords, Device, ExportFormat, Precision, Preset, Split, TestCenterline
from coroseg.errors import CorosegError

app = typer.Typer(
    name="coroseg",
    help="Coronary artery segmentation in CT coronary angiography with a centerline prior.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

EXISTING = dict(exists=True, resolve_path=False)

#: what Ctrl-C leaves behind, set by the running command (printed by :func:`main`)
_ON_INTERRUPT = {"note": "interrupted"}


def _on_interrupt(note: str) -> None:
    _ON_INTERRUPT["note"] = note


def _version(value: bool) -> None:
    if value:
        typer.echo(f"coroseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(  # noqa: ARG001 (its eager callback prints it)
        False, "--version", callback=_version, is_eager=True, help="Show the version."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Also show debug messages."),
    quiet: bool = typer.Option(
        False, "-q", "--quiet", help="Only warnings and errors on the terminal: no progress bars or lines."),
) -> None:
    """Coronary artery segmentation in CTCA with a centerline prior."""
    from coroseg import logs

    if verbose and quiet:
        raise typer.BadParameter("-v/--verbose and -q/--quiet exclude each other")
    logs.configure(logs.VERBOSE if verbose else logs.QUIET if quiet else logs.NORMAL)
    ctx.call_on_close(logs.restore)


def _bars(wanted: bool = True) -> bool:
    """Whether a command draws progress bars: ``wanted`` and not ``-q``."""
    from coroseg.logs import show_progress

    return wanted and show_progress()


@app.command()
def info(path: Path = typer.Argument(
    ..., **EXISTING,
    help="Volume file, DICOM folder, centerline (.vtp/.vtk/.gml/.mrk.json) or dataset folder.")) -> None:
    """Print a volume's, centerline's or dataset's size, spacing, orientation and statistics."""
    from coroseg.info import describe, format_description

    typer.echo(format_description(describe(path)))


@app.command()
def synth(
    out: Path = typer.Option(..., "--out", help="Dataset folder to write (split layout + manifest.json)."),
    cases: int = typer.Option(12, "--cases", min=1, help="Number of cases (Normal and Diseased alternate)."),
    preset: Preset = typer.Option(
        Preset.small, "--preset",
        help="small (~0.9 mm, <=160^3) or asoca (512x512, 0.33-0.45 mm)."),
    anatomy: Optional[Path] = typer.Option(
        None, "--anatomy", **EXISTING,
        help="ASOCA-style Annotations/ + Centerlines/ to render CT around."),
    seed: int = typer.Option(0, "--seed", help="Seed; the same seed gives identical files."),
    shift: bool = typer.Option(
        False, "--shift",
        help="Appearance outside the training ranges (a generalisation test set)."),
) -> None:
    """Synthesize realistic phantom CTCA with exact coronary labels and centerlines."""
    from coroseg.synth import synth_dataset

    synth_dataset(out, cases, preset=preset.value, anatomy_dir=anatomy, seed=seed, shift=shift, progress=_bars())
    typer.echo(f"dataset: {out}")


@app.command()
def train(
    data: Path = typer.Option(
        Path("dataset"), "--data", **EXISTING,
        help="Dataset folder (split, ASOCA, ImageCAS or nnU-Net layout)."),
    model: Architecture = typer.Option(
        Architecture.unet3d_crop, "--model",
        help="Architecture: 2D/3D U-Net, grid or centerline-crop sampling."),
    out: Path = typer.Option(..., "--out", help="Run folder to create (or continue with --resume)."),
    epochs: Optional[int] = typer.Option(
        None, "--epochs", min=1,
        help="Epochs (default 100; with --resume: the saved value)."),
    batch_size: int = typer.Option(2, "--batch-size", "--batch_size", min=1, help="Patches per step per process."),
    patch_budget: Optional[int] = typer.Option(
        None, "--patch-budget", min=1,
        help="Total training patches (equal-budget comparisons)."),
    attention: bool = typer.Option(
        True, "--attention/--no-attention",
        help="Crop models: centerline attention channel."),
    device: Device = typer.Option(Device.auto, "--device", help="auto: CUDA when available, else CPU."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run folder's last checkpoint."),
    init: Optional[str] = typer.Option(
        None, "--init",
        help="Fine-tune: start from this model's weights (builtin, an installed name or a run folder); its "
             "network, grid, intensity, attention and locator settings are kept."),
    seed: int = typer.Option(0, "--seed", help="Seed for weights, splits, sampling and augmentation."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak AdamW learning rate."),
    val_every: int = typer.Option(1, "--val-every", min=1, help="Validate on whole volumes every K epochs."),
    early_stop: int = typer.Option(
        20, "--early-stop", min=0,
        help="Stop after K validations without improvement (0: never)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
    overrides: list[str] = typer.Option(
        [], "--set",
        help="Advanced option KEY=VALUE (JSON value), e.g. --set 'patch_size=[96,96,96]'; repeatable."),
) -> None:
    """Train a 2D/3D U-Net with grid or centerline-crop sampling (DDP under torchrun)."""
    from coroseg.train import train as train_fn
    from coroseg.train.options import TRAIN_OPTIONS, parse_overrides

    run_dir = train_fn(data, out, model=model.value, epochs=epochs, batch_size=batch_size, attention=attention,
                       patch_budget=patch_budget, device=device.value, resume=resume, seed=seed, lr=lr,
                       val_every=val_every, early_stop=early_stop or None, progress=_bars(progress), init=init,
                       **parse_overrides(overrides, own_options=TRAIN_OPTIONS))
    from coroseg.models.run import read_config

    for phase, why in read_config(run_dir).train.get("stopped", {}).items():
        typer.echo(f"{phase}: {why}")
    typer.echo(f"run folder: {run_dir}")


@app.command()
def predict(
    model: str = typer.Option(
        "builtin", "--model",
        help="Trained model: a run folder, an installed model's name (coroseg models), or builtin."),
    input: list[Path] = typer.Option(
        ..., "-i", "--input", **EXISTING,
        help="Volume file, folder of volumes, or DICOM series folder; repeatable."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder."),
    resume: bool = typer.Option(
        False, "--continue",
        help="Skip scans whose outputs in the output folder are complete."),
    tta: bool = typer.Option(
        False, "--tta", help="Test-time mirroring: average over the scan and its 3 single-axis mirrors (4x the time)."),
    num_parts: Optional[int] = typer.Option(
        None, "--num-parts", min=1,
        help="Split the scans into this many parts (job arrays; under torchrun: WORLD_SIZE)."),
    part_id: Optional[int] = typer.Option(
        None, "--part-id", min=0, help="The part this process segments, 0 to --num-parts - 1 (torchrun: RANK)."),
    centerline: str = typer.Option(
        "auto", "--centerline",
        help="auto (locator), none, or a .vtp/.vtk/.gml/.mrk.json file or a folder of .mrk.json curves."),
    device: Device = typer.Option(Device.auto, "--device", help="auto: CUDA when available, else CPU."),
    save_prob: bool = typer.Option(False, "--save-prob", help="Also write the vessel probability map."),
    mesh: bool = typer.Option(False, "--mesh", help="Also write <id>_vessels.stl (LPS mm)."),
    threshold: float = typer.Option(0.5, "--threshold", min=0.0, max=1.0, help="Probability threshold."),
    keep_trees: bool = typer.Option(
        True, "--keep-trees/--no-keep-trees",
        help="Drop components not connected to the coronary trees."),
    reach_mm: Optional[float] = typer.Option(
        None, "--reach-mm", min=0.0,
        help="With --keep-trees: keep the largest tree and what lies within this many mm of it (default 60); 0 = keep "
             "the largest trees by size instead."),
    fill_holes: bool = typer.Option(True, "--fill-holes/--no-fill-holes", help="Fill enclosed holes."),
    iterate: bool = typer.Option(
        True, "--iterate/--no-iterate",
        help="Crop models: add crops where vessels leave the covered region."),
    precision: Precision = typer.Option(
        Precision.auto, "--precision",
        help="auto: bf16 on CUDA, fp32 on CPU; bf16 is also faster on CPUs with bf16 instructions."),
    output_format: str = typer.Option(
        "input", "--format",
        help="Mask file format: input (the input's extension), nii.gz, nii, nrrd, mha, seg.nrrd (a 3D Slicer "
             "segmentation; the probability map is then .nrrd), or dicom-seg (DICOM series input: a DICOM SEG "
             "referencing the series; needs pip install \"coroseg[dicom]\")."),
) -> None:
    """Segment new scans; writes <id>_seg, centerline (.vtp/.gml/.mrk.json) and summary.json."""
    from coroseg.infer.files import predict as predict_fn
    from coroseg.infer.postprocess import PostprocessOptions

    prior: str | Path = centerline if centerline in ("auto", "none") else Path(centerline)
    _on_interrupt(f"{output}: predict interrupted; scans finished before are complete (listed in summary.json), "
                  "nothing of the scan in progress was kept")
    post = PostprocessOptions(threshold=threshold, keep_trees=keep_trees, fill_holes=fill_holes,
                              **({} if reach_mm is None else {"reach_mm": reach_mm or None}))
    summaries = predict_fn(model, input[0] if len(input) == 1 else list(input), output, centerline=prior,
                           device=device.value, save_prob=save_prob, mesh=mesh, postprocess=post, iterate=iterate,
                           precision=precision.value, skip_complete=resume, num_parts=num_parts, part_id=part_id,
                           tta=tta, output_format=output_format, progress=_bars())
    typer.echo(f"wrote {len(summaries)} segmentation(s) to {output}")


@app.command("test")
def test_cmd(
    model: str = typer.Option(..., "--model", help="A run folder, an installed model's name, or builtin."),
    data: Path = typer.Option(Path("dataset"), "--data", **EXISTING, help="Dataset folder."),
    out: Path = typer.Option(..., "--out", help="Output folder (predictions, metrics.csv, summary.md)."),
    split: Optional[Split] = typer.Option(
        None, "--split",
        help="The split to score (default: test for a run folder; all for an installed or built-in model, which "
             "has no split of this data)."),
    centerline: list[TestCenterline] = typer.Option(
        [TestCenterline.auto], "--centerline",
        help="Crop models' prior: auto and/or gt (reported as ORACLE), or none; repeat for several."),
    device: Device = typer.Option(Device.auto, "--device", help="auto: CUDA when available, else CPU."),
    tta: bool = typer.Option(False, "--tta", help="Test-time mirroring (as predict --tta)."),
) -> None:
    """Predict a held-out split and score it on whole volumes (Dice, HD95, clDice, ...)."""
    from coroseg.eval.testing import test_run

    _on_interrupt(f"{out}: test interrupted; nothing of this run was kept")
    _, table = test_run(model, data, out, split=None if split is None else split.value,
                        centerlines=[c.value for c in centerline], device=device.value, tta=tta, progress=_bars())
    typer.echo(table)


@app.command()
def evaluate(
    pred: Path = typer.Option(..., "--pred", **EXISTING, help="Folder of predicted masks."),
    gt: Path = typer.Option(..., "--gt", **EXISTING, help="Folder of ground-truth masks."),
    out: Optional[Path] = typer.Option(None, "--out", help="Per-case CSV (summary written beside it as .md)."),
    label_value: Optional[int] = typer.Option(
        None, "--label-value",
        help="Treat this label value as vessel (others background)."),
    skip_missing: bool = typer.Option(
        False, "--skip-missing",
        help="Leave ground truths without a prediction out (listed, not scored), e.g. for a job array still "
             "running. Default: each is a failure, scored Dice 0."),
) -> None:
    """Score predicted masks against ground truth, paired by case id; a ground truth without a
    prediction is a failure (Dice 0), unless --skip-missing."""
    from coroseg.eval.evaluate import evaluate_folders, missing_note, pair_cases, summary_table

    rows, _ = evaluate_folders(pred, gt, out=out, label_value=label_value, progress=_bars(),
                               skip_missing=skip_missing)
    skipped = pair_cases(pred, gt)[1] if skip_missing else []
    typer.echo(summary_table(rows) + missing_note(rows, skipped))


@app.command()
def export(
    to: ExportFormat = typer.Option(ExportFormat.nnunet, "--to", help="Target format."),  # noqa: ARG001 (one so far)
    data: Path = typer.Option(..., "--data", **EXISTING, help="Dataset folder."),
    out: Path = typer.Option(..., "--out", help="Output folder (nnU-Net raw dataset)."),
    dataset_id: int = typer.Option(501, "--dataset-id", help="nnU-Net dataset id."),
    run: Optional[Path] = typer.Option(
        None, "--run", **EXISTING, file_okay=False,
        help="A training run folder: its own split (RUN/splits.json) puts its train and val cases in imagesTr "
             "(fold 0 of splits_final.json) and its test cases in imagesTs, so nnU-Net trains and tests on the "
             "run's cases. Its case ids must be the dataset's. Default: the dataset's own split."),
) -> None:
    """Write the dataset in nnU-Net v2 raw format (with dataset.json) to compare against nnU-Net; with --run,
    on a coroseg run's own train / val / test split."""
    from coroseg.eval.export import export_dataset

    _on_interrupt(f"{out}: export interrupted; nothing of this export was kept (an earlier one is unchanged)")
    path = export_dataset(data, out, run=run, dataset_id=dataset_id, progress=_bars())
    typer.echo(f"nnU-Net dataset: {path}")


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Demo folder (data, run, test, report.html)."),
    quick: bool = typer.Option(False, "--quick", help="A small smoke version (CI): fewer cases and patches."),
    device: Device = typer.Option(Device.auto, "--device", help="auto: CUDA when available, else CPU."),
) -> None:
    """Synthesize phantoms, train unet3d_crop, test (auto vs oracle centerline), write report.html."""
    from coroseg.demo import run_demo

    run_demo(out, quick=quick, device=device.value, progress=_bars())


@app.command()
def experiment(
    data: Path = typer.Option(..., "--data", **EXISTING, help="Dataset folder (e.g. from 'coroseg synth')."),
    out: Path = typer.Option(..., "--out", help="Experiment folder (runs/, results.md, dice_vs_budget.png)."),
    patch_budget: int = typer.Option(4000, "--patch-budget", min=1, help="Training patches per full-budget arm."),
    seeds: list[int] = typer.Option([0], "--seeds", help="Seeds; repeat for several (--seeds 0 --seeds 1)."),
    batch_size: int = typer.Option(4, "--batch-size", min=1),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate of every arm."),
    val_every: int = typer.Option(1, "--val-every", min=1, help="Whole-volume validation every K epochs."),
    device: Device = typer.Option(Device.auto, "--device", help="auto: CUDA when available, else CPU."),
    baselines: bool = typer.Option(True, "--baselines/--no-baselines", help="Add HU-threshold and Frangi rows."),
    locator_share: float = typer.Option(
        0.5, "--locator-share", min=0.0, max=1.0,
        help="Share of a crop arm's patch budget that trains its locator (the rest trains the crop model)."),
    overrides: list[str] = typer.Option(
        [], "--set",
        help="Training option KEY=VALUE for every arm (e.g. a CPU-sized network); repeatable."),
) -> None:
    """Grid vs centerline crops (2D/3D) at equal total budgets, attention ablation, crops at half the budget;
    writes results.md with paired bootstrap intervals."""
    from coroseg.experiment import run_experiment
    from coroseg.train.options import TRAIN_OPTIONS, parse_overrides

    typer.echo(run_experiment(data, out, patch_budget=patch_budget, seeds=seeds, device=device.value, lr=lr,
                              val_every=val_every, batch_size=batch_size, baselines=baselines, progress=_bars(),
                              locator_share=locator_share,
                              overrides=parse_overrides(overrides, own_options=TRAIN_OPTIONS)))


@app.command()
def report(
    run: Path = typer.Option(..., "--run", **EXISTING, file_okay=False, help="Run folder."),
    test: Optional[Path] = typer.Option(
        None, "--test", **EXISTING, file_okay=False,
        help="'coroseg test' output (default: RUN/test)."),
    data: Optional[Path] = typer.Option(
        None, "--data",
        help="Dataset with images/labels (default: from the run's config)."),
    out: Optional[Path] = typer.Option(None, "--out", help="HTML file (default: TEST/report.html)."),
    max_cases: int = typer.Option(6, "--max-cases", min=1, help="Cases with overlay and radius-profile figures."),
    max_3d: int = typer.Option(3, "--max-3d", min=0, help="Cases with a rotating 3D view."),
) -> None:
    """Write one self-contained report.html: metrics, case table, overlays, radius profiles, 3D views, crops."""
    from coroseg.report.html import write_report

    typer.echo(write_report(run, out, test_dir=test, data_dir=data, max_cases=max_cases, max_3d=max_3d))


@app.command("export-model")
def export_model(
    run: Path = typer.Argument(..., **EXISTING, file_okay=False, help="Run folder of a finished 'coroseg train'."),
    out: Path = typer.Option(..., "--out", help="Model package to write (.zip)."),
    name: Optional[str] = typer.Option(None, "--name", help="Model name (default: the run folder's name)."),
    version: Optional[str] = typer.Option(
        None, "--version", help="Version, free text (default: the coroseg version the run was trained with)."),
    description: str = typer.Option("", "--description", help="One or two sentences on the model."),
    half: bool = typer.Option(False, "--half", help="Store the weights as float16 (half the size; loaded as float32)."),
) -> None:
    """Export a trained model as a zip package (config, weights, manifest with checksums)."""
    from coroseg.models.store import export_model as export_fn

    typer.echo(f"model package: {export_fn(run, out, name=name, version=version, description=description, half=half)}")


@app.command("install-model")
def install_model(
    package: Path = typer.Argument(..., **EXISTING, dir_okay=False, help="Model package (.zip) from 'export-model'."),
    name: Optional[str] = typer.Option(None, "--name", help="Install under this name (default: the package's)."),
    force: bool = typer.Option(False, "--force", help="Replace a model installed under the same name."),
) -> None:
    """Check a model package and install it into the user's models folder ('coroseg models' lists them)."""
    from coroseg.models.store import install_model as install_fn

    folder = install_fn(package, name=name, force=force)
    typer.echo(f"installed {folder.name}: {folder}")


@app.command("models")
def models() -> None:
    """List the models installed in the user's models folder ('install-model' adds them)."""
    from coroseg.models.store import format_models, list_models

    typer.echo(format_models(list_models()))


@app.command()
def centerline(
    label: Path = typer.Option(..., "--label", **EXISTING, help="Binary vessel mask (ours, the user's, ImageCAS...)."),
    out: Path = typer.Option(..., "--out", help="Output centerline (.vtp, .gml or .mrk.json)."),
    reference: Optional[Path] = typer.Option(
        None, "--reference", **EXISTING,
        help="Reference centerline to compare with (overlap)."),
    min_spur_mm: Optional[float] = typer.Option(
        None, "--min-spur-mm",
        help="Prune side spurs shorter than this (default: from the local radius)."),
    bridge_gap_mm: float = typer.Option(2.0, "--bridge-gap-mm", help="Bridge gaps up to this length."),
) -> None:
    """Extract a centerline graph (ostia, branches, radii) from a vessel mask."""
    from coroseg.io.centerline_files import read_centerline
    from coroseg.io.volume import read_volume
    from coroseg.prior import centerline_overlap
    from coroseg.prior.skeleton import centerline_file

    graph = centerline_file(label, out, min_spur_mm=min_spur_mm, bridge_gap_mm=bridge_gap_mm)
    typer.echo(f"{graph} -> {out}")
    if reference is not None:
        ov = centerline_overlap(graph, read_centerline(reference, reference=read_volume(label, is_label=True)))
        typer.echo("overlap: " + ", ".join(f"{k}={v:.3f}" for k, v in ov.items() if isinstance(v, float)))


@app.command("convert-centerline")
def convert_centerline(
    src: Path = typer.Argument(
        ..., **EXISTING, help="Input centerline (.vtp, .vtk, .gml, .mrk.json or a folder of curves)."),
    dst: Path = typer.Argument(..., help="Output (.vtp, .gml or .mrk.json)."),
    reference: Optional[Path] = typer.Option(
        None, "--reference", **EXISTING,
        help="Image or mask the centerline belongs to (resolves .vtp frames)."),
    coords: Coords = typer.Option(Coords.auto, "--coords", help="Frame of a .vtp input."),
) -> None:
    """Convert a centerline between VTP, GML and 3D Slicer markups (always LPS on output)."""
    from coroseg.io.centerline_files import convert_centerline as convert

    graph = convert(src, dst, reference=reference, coords=coords.value)
    typer.echo(f"{graph} -> {dst}")


def _is(exc: BaseException, name: str) -> bool:
    # typer may vendor click (typer._click), so match click's exceptions by class name
    return any(c.__name__ == name for c in type(exc).__mro__)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``coroseg`` console script."""
    try:
        code = app(args=argv, prog_name="coroseg", standalone_mode=False)
    except CorosegError as exc:
        typer.echo(f"coroseg: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:
        if _is(exc, "NoArgsIsHelpError"):
            ctx = getattr(exc, "ctx", None)
            typer.echo(ctx.get_help() if ctx else str(exc))
            sys.exit(0)
        if _is(exc, "UsageError"):  # option/argument errors: one line too, with where to look
            ctx = getattr(exc, "ctx", None)
            cmd = ctx.command_path if ctx else "coroseg"
            typer.echo(f"coroseg: error: {exc.format_message()} (see '{cmd} --help')", err=True)
            sys.exit(2)
        if _is(exc, "ClickException"):
            typer.echo(f"coroseg: error: {exc.format_message()}", err=True)
            sys.exit(getattr(exc, "exit_code", 1))
        if _is(exc, "Abort"):
            typer.echo(f"coroseg: error: {_ON_INTERRUPT['note']}", err=True)
            sys.exit(130)
        raise
    if code == 130:  # Typer turns Ctrl-C into exit code 130 before a KeyboardInterrupt reaches us
        typer.echo(f"coroseg: error: {_ON_INTERRUPT['note']}", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)

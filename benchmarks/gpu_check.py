"""One check of the whole GPU path, made to fit a short device lease (<= 5 minutes on one GPU).

Steps, each timed and recorded even when an earlier one failed:

1. **environment**: device name, driver, CUDA, PyTorch / MONAI / SimpleITK / cc3d versions;
2. **phantoms**: a few ``asoca``-preset phantoms (512 x 512 x 160-260 at 0.33-0.45 mm);
3. **train_step**: ``unet3d_crop`` at the package defaults (5-level U-Net, 64^3 patches, batch
   2, bf16 autocast, the trainer's loader with its default workers): patches/s of the training
   loop vs the bare model step on one batch held in memory (target: loop >= 80 % of bare), and
   the bare step in channels-last layout;
4. **train_run**: ``coroseg.train.train`` end to end (locator first, then the crop model, each
   for a fixed patch budget, validated by the prediction code): loss falls, patches/s, peak
   GPU memory, why it stopped;
5. **ddp**: ``torchrun --nproc_per_node 1`` joins an NCCL process group and takes DDP steps;
6. **predict**: one 512 x 512 x 256 scan with the built-in model — ours, ours ``--tta``, and the
   MONAI whole-volume sliding window with the same network (benchmarks/predict_speed.py):
   network and end-to-end time, peak GPU memory, Dice of each (targets: network <= 1 s, end to
   end <= 3 s, <= 8 GB).

Everything measured goes to ``OUT/gpu_check.json`` (rewritten after every step, so a run cut
short keeps what it did) and a readable ``OUT/gpu_check.txt``.

    python benchmarks/gpu_check.py --out OUT              # on a GPU machine
    python benchmarks/gpu_check.py --tiny --out OUT       # the same steps, CPU-sized (<= 3 min on 2 cores)

On the project's lent GPU machine MONAI, SimpleITK and cc3d are not installed: docs/benchmarks.md
("GPU check") gives the wheels to carry and the one command to run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

#: (full run, --tiny) sizes of every step
SIZES = {
    False: dict(preset="asoca", cases=3, channels=None, patch=64, batch=2, steps=30, warmup=5, budget=240,
                slices=256, device="cuda"),
    True: dict(preset="small", cases=3, channels=[8, 16, 32], patch=32, batch=2, steps=6, warmup=2, budget=24,
               slices=None, device="cpu"),
}


def _versions() -> dict:
    import torch

    out = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
           "torch": torch.__version__, "cuda_runtime": torch.version.cuda}
    from importlib import metadata

    for name, dist in (("monai", "monai"), ("SimpleITK", "SimpleITK"), ("cc3d", "connected-components-3d"),
                       ("numpy", "numpy")):
        try:
            out[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[name] = None
    if torch.cuda.is_available():
        out["device_name"] = torch.cuda.get_device_name()
        out["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            out["driver"] = smi.stdout.strip().splitlines()[0] if smi.returncode == 0 and smi.stdout else None
    else:
        out["device_name"] = f"CPU ({platform.processor() or platform.machine()})"
    return out


def step_phantoms(work: Path, size: dict) -> dict:
    from coroseg.synth import synth_dataset

    synth_dataset(work / "data", size["cases"], preset=size["preset"], seed=100, progress=False)
    return {"preset": size["preset"], "cases": size["cases"]}


def step_train_step(work: Path, size: dict, device: str) -> dict:
    """Loop vs bare step (benchmarks/train_speed.py's measurement) and the bare step channels-last."""
    import torch

    from coroseg.data.cache import prepare_cases, training_statistics
    from coroseg.data.layouts import load_dataset
    from coroseg.models.registry import CHANNELS
    from train_speed import measure

    dev = torch.device(device)
    cases = [c for c in load_dataset(work / "data") if c.split == "train"]
    spacing, intensity = training_statistics(cases, seed=0)
    prepared = prepare_cases(cases, spacing, intensity, centerline=True)
    args = argparse.Namespace(patch=size["patch"], channels=size["channels"] or list(CHANNELS),
                              batch_size=size["batch"], steps=size["steps"], warmup=size["warmup"], augment=1.0,
                              workers=None)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    res = measure("crop", prepared, args, dev)
    res["loop_over_bare"] = res["loop"] / res["bare"]
    res["channels_last_bare"] = _bare_channels_last(args, dev)
    if dev.type == "cuda":
        res["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return res


def _bare_channels_last(args, dev) -> float:
    """Patches/s of the bare step with the network and batch in channels-last-3d layout."""
    import torch
    from monai.losses import DiceCELoss

    from coroseg.models.registry import build_network, model_spec, network_config
    from coroseg.train.loop import forward_loss, optimizer_step
    from coroseg.train.precision import autocast_dtype

    cfg = network_config(model_spec("unet3d_crop"), channels=args.channels, num_res_units=2)
    net = build_network(cfg).to(dev).to(memory_format=torch.channels_last_3d).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    shape = (args.batch_size, 2, args.patch, args.patch, args.patch)
    x = torch.randn(shape, device=dev).contiguous(memory_format=torch.channels_last_3d)
    y = (torch.rand((args.batch_size, 1, *shape[2:]), device=dev) > 0.9).long()
    dtype = autocast_dtype("auto", dev)
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            _sync(dev)
            t0 = time.perf_counter()
        loss = forward_loss(net, x, y, loss_fn, dtype=dtype)
        float(loss.detach())
        optimizer_step(loss, net, opt, grad_clip=5.0)
    _sync(dev)
    return args.steps * args.batch_size / (time.perf_counter() - t0)


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def step_train_run(work: Path, size: dict, device: str) -> dict:
    import csv

    import torch

    from coroseg.models.run import read_config
    from coroseg.train import train

    extra = {} if size["channels"] is None else {"channels": size["channels"], "locator_channels": size["channels"],
                                                  "locator_patch": [size["patch"]] * 3}
    if size["channels"] is not None:
        extra["patch_size"] = [size["patch"]] * 3
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    run = train(work / "data", work / "run", model="unet3d_crop", epochs=1000, batch_size=size["batch"],
                patch_budget=size["budget"], locator_budget=size["budget"], device=device, val_every=1000,
                early_stop=None, progress=False, **extra)
    wall = time.perf_counter() - t
    with open(run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = {"wall_s": wall, "stopped": read_config(run).train.get("stopped")}
    for phase in ("locator", "model"):
        mine = [r for r in rows if r["phase"] == phase]
        loss = [float(r["train_loss"]) for r in mine]
        secs = sum(float(r["seconds"]) for r in mine)
        vals = [float(r["val_dice"]) for r in mine if r["val_dice"] not in ("", "nan")]
        out[phase] = {"epochs": len(mine), "first_loss": loss[0], "last_loss": loss[-1],
                      "loss_falls": loss[-1] < loss[0], "val_dice": vals[-1] if vals else None,
                      "patches_per_s": sum(float(r["patches_per_s"]) * float(r["seconds"]) for r in mine)
                      / max(1e-9, secs)}
    if dev.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def ddp_probe() -> None:
    """Run under torchrun: join the process group (NCCL on a GPU), take DDP steps, print one JSON line."""
    import torch
    import torch.distributed as dist

    from coroseg.models.registry import build_network, model_spec, network_config
    from coroseg.train.precision import autocast_dtype

    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(dev)
    t = time.perf_counter()
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    t_init = time.perf_counter() - t
    net = build_network(network_config(model_spec("unet3d_grid"), channels=[8, 16, 32], num_res_units=1)).to(dev)
    model = torch.nn.parallel.DistributedDataParallel(net, device_ids=[local] if cuda else None)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(2, 1, 32, 32, 32, device=dev)
    dtype = autocast_dtype("auto", dev)
    for _ in range(3):
        with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = model(x).float().square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    total = torch.tensor([1.0], device=dev)
    dist.all_reduce(total)
    print(json.dumps({"backend": dist.get_backend(), "world": dist.get_world_size(), "init_s": t_init,
                      "all_reduce": float(total.item()), "loss_finite": bool(torch.isfinite(loss).item())}))
    dist.destroy_process_group()


def step_ddp(work: Path) -> dict:  # noqa: ARG001
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
           str(Path(__file__).resolve()), "--ddp-probe"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    if res.returncode != 0:
        raise RuntimeError(f"torchrun exited {res.returncode}: {res.stderr.strip()[-500:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def step_predict(work: Path, size: dict, device: str) -> dict:
    from coroseg.data.layouts import load_dataset
    from coroseg.io.volume import read_volume
    from coroseg.models.store import resolve_model
    from predict_speed import _in_process, _with_slices, run_baseline, run_ours

    case = [c for c in load_dataset(work / "data") if c.split == "test"][0]
    if size["slices"]:
        case = _with_slices(case, size["slices"], work / "scan")
    model = str(resolve_model("builtin"))
    out = {"scan": "x".join(str(s) for s in read_volume(case.image).shape[::-1]) + " (x, y, z)"}
    for name, fn, kw in (("ours", run_ours, {}), ("ours_tta", run_ours, {"tta": True}),
                         ("monai_sliding_window", run_baseline, {})):
        res = _in_process(fn, model, str(case.image), str(case.label), str(work / f"pred_{name}"), device, "auto", **kw)
        stages = res["stages"]
        res["network_s"] = sum(v for k, v in stages.items() if k.endswith("network"))
        out[name] = res
    return out


def _text(results: dict) -> str:
    """A readable summary of ``results`` (the JSON has everything)."""
    env = results.get("environment", {})
    lines = [f"coroseg GPU check ({'tiny, CPU' if results['tiny'] else 'full'}), commit {results.get('commit')}",
             f"device: {env.get('device_name')}, driver {env.get('driver')}, CUDA {env.get('cuda_runtime')}, torch "
             f"{env.get('torch')}, MONAI {env.get('monai')}, SimpleITK {env.get('SimpleITK')}, cc3d {env.get('cc3d')}",
             ""]
    for name, rec in results["steps"].items():
        head = f"[{name}] {rec['status']} in {rec['seconds']:.1f} s"
        lines.append(head + (f": {rec['error']}" if rec["status"] != "ok" else ""))
        r = rec.get("result") or {}
        if name == "train_step" and r:
            lines.append(f"  loop {r['loop']:.1f} patches/s, bare step {r['bare']:.1f}, data alone {r['data']:.1f}; "
                         f"loop/bare {r['loop_over_bare']:.0%} (target >= 80 %); channels-last bare "
                         f"{r['channels_last_bare']:.1f}; {r['workers']} workers; {r['params_m']:.1f} M parameters"
                         + (f"; peak GPU {r['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in r else ""))
        if name == "train_run" and r:
            for phase in ("locator", "model"):
                p = r[phase]
                lines.append(f"  {phase}: {p['epochs']} epochs, loss {p['first_loss']:.3f} -> {p['last_loss']:.3f} "
                             f"({'falls' if p['loss_falls'] else 'DOES NOT FALL'}), {p['patches_per_s']:.1f} patches/s")
            lines.append(f"  {r['wall_s']:.1f} s end to end; stopped: {r['stopped']}"
                         + (f"; peak GPU {r['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in r else ""))
        if name == "ddp" and r:
            lines.append(f"  backend {r['backend']}, world {r['world']}, init {r['init_s']:.2f} s, "
                         f"loss finite {r['loss_finite']}")
        if name == "predict" and r:
            lines.append(f"  scan {r['scan']}")
            for k in ("ours", "ours_tta", "monai_sliding_window"):
                p = r[k]
                gpu = f", peak GPU {p['gpu_mb']:.0f} MB" if p.get("gpu_mb") is not None else ""
                lines.append(f"  {k:22s} network {p['network_s']:.2f} s, end to end {p['wall_s']:.2f} s, peak RSS "
                             f"{p['rss_mb']:.0f} MB{gpu}, Dice {p['dice']:.4f}, crops {p['crops']}")
    return "\n".join(lines) + "\n"


def _commit() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        res = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                             timeout=10)
        return res.stdout.strip() or None
    return None


def run_check(out: Path, *, tiny: bool, device: str | None = None, work: Path | None = None) -> dict:
    """Run every step; write ``out/gpu_check.json`` and ``out/gpu_check.txt``; return the results."""
    import tempfile

    size = SIZES[tiny]
    device = device or size["device"]
    out.mkdir(parents=True, exist_ok=True)
    tmp = None
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="coroseg_gpu_check_")
        work = Path(tmp.name)
    results = {"tiny": tiny, "device": device, "commit": _commit(), "steps": {}}
    steps = [("phantoms", lambda: step_phantoms(work, size)),
             ("train_step", lambda: step_train_step(work, size, device)),
             ("train_run", lambda: step_train_run(work, size, device)),
             ("ddp", lambda: step_ddp(work)),
             ("predict", lambda: step_predict(work, size, device))]
    results["environment"] = _versions()
    t_all = time.perf_counter()
    for name, fn in steps:
        t = time.perf_counter()
        try:
            rec = {"status": "ok", "result": fn()}
        except Exception as exc:  # a failed step is a finding: record it and go on
            rec = {"status": "failed", "error": f"{type(exc).__name__}: {str(exc)[:400]}",
                   "traceback": traceback.format_exc(limit=8)}
        rec["seconds"] = time.perf_counter() - t
        results["steps"][name] = rec
        results["total_s"] = time.perf_counter() - t_all
        (out / "gpu_check.json").write_text(json.dumps(results, indent=1, default=str))
        print(f"[{name}] {rec['status']} in {rec['seconds']:.1f} s", flush=True)
    (out / "gpu_check.txt").write_text(_text(results))
    if tmp is not None:
        tmp.cleanup()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="folder for gpu_check.json / gpu_check.txt")
    ap.add_argument("--tiny", action="store_true", help="CPU-sized steps (the test of this script)")
    ap.add_argument("--device", default=None, help="default: cuda (full) or cpu (--tiny)")
    ap.add_argument("--work", type=Path, default=None, help="keep the phantoms, run and predictions here")
    ap.add_argument("--ddp-probe", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ddp_probe:
        ddp_probe()
        return
    if args.out is None:
        ap.error("--out is required")
    results = run_check(args.out, tiny=args.tiny, device=args.device, work=args.work)
    print(_text(results))
    failed = [n for n, r in results["steps"].items() if r["status"] != "ok"]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

"""End-to-end ``predict`` speed and memory: ours vs the field's default sliding window, same network.

For each phantom, two methods run in separate processes (so each peak RSS is its own):

- **ours**: :func:`coroseg.infer.predict` — read, reorient, locator (coarse whole-volume pass)
  + centerline, crops at the centerline resampled straight from the input (batched,
  ``inference_mode``, bf16 on CUDA; ``--precision bf16`` on a CPU with bf16 instructions),
  iterative crops, resample back only where the network said anything, post-process, write
  mask + centerline files (.vtp, .gml, .mrk.json) + summary.json;
- **baseline**: the same trained network applied with MONAI ``sliding_window_inference`` over the
  whole resampled volume (overlap 0.25, fp32, MONAI's default constant blending, 4 windows per
  batch as in the issue's reference), threshold 0.5, resample back, write the mask. An attention
  network needs its prior channel: the baseline gets the same automatic centerline (the run's
  locator, timed as in ours) rasterised over the whole volume, so both see the same input and
  differ only in where the network runs and in the pipeline around it.

Prints per-stage wall time, peak RSS (and peak GPU memory on CUDA) and the Dice of both
against the phantom's label; over several scans also the ratio of mean times and the spread
(each scan's baseline / ours ratio, their median and range, each method's time range).

    python benchmarks/predict_speed.py --run RUN_DIR                    # an asoca-preset phantom
    python benchmarks/predict_speed.py --run RUN_DIR --preset small --cases 2
    python benchmarks/predict_speed.py                                  # trains a quick run first

Without ``--run`` a quick ``unet3d_crop`` is trained on ``small`` phantoms (few minutes on 2
cores); its Dice is low, the timings are what this measures.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import multiprocessing as mp
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import phantom_data
from coroseg.eval.metrics import dice


def _peak_rss_mb() -> float:
    """This process's peak resident memory. ``VmHWM`` rather than ``ru_maxrss``: Linux carries
    ``ru_maxrss`` over fork + exec, so a child would report at least its parent's peak."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _preimport() -> None:
    """The same heavy imports in both processes before any timing (a batch pays them once)."""
    import monai.inferers  # noqa: F401
    import monai.networks.nets  # noqa: F401
    import sklearn.cluster  # noqa: F401  (crop clustering; imported on first use)

    import coroseg.infer  # noqa: F401


def run_ours(run_dir: str, image: str, label: str, out: str, device: str, precision: str, q, tta: bool = False) -> None:
    _preimport()
    import torch

    from coroseg.infer import predict
    from coroseg.io.volume import read_volume
    from coroseg.models.run import load_run

    t = time.perf_counter()
    run = load_run(run_dir, device=device)
    t_load = time.perf_counter() - t
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    [s] = predict(run, image, out, device=device, progress=False, precision=precision, tta=tta)
    wall = time.perf_counter() - t
    s["timings_s"]["load_model"] = t_load
    s["timings_s"]["total"] += t_load
    rss = _peak_rss_mb()
    seg = read_volume(Path(out) / s["files"]["seg"], is_label=True)
    lab = read_volume(label, is_label=True)
    q.put({"wall_s": wall, "stages": s["timings_s"], "dice": dice(seg.array > 0, lab.array > 0), "rss_mb": rss,
           "gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None,
           "crops": s["n_crops"], "source": s["centerline_source"]})


def run_baseline(run_dir: str, image: str, label: str, out: str, device: str, precision: str, q) -> None:  # noqa: ARG001
    _preimport()
    import torch
    from monai.inferers import sliding_window_inference

    from coroseg.data.levels import network_input
    from coroseg.data.preprocess import normalise, to_model_grid
    from coroseg.infer.stages import StageInfo, attention, locate, model_input
    from coroseg.io.volume import orient_lps, read_volume, resample_to_grid, write_volume
    from coroseg.models.run import load_run

    dev = torch.device(device)
    st: dict[str, float] = {}
    t0 = t_all = time.perf_counter()
    run = load_run(run_dir, device=dev)
    cfg = run.config
    st["load_model"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    vol = read_volume(image)
    st["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    vol_lps = orient_lps(vol)
    vol_lps = network_input(vol_lps, cfg.intensity)[0]  # as predict does, once for both networks
    grid = to_model_grid(vol_lps, cfg.spacing)
    x = normalise(grid.array, cfg.intensity)
    st["preprocess"] = time.perf_counter() - t0
    att = None
    if cfg.attention:
        info = StageInfo()
        _, graph = locate(vol_lps, run.locator, cfg.locator, device=dev, info=info, referenced=True)
        st.update(info.timings)
        t0 = time.perf_counter()
        att = attention(graph, grid, cfg) if graph is not None else None
        st["attention"] = time.perf_counter() - t0
    chans, _ = model_input(x, att, cfg)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with torch.no_grad():
        inp = torch.from_numpy(chans[None]).to(dev)
        logits = sliding_window_inference(inp, tuple(cfg.patch_size), 4, run.model, overlap=0.25)
        prob = torch.softmax(logits.float(), 1)[0, 1].cpu().numpy()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    st["network"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    back = resample_to_grid(grid.with_array(prob.astype(np.float32)), vol, order=1, default=0.0)
    seg = vol.with_array((back.array >= 0.5).astype(np.uint8), is_label=True)
    st["resample_back"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_volume(seg, Path(out) / "baseline_seg.nii.gz")
    st["write"] = time.perf_counter() - t0
    wall = time.perf_counter() - t_all
    st["total"] = wall
    rss = _peak_rss_mb()
    lab = read_volume(label, is_label=True)
    q.put({"wall_s": wall, "stages": st, "dice": dice(seg.array > 0, lab.array > 0), "rss_mb": rss,
           "gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None,
           "crops": None, "source": "none (whole volume)"})


def _in_process(fn, *args, **kwargs) -> dict:
    """``fn(*args, queue, **kwargs)`` in a fresh process (its own peak memory); what it puts on the queue.

    A child that dies without answering (a crash, out of memory) raises instead of waiting for ever.
    """
    import queue

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=fn, args=(*args, q), kwargs=kwargs)
    p.start()
    while True:
        try:
            res = q.get(timeout=1.0)
            break
        except queue.Empty:
            if not p.is_alive():
                raise RuntimeError(f"{fn.__name__} exited with code {p.exitcode} without a result") from None
    p.join()
    return res


def _with_slices(case, n: int, dst: Path, mode: str = "resample"):
    """``case`` with ``n`` slices: resampled over the same z extent (image linear, label nearest),
    or (``mode="pad"``) at the same spacing with air slices added above and below."""
    from coroseg.io.volume import Volume, read_volume, resample_to_grid, write_volume

    dst.mkdir(parents=True, exist_ok=True)
    img = read_volume(case.image)
    sp = list(img.spacing)
    origin = img.origin
    if mode == "pad":
        before = (n - img.shape[0]) // 2
        origin = tuple(img.index_to_world(np.array([[-before, 0, 0]], float))[0])
    else:
        sp[0] = sp[0] * img.shape[0] / n
    # resample: the first slice stays where it was, the last lands within a (new) slice of the old last one
    ref = Volume(np.zeros((n, *img.shape[1:]), np.uint8), tuple(sp), origin, img.direction)
    out = []
    for path, is_label in ((case.image, False), (case.label, True)):
        vol = img if not is_label else read_volume(path, is_label=True)
        res = resample_to_grid(vol, ref, order=0 if is_label else 1, default=0 if is_label else -1024)
        if not is_label:
            res = res.with_array(res.array.astype(np.int16), is_label=False)
        out.append(write_volume(res, dst / f"{case.case_id}_{'label' if is_label else 'image'}.nrrd"))
    return dataclasses.replace(case, image=out[0], label=out[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=None, help="trained run folder (default: train a quick one)")
    ap.add_argument("--preset", default="asoca", choices=("small", "asoca"), help="phantom preset to predict")
    ap.add_argument("--cases", type=int, default=1, help="phantoms to predict")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                    help="ours only (the baseline is fp32 by definition): auto = bf16 on CUDA, fp32 on CPU")
    ap.add_argument("--seed", type=int, default=100, help="phantom seed (differs from training phantoms)")
    ap.add_argument("--data", type=Path, default=None, help="dataset folder (default: generate phantoms)")
    ap.add_argument("--out", type=Path, default=None, help="keep files here (default: a temporary folder)")
    ap.add_argument("--slices", type=int, default=None,
                    help="give each phantom this many slices (e.g. 400, a 512 x 512 x 400 scan) to measure "
                         "memory on a longer scan; see --z-mode")
    ap.add_argument("--z-mode", default="resample", choices=("resample", "pad"),
                    help="resample: thinner slices over the same extent; pad: same slice spacing, air slices "
                         "added above and below (a longer field of view)")
    args = ap.parse_args()

    import torch

    from coroseg.data.layouts import load_dataset
    from coroseg.synth import synth_dataset

    tmp = tempfile.TemporaryDirectory(prefix="coroseg_speed_")
    work = args.out or Path(tmp.name)
    run_dir = args.run
    if run_dir is None:
        from coroseg.train import train

        synth_dataset(work / "train_data", 5, preset="small", seed=0, progress=False)
        run_dir = work / "run"
        t = time.perf_counter()
        train(work / "train_data", run_dir, model="unet3d_crop", epochs=1000, batch_size=2, device=args.device,
              patch_budget=200, early_stop=None, progress=False, channels=[8, 16, 32, 64], patch_size=[48, 48, 48])
        print(f"trained a quick unet3d_crop in {time.perf_counter() - t:.1f} s")
    data = phantom_data(args.data, work / "phantoms", cases=args.cases, preset=args.preset, seed=args.seed)
    cases = load_dataset(data)[: args.cases]
    if args.slices:
        cases = [_with_slices(c, args.slices, work / "phantoms_z", args.z_mode) for c in cases]

    print(f"machine: {platform.platform()}, python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))
    cfg = json.loads((Path(run_dir) / "config.json").read_text())
    print(f"run: {run_dir} ({cfg['model']}, spacing {cfg['spacing']}, patch {cfg['patch_size']})")
    summary = []
    for case in cases:
        from coroseg.io.volume import read_volume

        shape = read_volume(case.image).shape
        res = {}
        for name, fn in (("baseline", run_baseline), ("ours", run_ours)):
            out = work / f"out_{name}_{case.case_id}"
            res[name] = _in_process(fn, str(run_dir), str(case.image), str(case.label), str(out), args.device,
                                    args.precision)
        print(f"\ncase {case.case_id} {'x'.join(map(str, shape))}")
        order = ["load_model", "read", "preprocess", "locator_preprocess", "locator_network", "locator_centerline",
                 "crop_centres", "crop_network", "crop_iterate_centerline", "network", "resample_back",
                 "postprocess", "centerline_output", "write", "total"]
        stages = sorted(set(res["baseline"]["stages"]) | set(res["ours"]["stages"]),
                        key=lambda s: (order.index(s) if s in order else len(order) - 1, s))
        print(f"{'stage (s)':28s} {'baseline':>10s} {'ours':>10s}")
        for s in stages:
            b, o = res["baseline"]["stages"].get(s), res["ours"]["stages"].get(s)
            print(f"{s:28s} " + " ".join(f"{v:10.3f}" if v is not None else f"{'-':>10s}" for v in (b, o)))
        for k, label in (("wall_s", "end to end wall (s)"), ("rss_mb", "peak RSS (MB)"), ("gpu_mb", "peak GPU (MB)"),
                         ("dice", "Dice vs label")):
            b, o = res["baseline"][k], res["ours"][k]
            if b is None and o is None:
                continue
            print(f"{label:28s} {b:10.4g} {o:10.4g}")
        print(f"{'speed-up (baseline / ours)':28s} {res['baseline']['wall_s'] / res['ours']['wall_s']:21.2f}x"
              f"   (ours: {res['ours']['crops']} crops, prior {res['ours']['source']})")
        summary.append(res)
    if len(summary) > 1:
        def mean(name: str, key: str) -> float:
            return float(np.mean([r[name][key] for r in summary]))

        print(f"\nmean over {len(summary)} cases: baseline {mean('baseline', 'wall_s'):.1f} s, ours "
              f"{mean('ours', 'wall_s'):.1f} s, speed-up {mean('baseline', 'wall_s') / mean('ours', 'wall_s'):.2f}x; "
              f"Dice baseline {mean('baseline', 'dice'):.4f}, ours {mean('ours', 'dice'):.4f}; max peak RSS "
              f"baseline {max(r['baseline']['rss_mb'] for r in summary):.0f} MB, ours "
              f"{max(r['ours']['rss_mb'] for r in summary):.0f} MB")
        print(spread_lines(summary))


def spread_lines(summary: list[dict]) -> str:
    """The spread over scans, not one ratio: each scan's baseline / ours time ratio, their median and
    range, and the range of each method's end-to-end time."""
    ratios = [r["baseline"]["wall_s"] / r["ours"]["wall_s"] for r in summary]
    ours = [r["ours"]["wall_s"] for r in summary]
    base = [r["baseline"]["wall_s"] for r in summary]
    return (f"per-scan speed-up (baseline / ours): {', '.join(f'{x:.2f}x' for x in ratios)}; "
            f"median {float(np.median(ratios)):.2f}x, range {min(ratios):.2f}-{max(ratios):.2f}x over "
            f"{len(ratios)} scans\n"
            f"end to end per scan: baseline {min(base):.1f}-{max(base):.1f} s, ours {min(ours):.1f}-{max(ours):.1f} s")


if __name__ == "__main__":
    main()

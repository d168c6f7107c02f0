"""The receiver at the published width: ``gesco-cityscapes-256`` (674.7M parameters) with seeded
random weights at a small image, fp32 against its nearest-rounding W8 / W4 / W8A8 files.

    .venv/bin/python bench/full_width.py --work /tmp/fw           # 64x128, 1 and 2 threads, 2 rounds

Step 1 writes the files into ``--work`` (once; rerunning reuses them) and times their making:
``quantize(iters=0, weight_init="minmax")``, W8A8 with activation ranges from 2 random maps x 2
steps. Step 2 runs every mode in a fresh process per (round, threads), modes alternated: load
time, one warm-up and ``--reps`` timed guided DDIM steps (batch 2), peak RSS of the process
minus that of a process that imports the same modules and loads nothing. Latency and memory do
not depend on the weight values. Writes results/full_width.{json,md} (docs/results.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import save

from qgesco.runtime.bench import machine, measure_step, peak_rss_mb, random_maps, randomize_zero_init

PRESET = "gesco-cityscapes-256"
#: name: (file, backend, label)
MODES = {
    "fp32": ("fp32", "fp32", "fp32 eager (load_model, channels_last)"),
    "w8-wo": ("w8", "weight-only", "W8 weight-only"),
    "w8": ("w8", "auto", "W8 default (auto)"),
    "w8a8": ("w8a8", "auto", "W8A8 default (auto: int8, file's grids)"),
    "w4": ("w4", "auto", "W4 default (auto: weight-only, packed)"),
}
FILES = {"w8": dict(weight_bits=8), "w4": dict(weight_bits=4), "w8a8": dict(weight_bits=8, act_bits=8)}


def prepare(work: Path, hw: tuple[int, int], files: set[str]) -> dict:
    """fp32 and quantized files in ``work``, with the seconds each took to make."""
    from qgesco.models.checkpoint import create_model, save_model
    from qgesco.models.presets import get_preset
    from qgesco.quant import build_calibration_set, quantize, save_quantized

    log = work / "prepare.json"
    if log.is_file():
        return json.loads(log.read_text())
    work.mkdir(parents=True, exist_ok=True)
    times = {}
    start = time.perf_counter()
    model = randomize_zero_init(create_model(get_preset(PRESET).replace(image_hw=hw), seed=0), 0).eval()
    if not (work / "fp32.safetensors").is_file():
        save_model(model, work / "fp32.safetensors")
        times["fp32 build+save"] = time.perf_counter() - start
    for name, kwargs in FILES.items():
        if name not in files or (work / f"{name}.safetensors").is_file():  # made by an earlier, interrupted run
            continue
        start = time.perf_counter()
        calib = None
        if "act_bits" in kwargs:
            calib = build_calibration_set(
                model,
                random_maps(model.config, 2, seed=1),
                num_maps=2,
                psnrs=(100.0,),
                steps=2,
                every=1,
                progress=False,
            )
        qmodel = quantize(model, calib, iters=0, weight_init="minmax", progress=False, **kwargs)
        save_quantized(qmodel, work / f"{name}.safetensors", note="bench/full_width.py: nearest rounding, minmax")
        times[f"{name} quantize+save"] = time.perf_counter() - start
        del qmodel, calib
    info = {
        "seconds": times,
        "bytes": {p.stem: p.stat().st_size for p in work.glob("*.safetensors")},
        "config": model.config.to_dict(),
        "params": sum(p.numel() for p in model.parameters()),
    }
    log.write_text(json.dumps(info, indent=2))
    return info


def worker(mode: str, work: Path, threads: int, reps: int) -> dict:
    from qgesco.api import load_model
    from qgesco.models.config import UNetConfig
    from qgesco.runtime import load_runtime

    torch.set_num_threads(threads)
    if mode == "baseline":
        return {"peak_rss_mb": peak_rss_mb()}
    file, backend, _ = MODES[mode]
    start = time.perf_counter()
    path = work / f"{file}.safetensors"
    model = load_model(path) if backend == "fp32" else load_runtime(path, backend=backend)
    load_s = time.perf_counter() - start
    load_rss = peak_rss_mb()
    cfg = UNetConfig.from_dict(json.loads((work / "prepare.json").read_text())["config"])
    times = measure_step(model, cfg, reps, warmup=1)["step_times_ms"]
    return {
        "load_s": load_s,
        "load_peak_rss_mb": load_rss,
        "peak_rss_mb": peak_rss_mb(),
        "step_ms": times,
        "backend": list(getattr(model, "runtime_backend", ("fp32", ""))),
    }


def spawn(mode: str, work: Path, threads: int, reps: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        mode,
        "--work",
        str(work),
        "--threads",
        str(threads),
        "--reps",
        str(reps),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"{mode} ({threads} threads) failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def runs_modes(runs: dict) -> list[str]:
    return list(dict.fromkeys(m for m, _ in runs))


def table(info: dict, runs: dict, baseline: float, threads: list[int]) -> str:
    fp = {t: statistics.median(runs[("fp32", t)]["step"]) for t in threads}
    fp_rss = max(runs[("fp32", t)]["rss"] for t in threads) - baseline
    head = (
        "| mode | backend | "
        + " | ".join(f"step {t} thr (x fp32)" for t in threads)
        + " | peak RSS - baseline (x fp32) | load s | file (x fp32) |"
    )
    lines = [head, "|" + "---|" * (6 + len(threads) - 1)]
    for mode, (file, _, label) in ((m, MODES[m]) for m in runs_modes(runs)):
        rows = [runs[(mode, t)] for t in threads]
        steps = [statistics.median(r["step"]) for r in rows]
        rss = max(r["rss"] for r in rows) - baseline
        cells = " | ".join(f"{s / 1000:.2f} s ({s / fp[t]:.2f}x)" for s, t in zip(steps, threads))
        ratio = info["bytes"][file] / info["bytes"]["fp32"]
        lines.append(
            f"| {label} | {rows[0]['backend']} | {cells} | {rss / 1000:.2f} GB ({rss / fp_rss:.2f}x) | "
            f"{statistics.median(sum((r['load'] for r in rows), [])):.1f} | {ratio:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="folder for the model files (about 4.5 GB)")
    ap.add_argument("--hw", default="64,128", help="image height,width (default 64,128)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=2, help="fresh processes per mode and thread count")
    ap.add_argument("--reps", type=int, default=1, help="timed steps per process (after one warm-up)")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    if args.worker:
        print(json.dumps(worker(args.worker, args.work, threads[0], args.reps)))
        return
    modes = args.modes.split(",")
    info = prepare(args.work, tuple(int(v) for v in args.hw.split(",")), {MODES[m][0] for m in modes})
    baseline = spawn("baseline", args.work, 1, 1)["peak_rss_mb"]
    runs = {(m, t): {"step": [], "rss": 0.0, "load": []} for m in modes for t in threads}
    for r in range(args.rounds):
        for t in threads:
            for m in modes if r % 2 == 0 else modes[::-1]:  # alternated: no mode always runs first
                out = spawn(m, args.work, t, args.reps)
                run = runs[(m, t)]
                run["step"] += out["step_ms"]
                run["rss"] = max(run["rss"], out["peak_rss_mb"])
                run["load"].append(out["load_s"])
                run["backend"] = out["backend"][0]
                print(
                    f"round {r} {m} {t} thr: step {out['step_ms']} ms, load {out['load_s']:.1f} s, "
                    f"peak RSS {out['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
    text = table(info, runs, baseline, threads)
    load = os.getloadavg()
    text += (
        f"\n{PRESET} widths, {info['params'] / 1e6:.1f}M parameters, random weights, image {args.hw}, one guided "
        f"DDIM step = batch 2; median of {args.rounds} fresh processes x {args.reps} timed step(s). Baseline RSS "
        f"{baseline:.0f} MB. Making the files: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in info["seconds"].items())
        + f". Load average at the end {load[0]:.2f} (2 cores shared with niced jobs).\n"
    )
    save(
        "full_width",
        {
            "runs": {f"{m}@{t}": v for (m, t), v in runs.items()},
            "prepare": info,
            "baseline_mb": baseline,
            "machine_int8": machine(),
        },
        text,
        "python bench/full_width.py " + " ".join(sys.argv[1:]),
    )


if __name__ == "__main__":
    main()

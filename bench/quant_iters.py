"""AdaRound iterations per block vs quality on the demo model: block reconstruction error,
model output error and LPIPS for W8 / W4 (iteration sweep) and W8A8 / W4A8 (at the knee),
with the wall time of every calibration. Decides ``DEFAULT_ITERS`` of ``qgesco quantize``.

The paper's grid (250 .. 20000 iterations per block, 256 calibration samples, GPU) costs
days on a 2-core CPU: one AdaRound iteration over all blocks costs about a forward and
backward pass of the whole network. The default run is cut to fit about a quarter of an
hour:

- calibration set: 8 CamVid-train maps at the paper's 8 PSNR levels, DDIM 20, one record
  every 10 steps: 16 samples over 16 timesteps (paper: 64 maps, DDIM 100, every 25: 256);
- AdaRound at batch 2 (quantize's default is 8; larger batches only lower the gradient
  noise, so the knee found here is an upper bound for them);
- sweep ``W4:0,100,250 W8:0,100``, then W8A8 and W4A8 at the knee: the fewest swept
  iterations that reach 90 % of the W4 sweep's reduction of the mean block error (block
  errors are measured on the calibration set, so the held-out output error and LPIPS below
  are the check against overfitting 16 samples);
- quality on 8 CamVid-val maps sent at 100 dB: LPIPS of DDIM-10 images (guidance 2) against
  the float model's images from the same noise (the cost of quantization alone) and against
  the photos; output error: relative L2 error of one forward on those photos noised to
  t = 0..999 (less noisy than LPIPS on 8 images);
- two worker processes with one thread each (configurations are independent; two processes
  use 2 cores better than two threads on these small ops), longest configurations first;
  ``quantize_s`` is one calibration's wall time on one core.

Duration: ``--estimate`` times small pieces on one thread (about 4 min; CPU time, so it
holds while other work shares the machine) and prints the predicted duration of the grid
without running it. Beside the demo training run, on the development machine's 2-core AMD
EPYC: 79 s fixed per configuration (weight ranges, block captures and errors over the 16
calibration samples, probe images; 125 s with A8) plus 1.95 s per AdaRound iteration over
the 30 blocks; predicted 17 min with the knee at 100, 21 min at 250. Each further 100
iterations of one configuration add about 3 min; ``--sweep "W4:0,250,1000 W8:0,250,1000"``
predicts 55 min (knee 250) to 76 min (knee 1000).

    python bench/quant_iters.py --model runs/camvid-demo/ema.safetensors --estimate   # time it
    python bench/quant_iters.py --model runs/camvid-demo/ema.safetensors              # the benchmark
    python bench/quant_iters.py --model /tmp/tiny.safetensors --data synthetic:8:cityscapes \\
        --calib-data synthetic:8:cityscapes --maps 2 --steps 4 --every 2 --sweep "W4:0,2" \\
        --act-configs W4A8 --samples 2 --sample-steps 2 --no-save                       # smoke run

(the smoke model: the tiny reference weights, ``m = create_model("tiny-ref");
m.load_state_dict(load_file("../shared/reference/tiny_unet_weights.safetensors"));
save_model(m, "/tmp/tiny.safetensors")``).
Results: ``bench/results/quant_iters.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import RESULTS, markdown_table, save  # noqa: E402

from qgesco.channel import AWGN, encode, transmit  # noqa: E402
from qgesco.data import open_dataset  # noqa: E402
from qgesco.diffusion import create_diffusion  # noqa: E402
from qgesco.fileio import atomic_path, load_tensors, save_tensors  # noqa: E402
from qgesco.metrics import lpips  # noqa: E402
from qgesco.metrics.perceptual import MIN_SIDE  # noqa: E402
from qgesco.models.checkpoint import load_float_model  # noqa: E402
from qgesco.quant import (  # noqa: E402
    CalibrationRecipe,
    CalibrationSet,
    QuantConfig,
    build_calibration_set,
    load_quantized,
    quantize,
    save_quantized,
)
from qgesco.quant.digest import weights_sha256  # noqa: E402
from qgesco.receiver import regenerate, to_unit  # noqa: E402

CONFIGS = {"W8": (8, None), "W4": (4, None), "W8A8": (8, 8), "W4A8": (4, 8)}
#: Share of the sweep's block-error reduction that defines the knee.
KNEE_SHARE = 0.9
COLUMNS = [
    "config",
    "iters",
    "quantize_s",
    "mean_block_error",
    "learned_blocks",
    "output_error",
    "lpips_vs_fp",
    "lpips_vs_photo",
]


def parse_sweep(text: str) -> list[tuple[str, int]]:
    """``"W4:0,100 W8:0"`` -> ``[("W4", 0), ("W4", 100), ("W8", 0)]``."""
    jobs = []
    for part in text.split():
        config, _, iters = part.partition(":")
        if config not in CONFIGS or not iters:
            sys.exit(f"--sweep {part!r}: write CONFIG:ITERS,ITERS with CONFIG one of {', '.join(CONFIGS)}")
        jobs += [(config, int(i)) for i in iters.split(",")]
    return jobs


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def make_probe(model, args) -> dict[str, torch.Tensor]:
    """Fixed inputs every configuration is judged on, and the float model's answers to them."""
    cfg = model.config
    data = open_dataset(args.data, image_hw=cfg.image_hw)
    items = [data[int(i)] for i in np.linspace(0, len(data) - 1, min(args.samples, len(data))).round()]
    g = torch.Generator().manual_seed(args.seed)
    instance = None if cfg.no_instance else torch.stack([s.instance for s in items])
    y = transmit(
        encode(torch.stack([s.label for s in items]), cfg.num_classes, instance),
        AWGN(args.psnr),
        cfg.num_classes,
        generator=g,
    )
    images = torch.stack([s.image for s in items])
    noise = torch.randn(images.shape, generator=g)
    t = torch.linspace(0, 999, len(items)).round().long()
    x_t = create_diffusion().q_sample(images, t, torch.randn(images.shape, generator=g))
    with torch.no_grad():
        out = model(x_t, t, y)
    reference = to_unit(regenerate(model, y, sampler=f"ddim{args.sample_steps}", guidance=args.guidance, noise=noise))
    return {"y": y, "noise": noise, "photos": to_unit(images), "x_t": x_t, "t": t, "out": out, "reference": reference}


def lpips_mean(images: torch.Tensor, reference: torch.Tensor) -> float | None:
    return round(lpips(images, reference).mean().item(), 4) if min(images.shape[-2:]) >= MIN_SIDE else None


def run_config(job: dict) -> dict:
    """Quantize one configuration and judge it on the probe (runs in a worker process)."""
    torch.set_num_threads(job["threads"])
    model, calib, probe = (
        load_float_model(job["model"]),
        CalibrationSet.load(job["calib"]),
        load_tensors(job["probe"])[0],
    )
    wbits, abits = CONFIGS[job["config"]]
    kept = Path(job["keep_models"], f"{job['config']}-{job['iters']}.safetensors") if job["keep_models"] else None
    if kept is not None and kept.exists():
        qmodel = load_quantized(kept)
        made = qmodel.quant_report
        if (made.get("model_sha256"), made.get("batch_size"), (made.get("calibration") or {}).get("sha256")) != (
            job["model_sha256"],
            job["batch_size"],
            calib.digest(),
        ):
            raise ValueError(
                f"{kept} was made from other weights (or records none), another batch size or calibration set: "
                "give a new --keep-models folder"
            )
    else:
        qmodel = quantize(
            model,
            calib,
            QuantConfig(
                weight_bits=wbits, act_bits=abits, iters=job["iters"], batch_size=job["batch_size"], seed=job["seed"]
            ),
        )
        if kept is not None:
            save_quantized(qmodel, kept, model=job["model"])
    blocks = qmodel.quant_report["blocks"]
    with torch.no_grad():
        output_error = rel_err(qmodel(probe["x_t"], probe["t"], probe["y"]), probe["out"])
    images = to_unit(
        regenerate(
            qmodel, probe["y"], sampler=f"ddim{job['sample_steps']}", guidance=job["guidance"], noise=probe["noise"]
        )
    )
    return {
        "config": job["config"],
        "iters": job["iters"],
        "quantize_s": qmodel.quant_report["seconds"],
        "mean_block_error": float(f"{np.mean([b['error'] for b in blocks]):.4g}"),
        "block_errors": [b["error"] for b in blocks],
        "learned_blocks": f"{qmodel.quant_report['blocks_with_learned_rounding']}/{len(blocks)}",
        "output_error": round(output_error, 5),
        "lpips_vs_fp": lpips_mean(images, probe["reference"]),
        "lpips_vs_photo": lpips_mean(images, probe["photos"]),
    }


def run_all(jobs: list[dict], workers: int) -> list[dict]:
    """Longest first over ``workers`` processes (1: in this process); prints the rows."""
    jobs = sorted(jobs, key=lambda j: -j["iters"])
    if workers == 1:
        results = [run_config(j) for j in jobs]
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(run_config, jobs))
    for row in results:
        print({k: v for k, v in row.items() if k != "block_errors"}, flush=True)
    return sorted(results, key=lambda r: (list(CONFIGS).index(r["config"]), r["iters"]))


def find_knee(rows: list[dict], config: str) -> int | None:
    """Fewest swept iterations reaching KNEE_SHARE of the sweep's block-error reduction."""
    sweep = {r["iters"]: r["mean_block_error"] for r in rows if r["config"] == config}
    if 0 not in sweep or len(sweep) < 2:
        return None
    target = sweep[0] - KNEE_SHARE * (sweep[0] - min(sweep.values()))
    return min(
        (i for i, e in sweep.items() if i > 0 and e <= target), default=min(i for i in sweep if i > 0)
    )  # no gain: fewest


def schedule_s(costs: list[float], workers: int) -> float:
    """Makespan of longest-first scheduling of ``costs`` over ``workers``."""
    loads = [0.0] * workers
    for c in sorted(costs, reverse=True):
        loads[loads.index(min(loads))] += c
    return max(loads)


def estimate(model, args, sweep: list[tuple[str, int]], act_configs: list[str]) -> None:
    """Time small pieces and predict the duration of the grid on free cores.

    Pieces run on one thread and are timed in CPU time, which is what a worker's wall time
    is on a free core: the prediction holds even while other work shares the machine.
    """
    torch.set_num_threads(1)
    mini = build_calibration_set(
        model,
        open_dataset(args.calib_data, image_hw=model.config.image_hw),
        CalibrationRecipe(num_maps=2, steps=2, every=2, seed=args.seed),
    )

    def cpu_s(fn) -> float:
        started = time.process_time()
        fn()
        return time.process_time() - started

    def timed(calib, **kwargs) -> float:
        return cpu_s(lambda: quantize(model, calib, QuantConfig(batch_size=args.batch_size, **kwargs)))

    k = 8
    search = timed(None, weight_bits=4, iters=0)
    fixed_w, fixed_a = timed(mini, weight_bits=4, iters=0), timed(mini, weight_bits=4, act_bits=8, iters=0)
    step_w = (timed(mini, weight_bits=4, iters=k) - fixed_w) / k
    step_a = (timed(mini, weight_bits=4, act_bits=8, iters=k) - fixed_a) / k
    n, hw = 2 * args.samples, model.config.image_hw
    with torch.no_grad():
        forward = cpu_s(
            lambda: model(
                torch.randn(n, 3, *hw),
                torch.zeros(n, dtype=torch.long),
                torch.zeros(n, model.config.label_channels, *hw),
            )
        )  # one guided step of the probe
    samples = args.maps * (args.steps // args.every)
    per_config_w = search + (fixed_w - search) * samples / len(mini) + args.sample_steps * forward
    per_config_a = search + (fixed_a - search) * samples / len(mini) + args.sample_steps * forward
    setup = (
        (args.steps * args.maps / args.samples + args.sample_steps) * forward / min(args.threads, 1.6)
    )  # 2 threads: ~1.6x
    phase1 = schedule_s([per_config_w + i * step_w for _, i in sweep], args.workers)
    print(
        f"per configuration: {per_config_w:.0f} s fixed ({per_config_a:.0f} s with A8) for {samples} calibration "
        f"samples, {step_w:.2f} s per AdaRound iteration over all blocks ({step_a:.2f} s with A8); setup {setup:.0f} s"
    )
    for knee in sorted({i for _, i in sweep if i > 0}):
        phase2 = schedule_s([per_config_a + knee * step_a for _ in act_configs], args.workers)
        print(f"predicted duration with the knee at {knee}: {(setup + phase1 + phase2) / 60:.0f} min")


def plot(rows: list[dict], path: Path) -> None:
    iters = sorted({r["iters"] for r in rows if r["config"] in CONFIGS})
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key, label in zip(
        axes,
        ("mean_block_error", "output_error", "lpips_vs_fp"),
        ("mean block reconstruction error", "output rel. error", "LPIPS vs fp32 images"),
    ):
        for config in CONFIGS:
            points = sorted((r["iters"], r[key]) for r in rows if r["config"] == config and r.get(key) is not None)
            if points:
                ax.plot(
                    *zip(*points),
                    marker="o" if len(points) > 1 else "s",
                    label=config,
                    linestyle="-" if len(points) > 1 else "",
                )
        ax.set_xscale("symlog", linthresh=min([i for i in iters if i] or [1]))
        ax.set_xticks(iters, [str(i) for i in iters], minor=False)
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        if key != "lpips_vs_fp":  # LPIPS is 0 where the images are identical
            ax.set_yscale("log")
        ax.set_xlabel("AdaRound iterations per block")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="fp32 model file (or bundled model name)")
    ap.add_argument("--data", default="camvid:val", help="maps and photos the configurations are judged on")
    ap.add_argument("--calib-data", default="camvid:train", help="dataset of the calibration set")
    ap.add_argument("--calib", help="reuse this calibration set instead of recording one")
    ap.add_argument("--maps", type=int, default=8, help="calibration maps (default 8; paper 64)")
    ap.add_argument(
        "--steps", type=int, default=20, help="DDIM steps of the calibration trajectories (default 20; paper 100)"
    )
    ap.add_argument(
        "--every", type=int, default=10, help="one record per map every this many steps (default 10; paper 25)"
    )
    ap.add_argument("--sweep", default="W4:0,100,250 W8:0,100", help="CONFIG:ITERS,... pairs, space-separated")
    ap.add_argument(
        "--act-configs", default="W8A8,W4A8", help="configurations run at the knee (comma-separated; '' for none)"
    )
    ap.add_argument("--act-iters", help="iterations of --act-configs (default: the knee of the --knee-config sweep)")
    ap.add_argument("--knee-config", default="W4")
    ap.add_argument("--batch-size", type=int, default=2, help="AdaRound batch (default 2)")
    ap.add_argument("--samples", type=int, default=8, help="probe images (default 8)")
    ap.add_argument("--sample-steps", type=int, default=10, help="DDIM steps of the probe images (default 10)")
    ap.add_argument("--psnr", type=float, default=100.0, help="channel PSNR of the probe maps")
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=2, help="worker processes, one thread each (1: run in this process)")
    ap.add_argument(
        "--threads", type=int, default=2, help="threads of this process (calibration set, reference images)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--estimate", action="store_true", help="time small pieces and predict the duration; run nothing else"
    )
    ap.add_argument("--no-save", action="store_true", help="print the table only (smoke runs)")
    ap.add_argument(
        "--keep-models",
        metavar="DIR",
        help="keep the calibration set and every quantized model "
        "(CONFIG-ITERS.safetensors) in DIR, e.g. for qgesco evaluate; a rerun with the same DIR reuses them "
        "and judges again only (so a larger --sweep costs only its new configurations)",
    )
    args = ap.parse_args()
    sweep = parse_sweep(args.sweep)
    act_configs = [c for c in args.act_configs.split(",") if c]
    if set(act_configs) - set(CONFIGS):
        sys.exit(f"--act-configs: choose from {', '.join(CONFIGS)}")
    knee_sweep = {i for c, i in sweep if c == args.knee_config}
    if act_configs and args.act_iters is None and not (0 in knee_sweep and len(knee_sweep) > 1):
        sys.exit(f"no knee to find: --sweep lacks {args.knee_config} at 0 and at more iterations; pass --act-iters")
    model = load_float_model(args.model)
    if args.estimate:
        estimate(model, args, sweep, act_configs)
        return
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        kept_calib = Path(args.keep_models or "", "calib.safetensors")
        reused = bool(args.calib or (args.keep_models and kept_calib.exists()))
        if reused:
            calib = CalibrationSet.load(args.calib or kept_calib)
        else:
            calib = build_calibration_set(
                model,
                open_dataset(args.calib_data, image_hw=model.config.image_hw),
                CalibrationRecipe(
                    num_maps=args.maps, steps=args.steps, every=args.every, guidance=args.guidance, seed=args.seed
                ),
            )
        calib_seconds = (
            calib.info.get("provenance", {}).get("seconds") if reused else round(time.perf_counter() - started, 1)
        )
        calib.save(Path(tmp, "calib.safetensors"))
        if args.keep_models and not kept_calib.exists():
            kept_calib.parent.mkdir(parents=True, exist_ok=True)
            calib.save(kept_calib)
        probe = make_probe(model, args)
        save_tensors(Path(tmp, "probe.safetensors"), probe, {"kind": "bench-probe"})
        base = {
            "model": str(args.model),
            "model_sha256": weights_sha256(model),
            "calib": str(Path(tmp, "calib.safetensors")),
            "probe": str(Path(tmp, "probe.safetensors")),
            "batch_size": args.batch_size,
            "seed": args.seed,
            "sample_steps": args.sample_steps,
            "guidance": args.guidance,
            "threads": 1 if args.workers > 1 else args.threads,
            "keep_models": args.keep_models,
        }
        rows = run_all([{**base, "config": c, "iters": i} for c, i in sweep], args.workers)
        knee = find_knee(rows, args.knee_config)
        if act_configs:
            act_iters = knee if args.act_iters is None else int(args.act_iters)
            rows += run_all([{**base, "config": c, "iters": act_iters} for c in act_configs], args.workers)
    rows.insert(0, {"config": "fp32", "iters": "-", "lpips_vs_photo": lpips_mean(probe["reference"], probe["photos"])})
    summary = calib.summary()
    table = markdown_table(rows, COLUMNS)
    table += (
        f"\nKnee ({KNEE_SHARE:.0%} of the {args.knee_config} sweep's block-error reduction): {knee} iterations. "
        f"Calibration set: {summary['samples']} samples from {summary['maps']} maps, "
        f"{len(summary['timesteps'])} timesteps, {'reused' if reused else 'recorded'} (recording took "
        f"{calib_seconds} s). AdaRound batch {args.batch_size}; "
        f"quantize_s is the wall time of one calibration on one core ({args.workers} run side by side). "
        f"Probe: {len(probe['y'])} maps of {args.data} at {args.psnr:g} dB, DDIM {args.sample_steps}, guidance "
        f"{args.guidance:g}.\n"
    )
    if args.no_save:
        print(table)
        return
    save(
        "quant_iters",
        {"rows": rows, "knee": knee, "calibration": {**summary, "seconds": calib_seconds}, "args": vars(args)},
        table,
        "python bench/quant_iters.py " + " ".join(sys.argv[1:]),
    )
    plot(rows, RESULTS / "quant_iters.png")
    print(f"results in {RESULTS}")


if __name__ == "__main__":
    main()

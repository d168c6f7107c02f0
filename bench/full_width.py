"""The receiver at the published width: ``gesco-cityscapes-256`` (674.7M parameters) with seeded
random weights at a small image, fp32 against its nearest-rounding W8 / W4 / W8A8 files.

    .venv/bin/python bench/full_width.py --work /tmp/fw           # 64x128, 1 and 2 threads, 2 rounds
    .venv/bin/python bench/full_width.py --work /tmp/fw --threads 1 --modes fp32,w8a8,onnx-fp32,ov-fp32,ov-w8a8 \
        --name full_width_graphs                                  # the exported graphs (OpenVINO: pip install openvino)

Step 1 writes the files into ``--work`` (once; rerunning reuses them) and times their making:
``QuantConfig(iters=0)`` with the default per-channel clipping search (``weight_init="lp"``), W8A8
with activation ranges from 2 random maps x 2 steps. Step 2 runs every mode in a fresh process per
(round, threads), modes alternated: load time, one warm-up and ``--reps`` timed guided DDIM steps
(batch 2), peak RSS of the process minus that of a process that imports the same modules and
loads nothing; the modes ``auto`` picks on this CPU are marked default. Latency and memory do
not depend on the weight values. Writes results/full_width.{json,md} (docs/results.md), or
results/NAME.{json,md} with ``--name``. The graph modes (onnxruntime, OpenVINO) export
``FILE.onnx`` (+ ``.onnx.data`` for fp32) into ``--work`` once. The file making, worker processes
and alternation are bench/receiver.py's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from common import save
from receiver import AUTOCAST, GRAPH_BACKENDS, PT2E, QUANT, Mode, alternate, installed_version, spawn, write_checkpoints

from qgesco.fileio import read_meta
from qgesco.models.config import UNetConfig
from qgesco.runtime import default_backend
from qgesco.runtime.timing import randomize_zero_init

PRESET = "gesco-cityscapes-256"
MODES = {
    m.name: m
    for m in (
        Mode("fp32", "fp32", "auto", "fp32 eager (load_model, channels_last)"),
        Mode("fp32-autocast-bf16", "fp32", AUTOCAST, "fp32 file under bf16 autocast"),
        Mode("bf16", "fp32", "bf16", "bf16 backend (load_model(backend='bf16'), one copy)"),
        Mode("w8-wo", "w8", "weight-only", "W8 weight-only (exact)"),
        Mode(
            "w8",
            "w8",
            "auto",
            "W8 default (int8 where it pays, dynamic grids; skip convs weight-only, in bf16 if native)",
        ),
        Mode("w8a8", "w8a8", "auto", "W8A8 (int8 on the file's grids)"),
        Mode("pt2e", "fp32", PT2E, "fp32 file through PT2E x86 int8 (torchao, its own recipe) + inductor"),
        Mode("w4", "w4", "auto", "W4 (weight-only, packed)"),
        Mode("onnx-fp32", "fp32", "onnxruntime", "fp32 ONNX (onnxruntime)"),
        Mode("onnx-w8a8", "w8a8", "onnxruntime", "W8A8 QDQ ONNX (onnxruntime)"),
        Mode("ov-fp32", "fp32", "openvino", "fp32 ONNX (OpenVINO)"),
        Mode("ov-w8a8", "w8a8", "openvino", "W8A8 QDQ ONNX (OpenVINO)"),
        Mode("ov-w7a8s", "w7a8s", "openvino", "W7A8 symmetric QDQ ONNX (OpenVINO)"),
    )
}
#: The default modes: checkpoints as qgesco.load_model runs them.
EAGER = "fp32,w8-wo,w8,w8a8,w4"


def prepare(work: Path, hw: tuple[int, int], files: set[str]) -> dict:
    """fp32 and quantized files in ``work``, with the seconds each took to make."""
    from qgesco.models.checkpoint import create_model
    from qgesco.models.presets import get_preset

    log = work / "prepare.json"
    if log.is_file():
        return json.loads(log.read_text())
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model = randomize_zero_init(create_model(get_preset(PRESET).replace(image_hw=hw), seed=0), 0).eval()
    built = time.perf_counter() - start
    wanted = ["fp32", *(n for n in QUANT if n in files)]
    missing = [n for n in wanted if not (work / f"{n}.safetensors").is_file()]
    seconds = write_checkpoints(  # files already there were made by an earlier, interrupted run
        model, missing, work, note="bench/full_width.py: nearest rounding"
    )
    times = {
        f"{n} build+save" if n == "fp32" else f"{n} quantize+save": s + (built if n == "fp32" else 0.0)
        for n, s in seconds.items()
    }
    info = {
        "seconds": times,
        "bytes": {p.stem: p.stat().st_size for p in work.glob("*.safetensors")},
        "config": model.config.to_dict(),
        "params": sum(p.numel() for p in model.parameters()),
    }
    log.write_text(json.dumps(info, indent=2))
    return info


def export(work: Path, name: str) -> Path:
    """``work/NAME.onnx``, exported from ``work/NAME.safetensors`` unless an earlier run did."""
    from qgesco.runtime.onnx import export_onnx, load_for_export

    path = work / f"{name}.onnx"
    if not path.is_file():
        export_onnx(load_for_export(work / f"{name}.safetensors"), path)
    return path


def table(
    info: dict, runs: dict, baseline: float, threads: list[int], sizes: dict[str, int], defaults: set[str]
) -> str:
    """Markdown rows per mode; ``defaults``: the modes that are their file's ``auto`` choice on this CPU."""
    fp = {t: statistics.median(runs[("fp32", t)]["step"]) for t in threads}
    peer = "fp32-autocast-bf16"  # the peer on a bf16 CPU: a second ratio where it ran
    bf = {t: statistics.median(runs[(peer, t)]["step"]) for t in threads} if (peer, threads[0]) in runs else None
    fp_rss = max(runs[("fp32", t)]["rss"] for t in threads) - baseline
    head = (
        "| mode | backend | "
        + " | ".join(f"step {t} thr (x fp32{'; x bf16 autocast' if bf else ''})" for t in threads)
        + " | peak RSS - baseline (x fp32) | load s | file (x fp32) |"
    )
    lines = [head, "|" + "---|" * (6 + len(threads) - 1)]
    for mode in dict.fromkeys(m for m, _ in runs):
        rows = [runs[(mode, t)] for t in threads]
        steps = [statistics.median(r["step"]) for r in rows]
        rss = max(r["rss"] for r in rows) - baseline
        cells = " | ".join(
            f"{s / 1000:.2f} s ({s / fp[t]:.2f}x" + (f"; {s / bf[t]:.2f}x)" if bf else ")")
            for s, t in zip(steps, threads)
        )
        ratio = sizes[mode] / info["bytes"]["fp32"]
        label = MODES[mode].label + (" **(default)**" if mode in defaults else "")
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
    ap.add_argument("--modes", default=EAGER, help=f"of {', '.join(MODES)} (default {EAGER}; fp32 first)")
    ap.add_argument("--name", default="full_width", help="results/NAME.{json,md} (default full_width)")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    modes = [MODES[m] for m in args.modes.split(",")]
    if any(m.backend == PT2E for m in modes) and installed_version("torchao") is None:
        sys.exit("the pt2e mode needs torchao (pip install torchao), which qgesco does not depend on")
    info = prepare(args.work, tuple(int(v) for v in args.hw.split(",")), {m.file for m in modes})
    baseline = spawn("baseline", 1)["peak_rss_mb"]
    cfg = UNetConfig.from_dict(info["config"])
    paths = {m.name: args.work / f"{m.file}.safetensors" for m in modes}
    for m in modes:
        if m.backend in GRAPH_BACKENDS:
            paths[m.name] = export(args.work, m.file)
    outs = alternate(modes, paths, cfg, threads, args.rounds, args.reps, warmup=1)
    runs = {
        key: {
            "step": [s for o in done for s in o["step_ms"]],
            "rss": max(o["peak_rss_mb"] for o in done),
            "load": [o["load_s"] for o in done],
            "backend": done[-1]["backend"][0],
        }
        for key, done in outs.items()
    }
    sizes = {  # an fp32 graph's weights are in NAME.onnx.data
        m.name: sum(
            f.stat().st_size
            for f in (paths[m.name], paths[m.name].with_name(paths[m.name].name + ".data"))
            if f.is_file()
        )
        for m in modes
    }
    defaults = {
        m.name
        for m in modes
        if m.file != "fp32"
        and m.backend in ("auto", default_backend(read_meta(args.work / f"{m.file}.safetensors"))[0])
    }
    text = table(info, runs, baseline, threads, sizes, defaults)
    load = os.getloadavg()
    text += (
        f"\n{PRESET} widths, {info['params'] / 1e6:.1f}M parameters, random weights, image {args.hw}, one guided "
        f"DDIM step = batch 2; median of {args.rounds} fresh processes x {args.reps} timed step(s). Baseline RSS "
        f"{baseline:.0f} MB. Making the files: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in info["seconds"].items())
        + f". Load average at the end {load[0]:.2f} (2 cores shared with niced jobs).\n"
    )
    save(
        args.name,
        {"runs": {f"{m}@{t}": v for (m, t), v in runs.items()}, "prepare": info, "baseline_mb": baseline},
        text,
        "python bench/full_width.py " + " ".join(sys.argv[1:]),
    )


if __name__ == "__main__":
    main()

"""Where one guided step of a receiver goes: ``torch.profiler`` self CPU time by op, as a share of the step.

    .venv/bin/python bench/profile_step.py --model /tmp/fw/w8.safetensors --backend int8   # a file as loaded
    .venv/bin/python bench/profile_step.py --res-blocks 1 --backend int8   # published widths, 1 block per level

Without ``--model`` the published widths (``gesco-cityscapes-256``) are built with seeded random weights
and ``--res-blocks`` blocks per level (fewer than the published 2 keep every layer shape and halve the
cost), quantized W8 with nearest rounding in memory (``--backend fp32``/``bf16`` time the float model).
One warm-up step, then one profiled guided DDIM step (batch 2). ``aten::copy_`` is the layout and dtype
copies the issue counts (``contiguous``, ``clone``, ``.to``). Writes results/NAME.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import save

from qgesco.api import load_model
from qgesco.models.checkpoint import create_model, save_model
from qgesco.models.presets import get_preset
from qgesco.runtime.timing import measure_step, randomize_zero_init


def build(args) -> tuple[torch.nn.Module, object]:
    if args.model:
        model = load_model(args.model, backend=args.backend)
        return model, model.config
    from qgesco.quant import QuantConfig, quantize, save_quantized

    hw = tuple(int(v) for v in args.hw.split(","))
    cfg = get_preset("gesco-cityscapes-256").replace(image_hw=hw, num_res_blocks=args.res_blocks)
    model = randomize_zero_init(create_model(cfg, seed=0), 0).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.safetensors"
        if args.backend in ("fp32", "bf16"):
            save_model(model, path)
            loaded = load_model(path, backend="auto" if args.backend == "fp32" else "bf16")
        else:
            save_quantized(quantize(model, None, QuantConfig(iters=0, weight_init="minmax")), path)
            loaded = load_model(path, backend=args.backend)
    return loaded, cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="a model file (default: the published widths, random weights)")
    ap.add_argument("--backend", default="int8", help="load_model's backend, or fp32 (default int8)")
    ap.add_argument("--res-blocks", type=int, default=1, help="blocks per level without --model (default 1)")
    ap.add_argument("--hw", default="64,128")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--top", type=int, default=14)
    ap.add_argument("--name", default="profile_step")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, cfg = build(args)
    measure_step(model, cfg, reps=0, warmup=1)
    start = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        measure_step(model, cfg, reps=1, warmup=0)
    step = time.perf_counter() - start
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    rows = sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]
    lines = ["| op | calls | self ms | share of the step |", "|---|---|---|---|"]
    lines += [
        f"| `{e.key}` | {e.count} | {e.self_cpu_time_total / 1000:.0f} | {100 * e.self_cpu_time_total / total:.1f}% |"
        for e in rows
    ]
    copies = {e.key: e for e in events if e.key in ("aten::copy_", "aten::clone", "aten::contiguous")}
    copy_share = 100 * copies["aten::copy_"].self_cpu_time_total / total if "aten::copy_" in copies else 0.0
    backend = getattr(model, "runtime_backend", (args.backend, ""))[0]
    text = "\n".join(lines) + (
        f"\n\nBackend {backend}, {cfg.num_res_blocks} blocks per level, image {cfg.image_hw}, "
        f"{args.threads} thread(s); profiled guided step {step:.2f} s (profiler overhead included); "
        f"aten::copy_ {copy_share:.1f}% of the step.\n"
    )
    save(
        args.name,
        {
            "step_s": step,
            "copy_share": copy_share,
            "ops": {e.key: [e.count, e.self_cpu_time_total] for e in events},
        },
        text,
        "python bench/profile_step.py " + " ".join(sys.argv[1:]),
    )


if __name__ == "__main__":
    main()

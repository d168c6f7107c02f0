"""``qgesco bench``: how fast and how large one model is on this machine, loaded as a user loads it.

It needs only the installed package. The comparison of every runtime mode (fp32, W8, W4, W8A8,
ONNX), each in fresh processes, is a benchmark script of the checkout: ``python bench/receiver.py``.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="load time, guided-step latency and peak RSS of one model on this machine",
        description="Load one model as qgesco.load_model does (a quantized file with its default backend, "
        "printed) or build a preset with seeded random weights, then print the load time, the median latency "
        "of one guided DDIM step (conditional + unconditional pass as one batch-2 forward), this process's "
        "peak RSS, the thread count and the machine (CPU, int8 capability). The mode-by-mode comparison "
        "(fp32, W8, W4, W8A8, ONNX, each in fresh processes) is `python bench/receiver.py` in a checkout "
        "(docs/runtime.md).",
    )
    p.add_argument(
        "--model",
        default="camvid-demo",
        help="model file, bundled name (camvid-demo, camvid-demo-w8) or preset, built with seeded random "
        "weights (e.g. gesco-cityscapes-256); default camvid-demo",
    )
    p.add_argument("--hw", metavar="H,W", help="image height,width to run at (default: the model's own size)")
    p.add_argument("--reps", type=int, default=5, help="timed guided steps (default 5; the median is printed)")
    p.add_argument("--warmup", type=int, default=1, help="untimed guided steps first (default 1)")
    p.add_argument("--threads", type=int, help="torch threads (default: one per usable core)")
    p.add_argument("--seed", type=int, default=0, help="weights seed of a preset (default 0)")
    p.add_argument("--json", metavar="OUT", help="also write the figures to OUT (.json)")
    p.set_defaults(func=run)


def parse_hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--hw {text!r}: give the image height,width in pixels, e.g. --hw 64,128") from None
    if h < 1 or w < 1:
        raise ValueError(f"--hw {text!r}: height and width must be positive, e.g. --hw 64,128")
    return h, w


def run(args: argparse.Namespace) -> int:
    import time

    from qgesco import validate
    from qgesco.api import load_model
    from qgesco.fileio import write_json
    from qgesco.models.checkpoint import open_source
    from qgesco.models.costs import model_costs
    from qgesco.runtime.timing import random_model, step_figures

    validate.finite_number("--reps", args.reps, low=1, integer=True)
    validate.finite_number("--warmup", args.warmup, low=0, integer=True)
    validate.seed("--seed", args.seed)
    if args.json is not None:
        validate.output_file("--json", args.json, (".json",), inputs={"--model": args.model})
    source = open_source(args.model)
    cfg = source.config
    if args.hw:
        cfg = cfg.replace(image_hw=validate.image_size("--hw", *parse_hw(args.hw), cfg.downsample_factor))
    start = time.perf_counter()
    model = random_model(cfg, args.seed) if source.path is None else load_model(source.path)
    made_s = time.perf_counter() - start
    result = {
        "model": args.model,
        "file": None if source.path is None else str(source.path),
        "params": model_costs(cfg).params,
        "image_hw": list(cfg.image_hw),
        "build_s" if source.path is None else "load_s": made_s,
        **step_figures(model, cfg, args.reps, args.warmup),
    }
    print_result(result, args)
    if args.json is not None:
        write_json(args.json, result)
    return 0


def print_result(r: dict, args: argparse.Namespace) -> None:
    from qgesco.runtime.timing import machine_line

    times, backend = r["step_ms"], r["backend"]
    made = (
        f"built in {r['build_s']:.2f} s (preset, seeded random weights, seed {args.seed}; not loaded from a file)"
        if r["file"] is None
        else f"{r['load_s']:.2f} s (qgesco.load_model)"
    )
    print(f"model        {args.model}" + ("" if r["file"] is None else f" ({r['file']})"))
    print(f"parameters   {r['params']:,}")
    print(f"backend      {backend[0]} ({backend[1]})")
    print(f"image        {r['image_hw'][0]}x{r['image_hw'][1]}; one guided DDIM step = one batch-2 forward")
    print(f"load         {made}")
    print(
        f"guided step  {r['step_ms_median']:.1f} ms, median of {len(times)} (min {min(times):.1f}, "
        f"max {max(times):.1f}) after {r['warmup']} warm-up"
    )
    print(f"peak RSS     {r['peak_rss_mb']:.0f} MB (this process: imports, model, steps)")
    print(f"threads      {r['threads']}")
    print(f"machine      {machine_line(r['machine'])}")
    print("every runtime mode, in fresh processes: python bench/receiver.py in a checkout (docs/runtime.md)")

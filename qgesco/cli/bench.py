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
    import statistics
    import time
    from pathlib import Path

    import torch

    from qgesco import validate
    from qgesco.api import load_model
    from qgesco.fileio import read_meta, write_json
    from qgesco.models.checkpoint import BUNDLED, bundled_path, create_model, file_config
    from qgesco.models.costs import model_costs
    from qgesco.models.presets import PRESETS
    from qgesco.runtime.timing import machine, machine_line, measure_step, peak_rss_mb, randomize_zero_init

    validate.finite_number("--reps", args.reps, low=1, integer=True)
    validate.finite_number("--warmup", args.warmup, low=0, integer=True)
    validate.seed("--seed", args.seed)
    if args.json is not None:
        validate.output_file("--json", args.json, (".json",), inputs={"--model": args.model})
    source = bundled_path(args.model) if args.model in BUNDLED else Path(args.model)
    if source.is_file():
        meta = read_meta(source)
        if meta.get("kind") not in ("unet", "quantized-unet"):
            raise ValueError(
                f"--model {source}: holds a {meta.get('kind', 'unknown')!r} file, not a model; "
                "give a model file, bundled name or preset"
            )
        cfg = file_config(source, meta)
    elif args.model in PRESETS:
        cfg, source = PRESETS[args.model], None
    else:
        raise FileNotFoundError(
            f"--model {args.model}: no such file, bundled model ({', '.join(BUNDLED)}) or preset ({', '.join(PRESETS)})"
        )
    if args.hw:
        h, w = validate.image_size("--hw", *parse_hw(args.hw), cfg.downsample_factor)
        cfg = cfg.replace(image_hw=(h, w))

    start = time.perf_counter()
    if source is None:  # built, not loaded: channels_last as load_model gives a float model
        model = randomize_zero_init(create_model(cfg, seed=args.seed), args.seed).eval()
        model = model.to(memory_format=torch.channels_last)
    else:
        model = load_model(source)
    made_s = time.perf_counter() - start
    backend = list(getattr(model, "runtime_backend", ("fp32", "full precision, eager PyTorch, channels_last")))
    times = measure_step(model, cfg, args.reps, args.warmup)
    result = {
        "model": args.model,
        "file": None if source is None else str(source),
        "params": model_costs(cfg).params,
        "backend": backend,
        "image_hw": list(cfg.image_hw),
        "build_s" if source is None else "load_s": made_s,
        "step_ms": times,
        "step_ms_median": statistics.median(times),
        "peak_rss_mb": peak_rss_mb(),
        "threads": torch.get_num_threads(),
        "warmup": args.warmup,
        "machine": machine(),
    }
    m = result["machine"]
    made = (
        f"built in {made_s:.2f} s (preset, seeded random weights, seed {args.seed}; not loaded from a file)"
        if source is None
        else f"{made_s:.2f} s (qgesco.load_model)"
    )
    print(f"model        {args.model}" + ("" if source is None else f" ({source})"))
    print(f"parameters   {result['params']:,}")
    print(f"backend      {backend[0]} ({backend[1]})")
    print(f"image        {cfg.image_hw[0]}x{cfg.image_hw[1]}; one guided DDIM step = one batch-2 forward")
    print(f"load         {made}")
    print(
        f"guided step  {result['step_ms_median']:.1f} ms, median of {args.reps} (min {min(times):.1f}, "
        f"max {max(times):.1f}) after {args.warmup} warm-up"
    )
    print(f"peak RSS     {result['peak_rss_mb']:.0f} MB (this process: imports, model, steps)")
    print(f"threads      {result['threads']}")
    print(f"machine      {machine_line(m)}")
    print("every runtime mode, in fresh processes: python bench/receiver.py in a checkout (docs/runtime.md)")
    if args.json is not None:
        write_json(args.json, result)
    return 0

"""``qgesco bench``: the low-bit receiver's savings on this machine (qgesco.runtime.bench)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from qgesco.runtime.bench import add_arguments

    p = subparsers.add_parser(
        "bench",
        help="receiver costs: sizes, FLOPs, bit-ops, guided-step latency and peak RSS per runtime mode",
        description="Parameters, checkpoint bytes fp32/W8/W4/W8A8, FLOPs and bit-ops per forward, then per mode "
        "(fp32, W8 and W4 weight-only, W8A8 and W7A8 int8, fp32 and QDQ ONNX) the median latency of one "
        "guided DDIM step and the peak RSS of a full receiver run, each in its own process. Prints the "
        "table, writes OUT/receiver_<model>.{json,md} (docs/runtime.md).",
    )
    add_arguments(p)
    p.add_argument(
        "--out", default="bench/results", help="folder for receiver_<model>.json/.md (default bench/results)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from qgesco import validate
    from qgesco.fileio import read_meta
    from qgesco.models.checkpoint import BUNDLED, bundled_path
    from qgesco.runtime.bench import bench, save

    for flag in ("threads", "reps", "rounds", "sample_steps", "calib_maps", "calib_steps"):
        validate.finite_number(f"--{flag.replace('_', '-')}", getattr(args, flag), low=1, integer=True)
    validate.finite_number("--warmup", args.warmup, low=0, integer=True)
    validate.output_dir("--out", args.out)
    source = bundled_path(args.model) if args.model in BUNDLED else Path(args.model)
    if source.is_file() and read_meta(source).get("kind") == "quantized-unet":
        raise ValueError(
            f"--model {args.model}: is quantized; bench makes every mode (fp32, W8, W4, W8A8) from the "
            "full-precision model, so give that one (camvid-demo-w8 was made from camvid-demo)"
        )
    name, result, text = bench(args)
    save(Path(args.out), name, result, text, "qgesco " + " ".join(sys.argv[1:]))
    print(text)
    return 0

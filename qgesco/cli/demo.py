"""``qgesco demo``: maps -> noisy channel -> fp32 and W8 receivers -> grid and table, offline."""

from __future__ import annotations

import argparse
import time

from qgesco.cli._args import parse_psnrs


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the whole story on the bundled model: maps -> channel at PSNR 100/20/10 -> fp32 and W8 receivers",
        description="Send bundled street-scene maps over a noisy channel and regenerate them with the bundled "
        "demo model in fp32 and quantized W8; writes OUT/grid.png (rows per PSNR: clean map | received "
        "map | fp32 image | W8 image), OUT/table.md and OUT/results.json. No dataset or network needed.",
    )
    p.add_argument("--psnr", default="100,20,10", help="channel PSNRs in dB, comma-separated (default 100,20,10)")
    p.add_argument("--channel", default="awgn", help="awgn (default) or rayleigh (block fading, perfect CSI)")
    p.add_argument(
        "--sampler",
        default=None,
        help="sampler family or full spec: ddim, dpm++, ddpm, ddim25q, ... "
        "(default: the receiver's, see docs/samplers.md)",
    )
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the receiver's)")
    p.add_argument(
        "--guidance-window",
        metavar="T_LO,T_HI",
        help="guide only these model timesteps, or 'all' (default: the receiver's, see docs/samplers.md)",
    )
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--seed", type=int, default=0, help="seed of the channel noise and x_T (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qgesco import validate
    from qgesco.demo import run_demo
    from qgesco.diffusion import sampler_spec
    from qgesco.receiver import DEFAULT_SAMPLER, receiver_window

    started = time.perf_counter()
    validate.output_dir("--out", args.out)
    validate.seed("--seed", args.seed)
    psnrs = parse_psnrs(args.psnr)
    for level in psnrs:
        validate.finite_number("--psnr", level)
    result = run_demo(
        args.out,
        psnrs,
        args.channel,
        sampler_spec(args.sampler, args.steps, DEFAULT_SAMPLER),
        args.seed,
        guidance_window=receiver_window(args.guidance_window),
    )
    print(
        f"W8 receiver: runtime backend {result.summary['w8_backend']} (qgesco.runtime.default_backend; docs/runtime.md)"
    )
    print(result.table())
    print(f"wrote {result.out / 'grid.png'}, table.md and results.json in {time.perf_counter() - started:.0f} s")
    return 0

"""``qgesco evaluate``: regenerate a dataset split through the channel with several models and
write the paper's Table I (and Table II), metrics, plots and a sample grid."""

from __future__ import annotations

import argparse

from qgesco.cli._args import psnr_list


def _metric_list(text: str) -> list[str]:
    from qgesco.evaluate import METRICS

    chosen = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in METRICS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {','.join(METRICS)}")
    return chosen


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="LPIPS / FID / mIoU of regenerated images over channel PSNR for fp and quantized models: Tables I and II",
        description="Send the maps of a dataset split over the channel at each PSNR, regenerate them with every "
        "--model from the same received maps and x_T, and score the images against the originals "
        "(LPIPS, FID/KID, mIoU of the segmented image against the sent map, PSNR/SSIM). Writes "
        "OUT/images/<model>/psnr<P>/, metrics.json, table.md (Table I; Table II when timestep-only and "
        "noise+timestep calibrated models are both given), metrics_vs_psnr.png and a sample grid. "
        "Rerunning skips images already on disk. Under torchrun the images are shared across ranks. "
        "Defaults are the paper's: PSNR 100,20,10, DDPM 1000 steps, guidance 2 (docs/evaluation.md).",
    )
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="[NAME=]MODEL",
        help="model file (fp32 or quantized .safetensors) or bundled model name, optionally named "
        "(e.g. fp32=camvid-demo, W8=w8.safetensors); repeatable, the first fp model is the reference",
    )
    p.add_argument("--data", required=True, help="dataset spec: camvid:val, cityscapes:val, synthetic:N[:SCHEME]")
    p.add_argument("--data-root", help="folder holding the dataset (default: the usual search path)")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder (reused to resume)")
    p.add_argument(
        "--psnr", type=psnr_list, default=[100.0, 20.0, 10.0], help="channel PSNRs in dB (default 100,20,10)"
    )
    p.add_argument("--channel", choices=("awgn", "rayleigh"), default="awgn")
    p.add_argument(
        "--noise-table", choices=("exact", "gesco"), default="exact", help="PSNR -> sigma rule (see qgesco transmit)"
    )
    p.add_argument(
        "--filter", choices=("avgmax", "median", "none"), default="avgmax", help="receiver cleanup (default avgmax)"
    )
    p.add_argument("--no-compress", action="store_true", help="send all class planes instead of the present ones")
    p.add_argument(
        "--sampler", default="ddpm", help="sampler family or full spec: ddpm, ddim, dpm++, ddim25q, ... (default ddpm)"
    )
    p.add_argument("--steps", type=int, help="denoising steps (default 1000, the paper's)")
    p.add_argument(
        "--guidance", type=float, default=2.0, help="classifier-free guidance scale s (default 2, the paper's)"
    )
    p.add_argument(
        "--guidance-window",
        metavar="T_LO,T_HI",
        help="guide only these model timesteps, e.g. 500,999 (the receiver's default); "
        "default: every step, the paper's",
    )
    p.add_argument("--images", type=int, help="evaluate the first N scenes of the split (default: all)")
    p.add_argument(
        "--batch-size", type=int, default=8, help="images per sampling batch (default 8; part of the run's seeding)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--metrics", type=_metric_list, help="comma-separated subset of lpips,fid,miou,pixel (default: all that apply)"
    )
    p.add_argument("--reference", metavar="NAME", help="row the others are compared with (default: the first fp model)")
    p.add_argument("--grid-psnr", type=float, help="PSNR of the sample grid (default 10 if evaluated, else the lowest)")
    p.add_argument("--grid-images", type=int, default=4, help="rows of the sample grid (default 4)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: one per usable core)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    from qgesco import validate
    from qgesco.diffusion import PAPER_SAMPLER, parse_guidance_window, sampler_spec
    from qgesco.evaluate import EvalSettings, evaluate
    from qgesco.evaluate.models import default_name
    from qgesco.runtime import backend_line

    validate.output_dir("--out", args.out)
    validate.device("--device", args.device)
    validate.guidance("--guidance", args.guidance)
    validate.finite_number("--batch-size", args.batch_size, low=1, integer=True)
    validate.finite_number("--grid-images", args.grid_images, low=1, integer=True)
    for flag in ("images", "steps"):
        if getattr(args, flag) is not None:
            validate.finite_number(f"--{flag}", getattr(args, flag), low=1, integer=True)
    for level in args.psnr + ([args.grid_psnr] if args.grid_psnr is not None else []):
        validate.finite_number("--psnr/--grid-psnr", level)
    models = {}
    for item in args.model:
        name, sep, source = item.partition("=")
        name, source = (name, source) if sep else (default_name(item), item)
        if name in models:
            raise ValueError(
                f"--model {item!r}: the name {name!r} is taken; name models explicitly, e.g. --model W8={source}"
            )
        models[name] = source
    for source in models.values():
        line = backend_line(source)
        if line:
            print(line)
    window = None if args.guidance_window is None else parse_guidance_window(args.guidance_window)
    settings = EvalSettings(
        args.data,
        data_root=args.data_root,
        psnrs=args.psnr,
        channel=args.channel,
        noise_table=args.noise_table,
        cleanup=args.filter,
        compress=not args.no_compress,
        sampler=sampler_spec(args.sampler, args.steps, PAPER_SAMPLER),
        guidance=args.guidance,
        guidance_window=window,
        images=args.images,
        batch_size=args.batch_size,
        seed=args.seed,
        metrics=args.metrics,
        reference=args.reference,
        grid_psnr=args.grid_psnr,
        grid_images=args.grid_images,
    )
    result = evaluate(models, settings, args.out, args.device)
    if result is not None:
        from qgesco.evaluate import render

        print(render(result))
        print(
            f"wrote metrics.json, table.md, metrics_vs_psnr.png, grid_psnr{result['settings']['grid_psnr']:g}.png "
            f"and images/ in {args.out} ({result['seconds']:.0f} s)"
        )
    return 0

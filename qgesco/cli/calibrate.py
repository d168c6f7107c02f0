"""``qgesco calibrate``: record a calibration set from the full-precision receiver."""

from __future__ import annotations

import argparse

from qgesco.cli._args import input_files, psnr_list


def register(subparsers: argparse._SubParsersAction) -> None:
    from qgesco.quant.calibration import PAPER_PSNRS

    p = subparsers.add_parser(
        "calibrate",
        help="record (x_t, t, y) from the float model's DDIM trajectories: the calibration set for quantize",
        description="Run the full-precision model with DDIM from maps of the dataset, each map sent through an AWGN "
        "channel at one of the PSNR levels, and record the model inputs every --every steps (random phase "
        "per map, so every timestep is represented). Defaults are the paper's: 64 maps, 8 levels over "
        "1..100 dB, 100 steps, every 25. Interrupted runs continue from OUT.partial.",
    )
    p.add_argument("--model", required=True, help="model file, or the name of a bundled model (camvid-demo)")
    p.add_argument("--data", required=True, help="dataset spec: camvid:train, cityscapes:train, synthetic:N[:SCHEME]")
    p.add_argument("--data-root", help="folder holding the dataset (default: the usual search path)")
    p.add_argument("--out", required=True, metavar="calib.safetensors")
    p.add_argument("--maps", type=int, default=64, help="number of maps drawn from the dataset (default 64)")
    p.add_argument(
        "--psnr",
        type=psnr_list,
        help="comma-separated channel PSNR levels in dB, spread over the maps "
        f"(default: the paper's {len(PAPER_PSNRS)} levels over 1..100: {','.join(f'{v:g}' for v in PAPER_PSNRS)})",
    )
    p.add_argument(
        "--timestep-only", action="store_true", help="clean maps (noiseless channel): the paper's Table II ablation"
    )
    p.add_argument(
        "--noise-table", choices=("exact", "gesco"), default="exact", help="PSNR -> sigma rule (see qgesco transmit)"
    )
    p.add_argument(
        "--filter", choices=("avgmax", "median", "none"), default="avgmax", help="receiver cleanup (default avgmax)"
    )
    p.add_argument("--no-compress", action="store_true", help="send all class planes instead of the present ones")
    p.add_argument("--steps", type=int, default=100, help="DDIM steps of the trajectories (default 100)")
    p.add_argument("--every", type=int, default=25, help="record one sample per map every this many steps (default 25)")
    p.add_argument(
        "--guidance", type=float, default=2.0, help="classifier-free guidance scale, as in sampling (default 2)"
    )
    p.add_argument("--eta", type=float, default=0.0, help="DDIM eta (default 0, deterministic)")
    p.add_argument("--batch-size", type=int, default=8, help="maps per trajectory batch (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from qgesco import validate
    from qgesco.data import open_dataset
    from qgesco.models.checkpoint import load_float_model
    from qgesco.quant import PAPER_PSNRS, CalibrationRecipe, build_calibration_set

    if args.timestep_only and args.psnr is not None:
        raise ValueError("--psnr sets the channel noise; --timestep-only records clean maps: give one or the other")
    validate.seed("--seed", args.seed)
    validate.output_file("--out", args.out, (".safetensors",), inputs=input_files(model=args.model))
    for flag in ("maps", "steps", "every", "batch_size"):
        validate.finite_number(f"--{flag.replace('_', '-')}", getattr(args, flag), low=1, integer=True)
    validate.guidance("--guidance", args.guidance)
    validate.finite_number("--eta", args.eta, low=0)
    for level in args.psnr or ():
        validate.finite_number("--psnr", level)
    model = load_float_model(args.model)
    dataset = open_dataset(args.data, args.data_root, image_hw=model.config.image_hw)
    partial = Path(f"{args.out}.partial")
    recipe = CalibrationRecipe(
        num_maps=args.maps,
        psnrs=args.psnr or PAPER_PSNRS,
        timestep_only=args.timestep_only,
        steps=args.steps,
        every=args.every,
        guidance=args.guidance,
        eta=args.eta,
        noise_table=args.noise_table,
        cleanup=args.filter,
        compress=not args.no_compress,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    calib = build_calibration_set(model, dataset, recipe, partial)
    calib.info["provenance"].update(model=str(args.model), data=args.data)
    calib.save(args.out)
    partial.unlink(missing_ok=True)
    summary = calib.summary()
    noise = (
        "clean maps"
        if summary["timestep_only"]
        else f"PSNR levels {', '.join(f'{v:g}' for v in summary['psnr_db'])} dB"
    )
    print(
        f"wrote {args.out}: {summary['samples']} samples from {summary['maps']} maps, "
        f"{len(summary['timesteps'])} distinct timesteps in {min(summary['timesteps'])}..{max(summary['timesteps'])}, "
        f"{noise}, "
        f"{calib.info['provenance']['seconds']:.0f} s"
    )
    return 0

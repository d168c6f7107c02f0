"""``qgesco quantize``: calibrate a quantized model (AdaRound + block reconstruction) and write it."""

from __future__ import annotations

import argparse

from qgesco.cli._args import input_files


def register(subparsers: argparse._SubParsersAction) -> None:
    from qgesco.quant.settings import DEFAULT_ITERS

    p = subparsers.add_parser(
        "quantize",
        help="post-training quantization: W8/W4 weights, optional A8 activations, AdaRound per block",
        description="Quantize every Conv/Linear of the model per output channel (split scales for the decoder's "
        "skip concatenations), calibrate on a set from `qgesco calibrate` with AdaRound + block "
        "reconstruction, and write an integer checkpoint (docs/quantization.md). Interrupted runs "
        "continue from the blocks saved in OUT.resume/.",
    )
    p.add_argument("--model", required=True, help="model file, or the name of a bundled model (camvid-demo)")
    p.add_argument(
        "--calib", metavar="calib.safetensors", help="calibration set (needed unless --iters 0 without --abits)"
    )
    p.add_argument("--wbits", type=int, default=8, help="weight bits, 2..8 (default 8; <= 4 are stored two per byte)")
    p.add_argument("--abits", type=int, help="activation bits, 2..8 (default: float activations)")
    p.add_argument(
        "--iters",
        type=int,
        default=DEFAULT_ITERS,
        help=f"AdaRound iterations per block (default {DEFAULT_ITERS}; 0 = nearest rounding; 5000 for 4-bit weights)",
    )
    p.add_argument("--symmetric", action="store_true", help="symmetric weights (zero point 0) instead of asymmetric")
    p.add_argument(
        "--weight-init",
        choices=("lp", "minmax"),
        default="lp",
        help="weight clipping range: lp = search minimising the L2.4 error (default), minmax = full range",
    )
    p.add_argument(
        "--keep-fp",
        action="append",
        default=[],
        metavar="PATTERN",
        help="leave matching layers in float, e.g. 'out' or 'input_blocks.0.*' (repeatable; default none)",
    )
    p.add_argument("--no-split", action="store_true", help="one scale for the decoder's cat(h, skip) inputs (ablation)")
    p.add_argument(
        "--quant-attention",
        action="store_true",
        help="also quantize the attention matmul inputs and softmax (needs --abits)",
    )
    p.add_argument(
        "--no-lsq",
        action="store_true",
        help="keep the observed activation step sizes instead of learning them (LSQ) during reconstruction",
    )
    p.add_argument("--batch-size", type=int, default=8, help="calibration samples per AdaRound step (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--device", default="cpu", help="cpu (default), cuda, or auto (cuda if available): where AdaRound runs"
    )
    p.add_argument("--out", required=True, metavar="q.safetensors")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os
    import shutil
    from pathlib import Path

    from qgesco import validate
    from qgesco.models.checkpoint import load_float_model
    from qgesco.quant import QuantConfig, quantize, save_quantized
    from qgesco.quant.quantizers import check_bits

    check_bits("--wbits", args.wbits)
    if args.abits is not None:
        check_bits("--abits", args.abits)
    validate.finite_number("--iters", args.iters, low=0, integer=True)
    validate.finite_number("--batch-size", args.batch_size, low=1, integer=True)
    validate.seed("--seed", args.seed)
    validate.output_file("--out", args.out, (".safetensors",), inputs=input_files(model=args.model, calib=args.calib))
    device = validate.device("--device", args.device)
    if args.calib is not None and not Path(args.calib).is_file():
        raise FileNotFoundError(f"--calib {args.calib}: no such file; make one with qgesco calibrate")
    model = load_float_model(args.model).to(device)
    resume = Path(f"{args.out}.resume")
    config = QuantConfig(
        weight_bits=args.wbits,
        act_bits=args.abits,
        symmetric=args.symmetric,
        split=not args.no_split,
        keep_fp=args.keep_fp,
        quantize_attention=args.quant_attention,
        weight_init=args.weight_init,
        iters=args.iters,
        learn_act_scale=not args.no_lsq,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    qmodel = quantize(model, args.calib, config, resume)
    save_quantized(qmodel.cpu(), args.out, model=str(args.model), calib=str(args.calib) if args.calib else None)
    shutil.rmtree(resume, ignore_errors=True)
    report = qmodel.quant_report
    blocks = report["blocks"]
    size_fp = sum(v.numel() * 4 for v in model.state_dict().values())
    line = (
        f"wrote {args.out}: W{args.wbits}"
        + (f"A{args.abits}" if args.abits else "")
        + (
            f" ({len(qmodel.quant_plan['layers'])} layers quantized, {len(qmodel.quant_plan['fp_layers'])} kept in "
            "float by --keep-fp)"
            if qmodel.quant_plan["fp_layers"]
            else ""
        )
        + f", {os.path.getsize(args.out) / 2**20:.2f} MiB (fp32 {size_fp / 2**20:.2f} MiB), {report['seconds']:.0f} s"
    )
    if blocks:
        nearest = sum(b["error_nearest"] for b in blocks) / len(blocks)
        final = sum(b["error"] for b in blocks) / len(blocks)
        line += (
            f"; mean block error {final:.3g} (nearest rounding {nearest:.3g}), learned rounding kept in "
            f"{report['blocks_with_learned_rounding']}/{len(blocks)} blocks"
        )
    print(line)
    return 0

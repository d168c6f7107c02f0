"""``qgesco train-jscc``: train one DeepJSCC model (the learned analog baseline of ``qgesco compare``)."""

from __future__ import annotations

import argparse

from qgesco.cli._args import number_list


def register(sub: argparse._SubParsersAction) -> None:
    from qgesco.semcom.jscc import FILTERS, SNR_RANGE

    p = sub.add_parser(
        "train-jscc",
        help="train a DeepJSCC model (Bourtsoulatze et al. 2019) for one bandwidth ratio",
        description="Train DeepJSCC end to end through the AWGN channel over a range of SNRs (the decoder is told "
        "the SNR) with CHANNELS encoder planes: CHANNELS/16 real channel uses per pixel, k/n = CHANNELS/96 in the "
        "paper's complex-symbol notation. Writes OUT/deepjscc.safetensors (the model compare loads) and "
        "OUT/state.pt (to --resume). Bundle it by copying the model to qgesco/assets/deepjscc_cNNN.safetensors "
        "(docs/semcom.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--channels", type=int, required=True, help="encoder output planes (8: k/n = 1/12, 16: 1/6)")
    p.add_argument("--data", default="camvid:train", help="training split")
    p.add_argument("--val-data", default="camvid:val", help="split of the validation PSNRs saved with the model")
    p.add_argument("--data-root", help="folder holding the dataset (default: the usual search path)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (a tenth for the last quarter)")
    p.add_argument("--snr-range", type=number_list, default=list(SNR_RANGE), help="training SNRs lo,hi in dB")
    p.add_argument("--filters", type=number_list, default=list(FILTERS), help="hidden filters of the two stages")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=250, help="steps between checkpoints")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from qgesco import validate
    from qgesco.semcom.jscc_train import train_jscc

    if len(args.snr_range) != 2 or len(args.filters) != 2:
        raise ValueError("--snr-range and --filters take two numbers each, e.g. --snr-range -5,30 --filters 16,32")
    if any(f != int(f) or f < 1 for f in args.filters):
        raise ValueError(f"--filters {args.filters}: give two positive integers, e.g. 16,32")
    if args.threads is not None:
        torch.set_num_threads(validate.finite_number("--threads", args.threads, low=1, integer=True))
    meta = train_jscc(
        args.out,
        channels=args.channels,
        data=args.data,
        val_data=args.val_data,
        data_root=args.data_root,
        filters=[int(f) for f in args.filters],
        snr_range=args.snr_range,
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
        save_every=args.save_every,
        resume=args.resume,
    )
    psnr = ", ".join(f"{snr} dB: {v:.2f}" for snr, v in meta["validation_psnr"].items())
    print(f"trained {meta['step']} steps in {meta['seconds']:.0f} s; {meta['validation_data']} PSNR {psnr}")
    print(f"model: {args.out}/deepjscc.safetensors")
    return 0

"""``qgesco compare``: the analog map, the digital map and the digital photo at equal channel uses."""

from __future__ import annotations

import argparse

from qgesco.cli._args import number_list


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    from qgesco.semcom.codec import CODECS
    from qgesco.semcom.link import CHANNELS, DEFAULT_MCS, mcs_names
    from qgesco.semcom.schemes import SCHEMES

    p = subparsers.add_parser(
        "compare",
        help="semantic (map + regeneration) vs digital (JPEG + LDPC) transmission at equal channel uses",
        description="Send each image with every scheme (analog-map: the paper's; digital-map: PNG map + LDPC + QAM; "
        "digital-image: JPEG/WebP/JPEG 2000 + LDPC + QAM; ideal-*: the same payloads at Shannon capacity) within "
        "the same budget of real channel uses per pixel and the same seeded channel noise, regenerate the maps with "
        "the receiver's defaults, and score LPIPS, FID/KID and mIoU against the original photos. Writes "
        "OUT/results.json, table.md, quality_vs_snr.png, quality_vs_budget.png and images/; rerunning "
        "reuses the regenerated images (docs/semcom.md).",
    )
    p.add_argument("--data", default="camvid:val", help="dataset spec (default camvid:val)")
    p.add_argument("--data-root", help="folder holding the dataset (default: the usual search path)")
    p.add_argument(
        "--model",
        default="camvid-demo",
        help="receiver: a model file (fp32 or quantized) or bundled name, as qgesco evaluate takes "
        "(default camvid-demo; camvid-demo-w8 is the W8 one)",
    )
    p.add_argument(
        "--channel",
        choices=CHANNELS,
        default="awgn",
        help="awgn, or rayleigh: one flat fade per image and SNR, the same for every scheme (default awgn)",
    )
    p.add_argument(
        "--codec",
        type=_names,
        help=f"photo codecs of digital-image / ideal-image, each a variant: comma-separated subset of "
        f"{','.join(CODECS)} (default jpeg)",
    )
    p.add_argument(
        "--snr",
        type=number_list,
        default=[0.0, 5.0, 10.0, 20.0],
        help="channel PSNRs in dB (sigma = 10^(-PSNR/20), as qgesco transmit); default 0,5,10,20",
    )
    p.add_argument(
        "--budget",
        type=number_list,
        default=[10.0, 1.0],
        help="budgets in real channel uses per pixel (default 10,1; the analog map costs ~K per pixel "
        "for K present classes)",
    )
    p.add_argument("--view-snr", type=float, help="SNR of the quality-vs-budget view (default: the one nearest 10 dB)")
    p.add_argument(
        "--schemes", type=_names, default=list(SCHEMES), help=f"comma-separated subset of {','.join(SCHEMES)}"
    )
    p.add_argument(
        "--mcs",
        default=DEFAULT_MCS,
        help=f"LDPC rate and modulation of the digital schemes: {', '.join(mcs_names())} (default {DEFAULT_MCS})",
    )
    p.add_argument(
        "--filter", choices=("avgmax", "median", "none"), default="avgmax", help="analog map cleanup (default avgmax)"
    )
    p.add_argument("--images", type=int, help="the first N scenes of the split (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, metavar="DIR", help="run folder (reused to resume)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto (cuda if available)")
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: one per usable core)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    from qgesco import validate
    from qgesco.semcom import compare
    from qgesco.semcom.report import render

    device = validate.device("--device", args.device)
    validate.seed("--seed", args.seed)
    if args.codec is not None and not {"digital-image", "ideal-image"} & set(args.schemes):
        raise ValueError(
            f"--codec {','.join(args.codec)} sets the photo codec of digital-image / ideal-image, which --schemes "
            f"{','.join(args.schemes)} leaves out: add one of them or leave --codec out"
        )
    result = compare(
        args.data,
        out=args.out,
        model=args.model,
        snrs=args.snr,
        budgets=args.budget,
        schemes=args.schemes,
        mcs=args.mcs,
        channel=args.channel,
        codecs=args.codec or ["jpeg"],
        images=args.images,
        view_snr=args.view_snr,
        cleanup=args.filter,
        seed=args.seed,
        data_root=args.data_root,
        device=str(device),
    )
    print(render(result))
    print(
        f"wrote results.json, table.md, quality_vs_snr.png, quality_vs_budget.png and images/ in {args.out} "
        f"({result['seconds']:.0f} s)"
    )
    return 0

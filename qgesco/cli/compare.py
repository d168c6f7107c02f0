"""``qgesco compare``: the analog map, the digital map and the digital photo at equal channel uses."""

from __future__ import annotations

import argparse

from qgesco.cli._args import number_list


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    from qgesco.receiver import DEFAULT_SAMPLER
    from qgesco.semcom.codec import CODECS
    from qgesco.semcom.link import ADAPTIVE, CHANNELS, LINK_MODES, MCS_TABLE
    from qgesco.semcom.schemes import MAP_CLEANUPS, POWERS, SCHEMES
    from qgesco.semcom.stats import FADES

    p = subparsers.add_parser(
        "compare",
        help="semantic (map + regeneration) vs digital (JPEG + LDPC) transmission at equal channel uses and power",
        description="Send each image with every scheme (analog-map: the paper's; digital-map: deflated map + "
        "5G LDPC + QAM with link adaptation; digital-image: JPEG/WebP/JPEG 2000/HEVC/AVIF + the same link; ideal-*: "
        "the same payloads at Shannon capacity; deepjscc: the learned joint source-channel code, bundled models from "
        "qgesco train-jscc) within the same budget of real channel uses per pixel, at unit average "
        "power and with the same seeded channel noise, regenerate the maps (the same x_T and sampler noise for "
        "every map of an image), and score LPIPS, mIoU, PSNR and MS-SSIM against the original photos with 95%% "
        "bootstrap intervals. Writes OUT/results.json, table.md, quality_vs_snr.png, quality_vs_budget.png, "
        "regions.png and images/; rerunning reuses the regenerated images (docs/semcom.md).",
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
        default=ADAPTIVE,
        help=f"5G NR MCS of the digital schemes: {ADAPTIVE} (default: per SNR and budget, the highest-rate MCS whose "
        f"payload error rate is at most --bler-target) or a fixed one, mcs0..mcs{len(MCS_TABLE) - 1} or "
        "qpsk-1/2, 16qam-3/4, ... (the cliff)",
    )
    p.add_argument(
        "--link",
        choices=LINK_MODES,
        default="ldpc",
        help="ldpc: decode every codeword (default); table: draw each codeword's fate from the cached BLER curves",
    )
    p.add_argument("--bler-target", type=float, default=0.1, help="payload error rate the MCS choice allows (0.1)")
    p.add_argument(
        "--power",
        choices=POWERS,
        default="unit",
        help="unit: the analog map scaled to average power 1 per real use like every scheme (default); "
        "peak: the paper's PSNR (one-hot symbols as they are)",
    )
    p.add_argument(
        "--filter",
        choices=MAP_CLEANUPS,
        default="auto",
        help="analog map cleanup: auto (default: the paper's avgmax below 0 dB, the hard argmax decision above), "
        "argmax, avgmax, median or none",
    )
    p.add_argument("--sampler", default=DEFAULT_SAMPLER, help=f"receiver sampler (default {DEFAULT_SAMPLER})")
    p.add_argument(
        "--fades",
        type=int,
        default=FADES,
        help=f"on awgn: Rayleigh fades per image and SNR for the expected-quality table (default {FADES}; 0: none)",
    )
    p.add_argument(
        "--cache", metavar="DIR", help="folder of regenerated images, shared by runs (default OUT/images/regen)"
    )
    p.add_argument(
        "--workers", type=int, default=1, help="processes (one thread each) that regenerate the maps (default 1)"
    )
    p.add_argument("--fid-kid", action="store_true", help="FID and KID at the view SNR (needs at least 100 images)")
    p.add_argument("--images", type=int, help="N scenes evenly spaced over the split (default: all)")
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
    from qgesco.semcom import CompareSettings, compare
    from qgesco.semcom.report import render

    device = validate.device("--device", args.device)
    validate.seed("--seed", args.seed)
    if args.codec is not None and not {"digital-image", "ideal-image"} & set(args.schemes):
        raise ValueError(
            f"--codec {','.join(args.codec)} sets the photo codec of digital-image / ideal-image, which --schemes "
            f"{','.join(args.schemes)} leaves out: add one of them or leave --codec out"
        )
    settings = CompareSettings(
        args.data,
        data_root=args.data_root,
        snrs=args.snr,
        budgets=args.budget,
        schemes=args.schemes,
        mcs=args.mcs,
        link_mode=args.link,
        bler_target=args.bler_target,
        power=args.power,
        sampler=args.sampler,
        fades=validate.finite_number("--fades", args.fades, low=0, integer=True),
        fid_kid=args.fid_kid,
        cache=args.cache,
        workers=validate.finite_number("--workers", args.workers, low=1, integer=True),
        channel=args.channel,
        codecs=args.codec or ["jpeg"],
        images=args.images,
        view_snr=args.view_snr,
        cleanup=args.filter,
        seed=args.seed,
    )
    result = compare(settings, args.out, args.model, str(device))
    print(render(result))
    print(
        f"wrote results.json, table.md, quality_vs_snr.png, quality_vs_budget.png and images/ in {args.out} "
        f"({result['seconds']:.0f} s)"
    )
    return 0

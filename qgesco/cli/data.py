"""``qgesco data check PATH --format cityscapes|camvid``: validate a dataset tree and print the report."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="inspect datasets", description="Inspect datasets.")
    actions = parser.add_subparsers(dest="data_action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="validate a dataset folder: counts, sizes, class histogram, every problem",
        description="Read every file of a CamVid or Cityscapes tree and report pair counts, image sizes, the class "
        "histogram and every problem (missing pair, unreadable file, label value out of range, size mismatch). "
        "Exit status 1 when problems were found.",
    )
    check.add_argument("path", help="the dataset's root folder")
    check.add_argument("--format", required=True, choices=("cityscapes", "camvid"), help="the folder layout")
    check.add_argument(
        "--split",
        action="append",
        choices=("train", "val", "test"),
        help="check only this split (repeatable; default: every split present)",
    )
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    from qgesco.data.check import check_dataset

    if not args.path.strip():
        raise ValueError("PATH '': give the dataset's root folder, e.g. qgesco data check ../shared/datasets/camvid")
    report = check_dataset(args.path, args.format, args.split)
    print(report)
    return 0 if report.ok else 1

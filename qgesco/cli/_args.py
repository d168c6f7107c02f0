"""Argument types shared by several verbs, so each is parsed and explained one way."""

from __future__ import annotations

import argparse


def psnr_list(text: str) -> list[float]:
    """``"100,20,10"`` -> [100.0, 20.0, 10.0] (an argparse ``type``: bad input is one usage line)."""
    try:
        levels = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated numbers in dB, e.g. 100,20,10") from None
    if not levels or any(v != v for v in levels):
        raise argparse.ArgumentTypeError(f"{text!r}: give at least one number in dB (NaN is not a PSNR), e.g. 100,20,10")
    return levels

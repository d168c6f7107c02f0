"""Argument parsing shared by several verbs, so each input is read and explained one way."""

from __future__ import annotations

import argparse


def input_files(**sources: str | None) -> dict[str, str | None]:
    """``--option -> file`` of a verb's input options (a bundled model name resolved to its file), for
    :func:`qgesco.validate.output_file` to refuse an output that would overwrite one."""
    from qgesco.models.checkpoint import source_path

    return {f"--{k}": None if v is None else str(source_path(v)) for k, v in sources.items()}


def _floats(text: str, shown: str, what: str, example: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{shown}: give comma-separated {what}, e.g. {example}") from None


def parse_psnrs(text: str, flag: str | None = "--psnr") -> list[float]:
    """``"100,20,10"`` -> [100.0, 20.0, 10.0]; bad input is a ValueError naming ``flag`` and the fix."""
    shown = f"{flag} {text!r}" if flag else repr(text)
    example = f"{flag} 100,20,10" if flag else "100,20,10"
    levels = _floats(text, shown, "numbers in dB", example)
    if not levels or any(v != v for v in levels):
        raise ValueError(f"{shown}: give at least one number in dB (NaN is not a PSNR), e.g. {example}")
    return levels


def psnr_list(text: str) -> list[float]:
    """:func:`parse_psnrs` as an argparse ``type`` (argparse names the option itself)."""
    try:
        return parse_psnrs(text, flag=None)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def number_list(text: str) -> list[float]:
    """``"0,5,10"`` -> [0.0, 5.0, 10.0] as an argparse ``type``; ranges are the caller's to check."""
    try:
        values = _floats(text, repr(text), "numbers", "0,5,10")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if not values:
        raise argparse.ArgumentTypeError("empty: give at least one number")
    return values

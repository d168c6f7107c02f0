"""Received maps on disk: what a transmitter hands a separate receiver (``qgesco transmit --out`` ->
``qgesco sample``). A safetensors file with the received map ``y`` (N, C, H, W) in the model's layout,
optionally the clean class map ``labels``, and the channel settings in its metadata."""

from __future__ import annotations

import os
from typing import Any

import torch

from .. import validate
from ..fileio import load_tensors, read_kind, save_tensors

KIND = "received-maps"


def save_received(
    path: str | os.PathLike, y: torch.Tensor, labels: torch.Tensor | None = None, info: dict[str, Any] | None = None
) -> None:
    """Write received maps ``y`` (and the clean ``labels`` they came from) with ``info`` (JSON-able)."""
    validate.maps("the received maps", y)
    tensors = {"y": y} if labels is None else {"y": y, "labels": labels}
    meta = {"kind": KIND, **(info or {})}
    meta["kind"] = KIND
    save_tensors(path, tensors, meta)


def load_received(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, Any]]:
    """``(y, labels or None, info)`` of a file :func:`save_received` wrote; ``y`` checked as float maps."""
    # a file without a kind (maps saved by hand with a "y" tensor) is taken as received maps
    read_kind(path, (KIND, None), "received maps", "make them with `qgesco transmit ... --out`")
    tensors, meta = load_tensors(path)
    if "y" not in tensors:
        raise ValueError(f"{path}: no received map 'y' in it; make it with `qgesco transmit ... --out`")
    y = validate.maps(f"{path}: the received map", tensors["y"].float())
    info = {k: v for k, v in meta.items() if k not in ("kind", "sha256")}
    return y, tensors.get("labels"), info

"""Input checks shared by the public calls and the command line, run before any compute.

Each raises ``ValueError`` (or ``FileNotFoundError``) with one line that names the input, what
is wrong and what to do, so that bad input never turns into a traceback half-way through a
run, or worse into a black image with exit status 0.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Iterable
from pathlib import Path

import torch

from .fileio import nonfinite


def finite_number(
    name: str, value, *, low: float | None = None, high: float | None = None, integer: bool = False
) -> float:
    """A real, finite number (an int when ``integer``) within [low, high]."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(
            f"{name} must be {'an integer' if integer else 'a number'}, got {value!r} ({type(value).__name__})"
        )
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number (not NaN or infinity), got {value}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise ValueError(f"{name} must be in {bounds}, got {value}")
    return value


def finite_tensor(name: str, t: torch.Tensor) -> torch.Tensor:
    """A non-empty tensor without NaN/inf (they only ever turn into black images)."""
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)}); give at least one map")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        n = int((~torch.isfinite(t)).sum())
        raise ValueError(
            f"{name} holds {n} NaN/inf value(s); the maps were damaged in transit or on disk: re-create them"
        )
    return t


def maps(name: str, y, channels: int | None = None) -> torch.Tensor:
    """Received or one-hot maps: a finite (N, C, H, W) float tensor with ``channels`` channels."""
    if not isinstance(y, torch.Tensor) or y.dim() != 4:
        raise ValueError(
            f"{name} must be a (N, C, H, W) tensor, got {getattr(y, 'shape', type(y).__name__)}; "
            "make them with qgesco.send(labels, num_classes, channel)"
        )
    if not y.is_floating_point():
        raise ValueError(f"{name} must be a float tensor, got {y.dtype}; encode label maps first with qgesco.send")
    if channels is not None and y.shape[1] != channels:
        raise ValueError(
            f"{name} have {y.shape[1]} channels but the model takes {channels}; "
            "encode them with the model's num_classes (and instance edges unless no_instance)"
        )
    return finite_tensor(name, y)


def model(name: str, obj) -> None:
    """A loaded model (something callable as ``model(x, t, y)``), not a name or a path."""
    if isinstance(obj, (str, os.PathLike)):
        raise ValueError(
            f"{name} must be a loaded model, got the name/path {str(obj)!r}; "
            f"load it first: qgesco.load_model({str(obj)!r})"
        )
    if not callable(obj):
        raise ValueError(f"{name} must be a model callable as model(x, t, y), got {type(obj).__name__}")


def device(option: str, name: str) -> torch.device:
    """``cpu``, ``cuda[:N]`` or ``auto`` (cuda if available); cuda without a GPU is refused here, not mid-run."""
    if not isinstance(name, str) or not re.fullmatch(r"cpu|auto|cuda(:\d+)?", name):
        raise ValueError(f"{option} {name!r}: use cpu, cuda or auto")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{option} {name}: no CUDA GPU is visible to torch; use cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def finite_weights(name: str, net: torch.nn.Module) -> None:
    bad = nonfinite(net.state_dict())
    if bad:
        raise ValueError(
            f"{name} has NaN/inf weights (first: {', '.join(bad[:3])}); it diverged or its file is damaged"
        )


def _existing_ancestor(path: Path) -> Path:
    for parent in (path, *path.parents):
        if parent.exists():
            return parent
    return Path(".")


def _writable(option: str, path: Path, folder: Path) -> None:
    """The nearest existing folder at or above ``folder`` (where ``path`` goes) is writable, with no file in the way."""
    anchor = _existing_ancestor(folder)
    if not anchor.is_dir():
        raise ValueError(f"{option} {path}: {anchor} is a file, not a folder; choose another path")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise PermissionError(f"{option} {path}: folder {anchor} is not writable; choose another path")


def output_file(option: str, path: str | os.PathLike, suffixes: Iterable[str] = ()) -> Path:
    """A file we may create or replace: not a folder, in a writable folder, with one of ``suffixes``."""
    path = Path(path)
    if path.is_dir() or str(path).endswith(os.sep):
        raise ValueError(f"{option} {path}: is a folder; give a file name")
    suffixes = tuple(suffixes)
    if suffixes and path.suffix.lower() not in suffixes:
        raise ValueError(f"{option} {path}: the file name must end in {' or '.join(suffixes)}")
    _writable(option, path, path.parent)
    return path


def output_dir(option: str, path: str | os.PathLike) -> Path:
    """A folder we may create or write into: not an existing file, no file above it, writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path}: is a file, not a folder; choose a folder")
    _writable(option, path, path)
    return path

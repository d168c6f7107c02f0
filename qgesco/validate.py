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
import tempfile
from collections.abc import Iterable, Mapping
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


#: The classifier-free guidance scales accepted everywhere (CLI and API): 0 is the unconditional model,
#: 1 the conditional one, the paper uses 2; far beyond the top every image saturates to black and white.
GUIDANCE_RANGE = (0.0, 20.0)


def guidance(name: str, value) -> float:
    """A guidance scale within :data:`GUIDANCE_RANGE`."""
    low, high = GUIDANCE_RANGE
    value = finite_number(name, value)
    if not low <= value <= high:
        raise ValueError(
            f"{name} {value:g}: guidance scales go from {low:g} (unconditional) to {high:g}, beyond which every "
            "image saturates; the receiver's default is 2"
        )
    return value


#: Seeds are what ``torch.Generator.manual_seed`` takes without wrapping or overflow.
SEED_RANGE = (0, 2**63 - 1)


def seed(name: str, value) -> int:
    """A seed within :data:`SEED_RANGE`."""
    return finite_number(name, value, low=SEED_RANGE[0], high=SEED_RANGE[1], integer=True)


#: Largest image side qgesco computes at: Cityscapes' full width (the published models run at 256x512).
MAX_SIDE = 2048
#: Largest float map (C, H, W) a command builds or writes: three times a full-resolution Cityscapes
#: map (36 planes of 1024x2048); beyond it a class count is a typo, not a dataset.
MAX_MAP_BYTES = 2**30


def image_size(option: str, height: int, width: int, factor: int = 1) -> tuple[int, int]:
    """An image size of 1..:data:`MAX_SIDE` pixels a side, each side a multiple of ``factor`` (the
    model's downsampling), so that a model never fails on it half-way through."""
    for side in (height, width):
        finite_number(option, side, low=1, integer=True)
    if max(height, width) > MAX_SIDE:
        raise ValueError(
            f"{option} {height}x{width}: qgesco runs at up to {MAX_SIDE} pixels a side; give a smaller size"
        )
    if height % factor or width % factor:
        raise ValueError(
            f"{option} {height}x{width}: the model downsamples to 1/{factor}; give multiples of {factor}, "
            f"e.g. {max(factor, height // factor * factor)}x{max(factor, width // factor * factor)}"
        )
    return height, width


def map_bytes(option: str, channels: int, height: int, width: int) -> int:
    """The bytes of a float32 map of ``channels`` planes, refused beyond :data:`MAX_MAP_BYTES`."""
    size = 4 * channels * height * width
    if size > MAX_MAP_BYTES:
        raise ValueError(
            f"{option}: {channels} planes of {height}x{width} would make a {size / 1e9:.1f} GB map (at most "
            f"{MAX_MAP_BYTES / 1e9:.1f} GB); the bundled models take 12 classes (CamVid), the published ones 35 "
            "(Cityscapes)"
        )
    return size


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


#: No weight of a trained GESCO model comes near this (inits and trained weights are of order 1): a
#: model beyond it diverged, finite or not, and only ever makes saturated images.
MAX_ABS_WEIGHT = 1e4


def oversized(tensors) -> list[str]:
    """Names of the floating-point tensors holding a value beyond +-:data:`MAX_ABS_WEIGHT`."""
    return [
        k
        for k, v in tensors.items()
        if v.is_floating_point() and v.numel() and float(v.detach().abs().max()) > MAX_ABS_WEIGHT
    ]


def finite_weights(name: str, net: torch.nn.Module) -> None:
    """Weights without NaN/inf and within +-:data:`MAX_ABS_WEIGHT`: finite is not the same as sane."""
    state = net.state_dict()
    bad = nonfinite(state)
    if bad:
        raise ValueError(
            f"{name} has NaN/inf weights (first: {', '.join(bad[:3])}); it diverged or its file is damaged"
        )
    big = oversized(state)
    if big:
        raise ValueError(
            f"{name} has weights beyond +-{MAX_ABS_WEIGHT:g} (first: {', '.join(big[:3])}), far outside any trained "
            "model's: its training diverged or its file is damaged; use an earlier checkpoint"
        )


def _existing_ancestor(path: Path) -> Path:
    for parent in (path, *path.parents):
        if parent.exists():
            return parent
    return Path(".")


def _writable(option: str, path: Path, folder: Path) -> None:
    """The nearest existing folder at or above ``folder`` (where ``path`` goes) takes new files, with no file
    in the way: a file is created there and removed, since permission bits do not tell (root, /proc, read-only
    mounts)."""
    anchor = _existing_ancestor(folder)
    if not anchor.is_dir():
        raise ValueError(f"{option} {path}: {anchor} is a file, not a folder; choose another path")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise PermissionError(f"{option} {path}: folder {anchor} is not writable; choose another path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".qgesco-probe.", dir=anchor)
    except OSError as e:
        raise PermissionError(
            f"{option} {path}: cannot create files in {anchor} ({e.strerror or e}); choose another path"
        ) from None
    os.close(fd)
    os.unlink(probe)


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def output_file(
    option: str,
    path: str | os.PathLike,
    suffixes: Iterable[str] = (),
    inputs: Mapping[str, str | os.PathLike | None] | None = None,
) -> Path:
    """A file we may create or replace: not a folder, in a writable folder, with one of ``suffixes``,
    and not (a link to) any of ``inputs`` (option -> path), which writing it would destroy."""
    path = Path(path)
    for other, source in (inputs or {}).items():
        if source is not None and _same_file(path, Path(source)):
            raise ValueError(f"{option} {path}: is the same file as {other}; writing it would destroy that input")
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

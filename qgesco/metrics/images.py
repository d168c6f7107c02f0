"""Image conventions shared by every image metric: float RGB tensors in [0, 1].

One convention for LPIPS, PSNR/SSIM and Inception features, checked at the door, so that
a model output in [-1, 1] or a uint8 tensor fails loudly instead of giving a plausible
but wrong number.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def as_image_batch(x: torch.Tensor, name: str = "images") -> torch.Tensor:
    """``x`` as an (N, 3, H, W) float batch; a single (3, H, W) image gets a batch axis."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name}: expected shape (N, 3, H, W) or (3, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a float tensor in [0, 1], got {x.dtype}; divide uint8 images by 255")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(
            f"{name}: values span [{lo:.3g}, {hi:.3g}] but metrics take images in [0, 1]; map [-1, 1] model outputs "
            "with (x + 1) / 2"
        )
    return x


def same_shape(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check and batch a pair of image tensors (regenerated vs original)."""
    a, b = as_image_batch(a, "image"), as_image_batch(b, "reference")
    if a.shape != b.shape:
        raise ValueError(
            f"image {tuple(a.shape)} and reference {tuple(b.shape)} differ in shape; paired metrics need equal shapes"
        )
    return a, b


def load_image(path: str | os.PathLike, size: tuple[int, int] | None = None) -> torch.Tensor:
    """An image file as a (3, H, W) float tensor in [0, 1]; ``size=(H, W)`` resizes with bicubic."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.BICUBIC)
        arr = np.asarray(im, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The PNG/JPEG files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder of images")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no {'/'.join(IMAGE_SUFFIXES)} files in it")
    return files


def common_size(files: list[Path], folder: str | os.PathLike) -> tuple[int, int]:
    """The (H, W) all ``files`` share, or a clear error naming the sizes found."""
    by_size: dict[tuple[int, int], list[Path]] = {}
    for f in files:
        with Image.open(f) as im:
            by_size.setdefault((im.height, im.width), []).append(f)
    if len(by_size) > 1:
        found = ", ".join(
            f"{h}x{w} ({len(fs)} files, e.g. {fs[0].name})"
            for (h, w), fs in sorted(by_size.items(), key=lambda kv: -len(kv[1]))
        )
        raise ValueError(
            f"{folder}: images differ in size (HxW: {found}). All images of a set must share one size, "
            f"so that every one takes the same path to the metric; remove the odd ones, or pass resize=(H, W) "
            f"to resize all of them (bicubic) first"
        )
    return next(iter(by_size))

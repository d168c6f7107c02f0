"""Pictures of results: labelled image grids (maps in the class palette, images, samples).

Training sample grids, the evaluation grid and the demo grid are all ``columns x rows``
of same-sized tiles with a title over each column; this module draws them once.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image, ImageDraw

from .channel import colorize
from .fileio import atomic_path


def images_to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) images in [-1, 1] -> (N, H, W, 3) uint8."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def maps_to_uint8(y: torch.Tensor, num_classes: int) -> np.ndarray:
    """(N, C[+1], H, W) maps (one-hot or received) -> class-palette pictures of their argmax.

    Pixels where no class channel is positive (a dropped map) are drawn black.
    """
    classes = y[:, :num_classes].detach().float()
    index = classes.argmax(dim=1)
    index[classes.amax(dim=1) <= 0] = -1
    return colorize(index.cpu(), num_classes).numpy()


def labels_to_uint8(labels: torch.Tensor, num_classes: int) -> np.ndarray:
    return colorize(labels.detach().cpu().long(), num_classes).numpy()


def grid(
    columns: dict[str, np.ndarray],
    scale: int = 2,
    pad: int = 2,
    title_height: int = 14,
    row_titles: list[str] | None = None,
    row_title_width: int = 48,
) -> Image.Image:
    """Tiles ``columns[title][row]`` (each (N, H, W, 3) uint8) into one picture with column
    titles and, optionally, a title left of each row."""
    tiles = list(columns.values())
    n, h, w = tiles[0].shape[:3]
    if any(t.shape[:3] != (n, h, w) for t in tiles):
        raise ValueError("every grid column needs the same number of same-sized tiles")
    if row_titles is not None and len(row_titles) != n:
        raise ValueError(f"{len(row_titles)} row titles for {n} rows")
    th, tw = h * scale, w * scale
    left = row_title_width if row_titles is not None else 0
    canvas = Image.new("RGB", (left + len(tiles) * (tw + pad) + pad, title_height + n * (th + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for r, title in enumerate(row_titles or []):
        draw.text((2, title_height + pad + r * (th + pad) + th // 2 - 5), title, fill="black")
    for c, (title, column) in enumerate(columns.items()):
        x0 = left + pad + c * (tw + pad)
        draw.text((x0 + 2, 1), title, fill="black")
        for r in range(n):
            tile = Image.fromarray(column[r]).resize((tw, th), Image.NEAREST)
            canvas.paste(tile, (x0, title_height + pad + r * (th + pad)))
    return canvas


def save_png(image: Image.Image, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")

"""Class colours for previews, so every picture of a map in this project looks the same.

CamVid (12 classes, SegNet order) and Cityscapes (35 label ids, the published GESCO
model's classes) get their datasets' standard colours; any other class count gets the
deterministic Pascal-VOC-style bit-interleaved palette.
"""

from __future__ import annotations

import torch

#: SegNet's CamVid colours: Sky, Building, Pole, Road, Pavement, Tree, SignSymbol, Fence,
#: Car, Pedestrian, Bicyclist, Unlabelled.
CAMVID_PALETTE = (
    (128, 128, 128),
    (128, 0, 0),
    (192, 192, 128),
    (128, 64, 128),
    (60, 40, 222),
    (128, 128, 0),
    (192, 128, 128),
    (64, 64, 128),
    (64, 0, 128),
    (64, 64, 0),
    (0, 128, 192),
    (0, 0, 0),
)

#: Cityscapes colours by label id 0..33 (cityscapesScripts), then id 34 for the license
#: plate (id -1 there), which completes the 35 channels of the published model.
CITYSCAPES_PALETTE = (
    (0, 0, 0),
    (0, 0, 0),
    (0, 0, 0),
    (0, 0, 0),
    (0, 0, 0),
    (111, 74, 0),
    (81, 0, 81),
    (128, 64, 128),
    (244, 35, 232),
    (250, 170, 160),
    (230, 150, 140),
    (70, 70, 70),
    (102, 102, 156),
    (190, 153, 153),
    (180, 165, 180),
    (150, 100, 100),
    (150, 120, 90),
    (153, 153, 153),
    (153, 153, 153),
    (250, 170, 30),
    (220, 220, 0),
    (107, 142, 35),
    (152, 251, 152),
    (70, 130, 180),
    (220, 20, 60),
    (255, 0, 0),
    (0, 0, 142),
    (0, 0, 70),
    (0, 60, 100),
    (0, 0, 90),
    (0, 0, 110),
    (0, 80, 100),
    (0, 0, 230),
    (119, 11, 32),
    (0, 0, 142),
)


def _bit_interleaved(num_classes: int) -> list[tuple[int, int, int]]:
    """Class i's bits spread over R, G, B from the most significant bit down: distinct, stable colours."""
    colours = []
    for i in range(num_classes):
        rgb = [0, 0, 0]
        for bit in range(8):
            for c in range(3):
                rgb[c] |= ((i >> (3 * bit + c)) & 1) << (7 - bit)
        colours.append(tuple(rgb))
    return colours


def class_palette(num_classes: int) -> torch.Tensor:
    """(num_classes, 3) uint8 colours: CamVid for 12 classes, Cityscapes for 35, else bit-interleaved."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    colours = {len(CAMVID_PALETTE): CAMVID_PALETTE, len(CITYSCAPES_PALETTE): CITYSCAPES_PALETTE}.get(num_classes)
    return torch.tensor(colours or _bit_interleaved(num_classes), dtype=torch.uint8)


def colorize(indices: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(..., H, W, 3) uint8 picture of a class-index map; -1 (no class) is black."""
    indices = torch.as_tensor(indices)
    if indices.is_floating_point() or indices.dtype == torch.bool:
        raise ValueError(f"colorize takes integer class indices, got {indices.dtype}")
    indices = indices.long()
    if indices.numel() and (indices.min() < -1 or indices.max() >= num_classes):
        raise ValueError(
            f"class indices must be in 0..{num_classes - 1} (or -1 for no class), "
            f"got {int(indices.min())}..{int(indices.max())}"
        )
    colours = torch.cat([torch.zeros(1, 3, dtype=torch.uint8), class_palette(num_classes)]).to(indices.device)
    return colours[indices + 1]

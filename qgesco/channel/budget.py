"""Bandwidth accounting: what sending a map costs, analog and digital.

Semantic communication only pays off if the map is cheaper than the image. This counts
real channel uses of the analog one-hot transmission (whole, and presence-compressed
with its C-bit mask) and, for the digital alternative, the bits of the label map
compressed losslessly (PNG) and of the photo as JPEG, so that later comparisons can be
made at equal cost.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .onehot import IgnoreMap, encode
from .presence import compress


def png_bits(index_map: torch.Tensor) -> int:
    """Bits of an (H, W) integer map as a maximally compressed 8- or 16-bit grey PNG."""
    index_map = torch.as_tensor(index_map)
    if index_map.dim() != 2 or index_map.is_floating_point() or index_map.dtype == torch.bool:
        raise ValueError(
            f"png_bits takes an (H, W) integer map, got {index_map.dtype} of shape {tuple(index_map.shape)}"
        )
    if index_map.numel() and (index_map.min() < 0 or index_map.max() > 65535):
        raise ValueError("png_bits: PNG stores ids in 0..65535; remap the map's values first")
    array = index_map.cpu().numpy().astype(np.uint8 if index_map.max() < 256 else np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=True, compress_level=9)
    return 8 * buffer.tell()


def jpeg_bits(image: torch.Tensor, quality: int = 75) -> int:
    """Bits of a (3, H, W) uint8 RGB image as an optimised baseline JPEG at ``quality``."""
    image = torch.as_tensor(image)
    if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(
            f"jpeg_bits takes a (3, H, W) uint8 RGB image, got {image.dtype} of shape {tuple(image.shape)}"
        )
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).cpu().numpy()).save(buffer, format="JPEG", quality=quality, optimize=True)
    return 8 * buffer.tell()


@dataclass(frozen=True)
class Bandwidth:
    """The cost of one map, in real channel uses (analog) and bits (digital)."""

    height: int
    width: int
    num_classes: int
    classes_present: int
    edge_plane: bool
    label_png_bits: int
    instance_png_bits: int | None = None
    jpeg_bits: int | None = None
    jpeg_quality: int | None = None

    @property
    def full_channel_uses(self) -> int:
        """Every plane of ``y`` sent: (C [+1 edge]) * H * W."""
        return (self.num_classes + self.edge_plane) * self.height * self.width

    @property
    def compressed_channel_uses(self) -> int:
        """Present classes' planes (+ edge plane) sent: (K [+1]) * H * W, plus :attr:`presence_bits`."""
        return (self.classes_present + self.edge_plane) * self.height * self.width

    @property
    def presence_bits(self) -> int:
        return self.num_classes


def bandwidth(
    labels, num_classes: int, instance=None, images=None, *, jpeg_quality: int = 75, ignore: IgnoreMap | None = None
) -> list[Bandwidth]:
    """One :class:`Bandwidth` per map of ``labels`` (N, H, W); ``images`` (N, 3, H, W) uint8 adds the JPEG figure."""
    y = encode(labels, num_classes, instance, ignore=ignore)
    present = compress(y, num_classes).presence.sum(1).tolist()
    labels = torch.as_tensor(labels)
    if images is not None and (len(images) != len(labels)):
        raise ValueError(f"{len(images)} images for {len(labels)} label maps; give one photo per map")
    if images is not None and tuple(images.shape[-2:]) != tuple(labels.shape[-2:]):
        raise ValueError(
            f"the photos are {images.shape[-2]}x{images.shape[-1]} but the maps {labels.shape[-2]}x{labels.shape[-1]}: "
            "the per-pixel figures compare equal pixels; give the photo at the map's size"
        )
    return [
        Bandwidth(
            height=y.shape[2],
            width=y.shape[3],
            num_classes=num_classes,
            classes_present=present[n],
            edge_plane=instance is not None,
            label_png_bits=png_bits(labels[n]),
            instance_png_bits=None if instance is None else png_bits(torch.as_tensor(instance)[n]),
            jpeg_bits=None if images is None else jpeg_bits(images[n], jpeg_quality),
            jpeg_quality=None if images is None else jpeg_quality,
        )
        for n in range(y.shape[0])
    ]

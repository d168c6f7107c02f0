"""Source coding for the comparison: label maps (deflate) and photos (JPEG), at reduced resolution.

Fixed headers are not sent: both ends know them from the resolution and quality (the schemes' header
byte). At CamVid's 48x64 they would dominate: a PNG container is ~140 of a map's ~400 bytes, and
PIL's JPEG header (quantization and standard Huffman tables) is 623 bytes against a scan of 70-500.
So a map is the raw deflate stream (PNG's compressor) of its 8-bit labels, and a photo is the
entropy-coded scan of a baseline JPEG with the standard tables (an "abbreviated" JPEG).

A cheaper map is a downsampled one (every ``factor``-th label, upsampled again by repetition at the
receiver); a cheaper photo is a lower JPEG quality and, below quality :data:`MIN_JPEG_QUALITY`, a
downsampled one (bicubic down and up), because a 1-quality JPEG is worse than a half-size 30-quality one.
"""

from __future__ import annotations

import io
import zlib

import numpy as np
import torch
from PIL import Image

#: Resolution reductions tried, finest first: 1 = the full map or photo.
FACTORS = (1, 2, 4, 8)
#: Below this JPEG quality the image codec prefers a downsampled photo.
MIN_JPEG_QUALITY = 20
JPEG_QUALITIES = range(95, 0, -1)


def downsample_labels(labels: torch.Tensor, factor: int) -> torch.Tensor:
    """Every ``factor``-th label of an (H, W) map, taken at the cell centres."""
    return labels[factor // 2 :: factor, factor // 2 :: factor].contiguous()


def upsample(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour upsampling of the last two axes to ``hw`` (a whole factor of the input)."""
    factor_h, factor_w = hw[0] // x.shape[-2], hw[1] // x.shape[-1]
    return x.repeat_interleave(factor_h, -2).repeat_interleave(factor_w, -1)


def map_payload(labels: torch.Tensor, factor: int) -> bytes:
    """The map downsampled by ``factor`` as a raw deflate stream of its 8-bit labels."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(downsample_labels(labels, factor).numpy().astype(np.uint8).tobytes()) + packer.flush()


def decode_map(data: bytes, hw: tuple[int, int], factor: int) -> torch.Tensor:
    small = np.frombuffer(zlib.decompress(data, -15), np.uint8).reshape(hw[0] // factor, hw[1] // factor)
    return upsample(torch.from_numpy(small.astype(np.int64)), hw)


def _resize(image: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """A (3, H, W) uint8 image resized with bicubic, as PIL does it."""
    pil = Image.fromarray(image.permute(1, 2, 0).numpy()).resize((hw[1], hw[0]), Image.BICUBIC)
    return torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)


def _jpeg(image: torch.Tensor, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _header_length(jpeg: bytes) -> int:
    """Bytes up to the end of the start-of-scan segment."""
    sos = jpeg.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(jpeg[sos + 2 : sos + 4], "big")


def image_payload(image: torch.Tensor, factor: int, quality: int) -> bytes:
    """The JPEG scan of a (3, H, W) uint8 photo downsampled by ``factor``, coded at ``quality``."""
    h, w = image.shape[1:]
    jpeg = _jpeg(image if factor == 1 else _resize(image, (h // factor, w // factor)), quality)
    return jpeg[_header_length(jpeg) : -2]


def decode_image(data: bytes, hw: tuple[int, int], factor: int, quality: int) -> torch.Tensor:
    """The photo back from its scan: the header both ends know, the scan, the end-of-image marker."""
    small = (hw[0] // factor, hw[1] // factor)
    blank = _jpeg(torch.zeros((3, *small), dtype=torch.uint8), quality)
    with Image.open(io.BytesIO(blank[: _header_length(blank)] + data + b"\xff\xd9")) as im:
        image = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)
    return image if factor == 1 else _resize(image, hw)


def best_jpeg(image: torch.Tensor, max_bytes: int) -> tuple[int, int, bytes] | None:
    """(factor, quality, bytes) of the best photo within ``max_bytes``: the finest resolution that fits
    at quality >= :data:`MIN_JPEG_QUALITY`, else the finest that fits at any quality; None if none fits."""
    fallback = None
    for factor in FACTORS:
        for quality in JPEG_QUALITIES:  # sizes are not strictly monotone in quality: take the first that fits
            data = image_payload(image, factor, quality)
            if len(data) <= max_bytes:
                if quality >= MIN_JPEG_QUALITY:
                    return factor, quality, data
                fallback = fallback or (factor, quality, data)
                break
    return fallback

"""Source coding for the comparison: label maps (deflate) and photos (JPEG, WebP, JPEG 2000, HEVC, AVIF), at
reduced resolution.

Only what the receiver cannot know is sent and counted, and every payload delimits itself: the receiver
gets it zero-padded to whole codewords and needs no length. Both ends know the resolution, the codec and its
quality setting (the schemes' header byte) and whatever they fix; at CamVid's 48x64 fixed headers would
dominate (a PNG container is ~140 of a map's ~400 bytes, PIL's JPEG header 623 bytes against a scan of
70-500). Per codec:

- map: the raw deflate stream (PNG's compressor) of its 8-bit labels, no container;
- ``jpeg``: the entropy-coded scan of a baseline JPEG with the standard tables (an "abbreviated" JPEG);
  the receiver prepends the header of the same settings and appends the end-of-image marker;
- ``jp2``: the JPEG 2000 codestream (OpenJPEG, 9/7 wavelet, 3 resolutions, one layer at a compression ratio)
  from its first tile-part on: the main header (SIZ, COD, QCD; 123 bytes at 48x64) is a function of the size and
  settings only (:func:`_fixed_header` checks it is the same for this photo) and the end marker is
  appended; the tile-part headers, with their lengths, are sent and counted;
- ``webp``: the lossy VP8 bitstream whole (its frame tag, start code and dimensions, 10 bytes, counted)
  plus 2 bytes of its length, from which the receiver rebuilds the 20-byte RIFF container;
- ``hevc`` (HEIC: HEVC intra, the codec of BPG) and ``avif`` (AV1 intra): the coded units of the file's ``mdat``,
  the container and AVIF's sequence header rebuilt by the receiver (:mod:`~qgesco.semcom.heif`).

A cheaper map is a downsampled one (every ``factor``-th label, upsampled again by repetition at the
receiver); a cheaper photo is a lower quality or a downsampled one (bicubic down and up): the sender,
which has the photo, takes at each resolution the highest quality that fits and keeps the resolution
whose decoded photo is nearest the original (PSNR). Quality settings mean different things per codec
(JPEG 2000's is a compression ratio), so a fixed quality threshold for downsampling would favour one.
"""

from __future__ import annotations

import functools
import io
import math
import zlib

import numpy as np
import torch
from PIL import Image

from . import heif

#: Resolution reductions tried, finest first: 1 = the full map or photo.
FACTORS = (1, 2, 4, 8)
QUALITIES = range(100, 0, -1)
#: The photo codecs, by the names ``qgesco compare --codec`` takes.
CODECS = ("jpeg", "webp", "jp2", *heif.CODECS)


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


def _save(image: torch.Tensor, codec: str, quality: int) -> bytes:
    """The whole file PIL writes for a (3, H, W) uint8 photo at ``quality`` (1..100, higher is better)."""
    buffer = io.BytesIO()
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    if codec in heif.CODECS:
        return heif.save(pil, codec, quality)
    if codec == "jpeg":
        pil.save(buffer, format="JPEG", quality=quality)
    elif codec == "webp":
        pil.save(buffer, format="WEBP", quality=quality, method=6)
    else:  # compression ratio 2 (quality 100) to 800 (quality 1), geometric
        ratio = 2 * 400 ** ((100 - quality) / 99)
        # the 9/7 wavelet (PIL's default is the lossless 5/3) over 3 resolutions: 6 suit megapixels, not 48x64
        pil.save(
            buffer,
            format="JPEG2000",
            quality_mode="rates",
            quality_layers=[ratio],
            irreversible=True,
            num_resolutions=3,
            no_jp2=True,
        )
    return buffer.getvalue()


def _header_length(codec: str, data: bytes) -> int:
    """Bytes of the fixed header: up to the end of JPEG's start-of-scan segment, or JPEG 2000's first tile-part."""
    if codec == "jpeg":
        sos = data.index(b"\xff\xda")
        return sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
    return data.index(b"\xff\x90")


@functools.lru_cache(maxsize=1024)
def _blank(codec: str, hw: tuple[int, int], quality: int) -> bytes:
    """The file of a black photo at these settings: what the receiver derives every fixed header from."""
    return _save(torch.zeros((3, *hw), dtype=torch.uint8), codec, quality)


def _fixed_header(codec: str, hw: tuple[int, int], quality: int) -> bytes:
    blank = _blank(codec, hw, quality)
    return blank[: _header_length(codec, blank)]


def image_payload(image: torch.Tensor, factor: int, quality: int, codec: str = "jpeg") -> bytes:
    """What is sent of a (3, H, W) uint8 photo downsampled by ``factor`` and coded at ``quality``."""
    return _payload(image.numpy().tobytes(), tuple(image.shape), factor, quality, codec)


@functools.lru_cache(maxsize=8192)
def _payload(pixels: bytes, shape: tuple[int, ...], factor: int, quality: int, codec: str) -> bytes:
    """:func:`image_payload`, each coding done once: the quality search repeats them for every budget and SNR,
    and x265 takes tens of milliseconds per tiny photo."""
    image = torch.frombuffer(bytearray(pixels), dtype=torch.uint8).reshape(shape)
    h, w = shape[1:]
    small = image if factor == 1 else _resize(image, (h // factor, w // factor))
    data = _save(small, codec, quality)
    if codec == "webp":
        if data[12:16] != b"VP8 ":
            raise RuntimeError(f"PIL wrote a {data[12:16]!r} WebP, not the simple lossy format this codec sends")
        return len(data[20:]).to_bytes(2, "big") + data[20:]
    if codec in heif.CODECS:
        return heif.split(data, _blank(codec, tuple(small.shape[1:]), quality), codec)
    start = _header_length(codec, data)
    if data[:start] != _fixed_header(codec, tuple(small.shape[1:]), quality):
        raise RuntimeError(f"the {codec} header of this photo is not the one the receiver assumes")
    return data[start:-2]


def decode_image(data: bytes, hw: tuple[int, int], factor: int, quality: int, codec: str = "jpeg") -> torch.Tensor:
    """The photo back from its payload: the header both ends know (or the rebuilt container) around it."""
    small = (hw[0] // factor, hw[1] // factor)
    if codec == "webp":
        stream = data[2 : 2 + int.from_bytes(data[:2], "big")]
        riff = b"WEBPVP8 " + len(stream).to_bytes(4, "little") + stream
        file = b"RIFF" + len(riff).to_bytes(4, "little") + riff
    elif codec in heif.CODECS:
        file = heif.join(data, _blank(codec, small, quality), codec)
    else:
        file = _fixed_header(codec, small, quality) + (_tile_parts(data) if codec == "jp2" else data) + b"\xff\xd9"
    with heif.open_file(file) if codec in heif.CODECS else Image.open(io.BytesIO(file)) as im:
        image = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)
    return image if factor == 1 else _resize(image, hw)


def _tile_parts(data: bytes) -> bytes:
    """JPEG 2000 tile-parts without what follows them (the link's zero padding): each starts with its length."""
    end = 0
    while data[end : end + 2] == b"\xff\x90" and end + 10 <= len(data):
        end += int.from_bytes(data[end + 6 : end + 10], "big")
    return data[:end]


def _psnr(decoded: torch.Tensor, image: torch.Tensor) -> float:
    mse = (decoded.float() - image.float()).square().mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(255**2 / mse)


def best_fit(
    image: torch.Tensor, max_bytes: int, codec: str = "jpeg", memo: dict | None = None
) -> tuple[int, int, bytes] | None:
    """(factor, quality, bytes) of the best photo within ``max_bytes``: at each resolution the highest
    quality that fits, and of those the one that decodes nearest the original; None if none fits. ``memo``
    (a dict kept per photo) saves coding it again for another room."""
    hw = tuple(image.shape[1:])
    memo = {} if memo is None else memo
    best, best_psnr = None, -math.inf
    for factor in FACTORS:
        for quality in QUALITIES:  # sizes are not strictly monotone in quality: take the first that fits
            if codec == "jpeg" and quality > 95:
                continue  # above 95 PIL's JPEG grows without getting better
            if (factor, quality) not in memo:
                memo[(factor, quality)] = [image_payload(image, factor, quality, codec), None]
            data = memo[(factor, quality)][0]
            if len(data) <= max_bytes:
                if memo[(factor, quality)][1] is None:
                    memo[(factor, quality)][1] = _psnr(decode_image(data, hw, factor, quality, codec), image)
                psnr = memo[(factor, quality)][1]
                if psnr > best_psnr:
                    best, best_psnr = (factor, quality, data), psnr
                break
    return best

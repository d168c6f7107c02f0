"""HEVC and AVIF still photos (the HEIF family: BPG-class HEVC intra through ``pillow-heif``'s x265, AV1 intra
through Pillow's own libavif) with their ISO-BMFF container taken apart, so that only what a fixed receiver must
be told is sent.

A HEIF/AVIF file of one photo is ``ftyp`` + ``meta`` (handler, item location ``iloc``, item info, properties:
size, colour, and the decoder configuration ``hvcC`` / ``av1C`` with HEVC's parameter sets or AV1's sequence
header) + ``mdat`` (the coded image). At a given size and quality setting everything before ``mdat``'s content is
the same for every photo except the two lengths (``iloc``'s extent length and ``mdat``'s box size), and so is the
start of AVIF's ``mdat`` (a temporal delimiter and the sequence header OBU); the receiver
takes them from a blank photo coded with the same settings (:func:`split` checks they match for each photo) and
rewrites the two lengths. What is sent and counted is the rest of ``mdat`` as the encoder wrote it: HEVC's NAL
units with their 4-byte length prefixes, AVIF's frame OBUs with their size fields. Both delimit themselves, so
the receiver finds the end of a zero-padded payload without being told its length. How many bytes this leaves
out at 48x64 is in docs/semcom.md.

Settings: the libraries' defaults (x265's default preset, libavif speed 6), 4:2:0 chroma, quality 1..100.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, features

CODECS = ("hevc", "avif")
_OBU_TEMPORAL_DELIMITER, _OBU_SEQUENCE_HEADER = 2, 1


def _register() -> None:
    try:
        import pillow_heif
    except ImportError:
        raise RuntimeError("the hevc codec needs pillow-heif: pip install 'qgesco[semcom]'") from None
    pillow_heif.register_heif_opener()


def save(pil: Image.Image, codec: str, quality: int) -> bytes:
    """The whole HEIC or AVIF file of an RGB image at ``quality`` (1..100, higher is better)."""
    buffer = io.BytesIO()
    if codec == "hevc":
        _register()
        pil.save(buffer, format="HEIF", quality=quality)
    elif not features.check("avif"):
        raise RuntimeError("the avif codec needs a Pillow built with AVIF: pip install 'qgesco[semcom]'")
    else:
        pil.save(buffer, format="AVIF", quality=quality)
    return buffer.getvalue()


def open_file(data: bytes) -> Image.Image:
    if data[8:12] == b"heic":
        _register()
    return Image.open(io.BytesIO(data))


def _boxes(data: bytes, start: int, end: int) -> dict[str, tuple[int, int]]:
    """Top-level ISO-BMFF boxes between ``start`` and ``end``: type -> (offset, size)."""
    found = {}
    while start + 8 <= end:
        size = int.from_bytes(data[start : start + 4], "big")
        if size < 8:
            raise RuntimeError("a HEIF box with a 64-bit or open size: not the simple file this codec sends")
        found[data[start + 4 : start + 8].decode("latin-1")] = (start, size)
        start += size
    return found


@dataclass
class _Layout:
    mdat: int  # offset of the mdat box; its content starts 8 bytes later and ends the file
    length_at: int  # offset and size of iloc's extent length
    length_size: int


def _layout(data: bytes) -> _Layout:
    top = _boxes(data, 0, len(data))
    if "meta" not in top or "mdat" not in top or sum(top["mdat"]) != len(data):
        raise RuntimeError("a HEIF file without meta or not ending with its mdat: not the layout this codec sends")
    meta, meta_size = top["meta"]
    iloc = _boxes(data, meta + 12, meta + meta_size).get("iloc")  # meta is a full box: 4 bytes of version/flags
    if iloc is None:
        raise RuntimeError("a HEIF file without item locations")
    p = iloc[0] + 8
    version = data[p]
    offset_size, length_size = data[p + 4] >> 4, data[p + 4] & 15
    base_size, index_size = data[p + 5] >> 4, (data[p + 5] & 15) if version else 0
    p += 6
    id_size = 4 if version == 2 else 2
    items = int.from_bytes(data[p : p + id_size], "big")
    p += 2 * id_size + (2 if version else 0) + 2 + base_size  # count, item ID, construction method, dref, base
    extents = int.from_bytes(data[p : p + 2], "big")
    if items != 1 or extents != 1:
        raise RuntimeError(f"a HEIF file of {items} items / {extents} extents: this codec sends one image in one piece")
    return _Layout(top["mdat"][0], p + 2 + index_size + offset_size, length_size)


def _fixed_prefix(content: bytes, codec: str) -> int:
    """Bytes at the start of ``mdat`` the receiver knows: AVIF's temporal delimiter and sequence header OBUs."""
    end = 0
    while (
        codec == "avif"
        and end < len(content)
        and (content[end] >> 3) & 15
        in (
            _OBU_TEMPORAL_DELIMITER,
            _OBU_SEQUENCE_HEADER,
        )
    ):
        end = _next_unit(content, end, codec)
    return end


def _next_unit(data: bytes, p: int, codec: str) -> int:
    """Where the NAL unit (HEVC, 4-byte length first) or OBU (AV1, LEB128 size after its header) at ``p`` ends."""
    if codec == "hevc":
        return p + 4 + int.from_bytes(data[p : p + 4], "big")
    header = data[p]
    if not header & 2:
        raise RuntimeError("an AV1 OBU without its size field: the payload would not delimit itself")
    p += 2 if header & 4 else 1  # header, extension byte
    size, shift = 0, 0
    while True:
        byte = data[p]
        size, shift, p = size | (byte & 127) << shift, shift + 7, p + 1
        if not byte & 128:
            return p + size


def _units_length(data: bytes, codec: str) -> int:
    """Length of the self-delimiting units at the start of ``data``, up to the zero padding after them."""
    p = 0
    while p < len(data) and any(data[p : p + 4]):
        p = _next_unit(data, p, codec)
    return p


def _known(data: bytes, codec: str) -> tuple[bytes, bytes]:
    """(the container with both lengths zeroed, the fixed start of mdat): what the receiver must already know."""
    lay = _layout(data)
    head = bytearray(data[: lay.mdat + 8])
    head[lay.length_at : lay.length_at + lay.length_size] = bytes(lay.length_size)
    head[lay.mdat : lay.mdat + 4] = bytes(4)
    content = data[lay.mdat + 8 :]
    return bytes(head), content[: _fixed_prefix(content, codec)]


def split(data: bytes, template: bytes, codec: str) -> bytes:
    """What is sent of ``data``: its mdat after the fixed prefix, once its fixed parts are checked to be those of
    ``template`` (a blank photo of the same size and quality)."""
    head, prefix = _known(data, codec)
    if (head, prefix) != _known(template, codec):
        raise RuntimeError(f"the {codec} container of this photo is not the one the receiver assumes")
    sent = data[len(head) + len(prefix) :]
    if _units_length(sent, codec) != len(sent):
        raise RuntimeError(f"the {codec} payload does not delimit itself")
    return sent


def join(payload: bytes, template: bytes, codec: str) -> bytes:
    """The file back from a zero-padded payload and the receiver's template: its lengths rewritten."""
    head, prefix = _known(template, codec)
    content = prefix + payload[: _units_length(payload, codec)]
    lay = _layout(template)
    file = bytearray(head + content)
    file[lay.length_at : lay.length_at + lay.length_size] = len(content).to_bytes(lay.length_size, "big")
    file[lay.mdat : lay.mdat + 4] = (8 + len(content)).to_bytes(4, "big")
    return bytes(file)

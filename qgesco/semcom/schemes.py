"""The transmission schemes compared at equal channel uses, each with an exact count of real channel uses.

Every scheme gets the same budget of real channel uses per image and is charged all of it (what it
leaves unused is idle air time); :attr:`Plan.uses` is what it actually occupies, never more than the
budget. Each scheme picks the best content that fits the budget:

- ``analog-map``: the paper's path. The present classes' one-hot planes (presence compression) as
  analog symbols, one real use per pixel and plane, plus the C-bit presence mask and 2 bits naming
  the map's resolution (one use per bit, sent clean as the published code does); cheaper at a map
  downsampled by 2, 4 or 8. The receiver cleans the planes, upsamples them and regenerates.
- ``digital-map``: the label map (downsampled as above when the budget asks), deflated, one header byte,
  through the LDPC code and QAM of :class:`~qgesco.semcom.link.DigitalLink`, decoded, then
  regenerated. A failed decode is a failed image: the receiver shows mid-grey.
- ``digital-image``: the photo coded with JPEG at the best quality (and resolution) whose coded size fits, one
  header byte, same code and modulation, decoded and shown; a failed decode is mid-grey too.
  ``digital-image-webp`` and ``digital-image-jp2`` are the same with WebP and JPEG 2000
  (:mod:`~qgesco.semcom.codec` says which header bytes each sends).
- ``deepjscc``: the photo through the learned joint source-channel code of Bourtsoulatze, Kurka & Gündüz
  (:mod:`~qgesco.semcom.jscc`): the bundled model of the most channel uses that fit, its unit-power real symbols
  one real use each, no header (the model follows from the budget both ends know), decoded knowing the SNR.
- ``ideal-map`` / ``ideal-image`` (``-webp``, ``-jp2``, ...): the same payloads through an ideal code at Shannon
  capacity of the real channel at this PSNR and, with Rayleigh fading, this image's fade
  (:func:`~qgesco.semcom.link.capacity`): the payload is chosen knowing both, and it never fails unless the
  fade is so deep that nothing fits (an outage). An upper bound for any real code, not a scheme.

On the ``rayleigh`` channel every scheme of an image at a PSNR sees the same flat fade (one per image,
:mod:`~qgesco.semcom.link`), known to the receiver; the analog map's symbols are equalised
(zero-forcing), as :class:`qgesco.channel.Rayleigh` does.

Real schemes choose their payload without knowing the SNR (one fixed code rate): this is what makes
the digital cliff.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ..channel import CLEANUPS, compress, encode, make_channel, transmit
from .codec import (
    CODECS,
    FACTORS,
    best_fit,
    decode_image,
    decode_map,
    downsample_labels,
    image_payload,
    map_payload,
    upsample,
)
from .jscc import add_noise, bundled_models, load_jscc
from .link import DigitalLink, capacity, check_channel, rayleigh_gain

SCHEMES = ("analog-map", "digital-map", "digital-image", "ideal-map", "ideal-image", "deepjscc")
#: Bits naming the payload's resolution and quality, sent with every image by every scheme.
HEADER_BITS_ANALOG = 2
HEADER_BYTES_DIGITAL = 1


@dataclass
class Plan:
    """What one scheme sends for one image at one budget: the channel uses it occupies and its content."""

    scheme: str
    budget: int
    uses: int
    factor: int
    quality: int | None = None
    payload: bytes | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def bits(self) -> int | None:
        return None if self.payload is None else 8 * len(self.payload)


@dataclass
class Outcome:
    """What the receiver has: a conditioning map to regenerate from (with a key naming its content for
    reuse), a decoded photo, or nothing (``failed``)."""

    y: torch.Tensor | None = None
    key: tuple | None = None
    image: torch.Tensor | None = None
    failed: bool = False
    #: the folder naming a decoded photo that depends on more than the plan's factor and quality (DeepJSCC's)
    tag: str | None = None


class Scheme:
    """Sender + channel + receiver of one kind. ``plan`` chooses what fits a budget; ``receive`` sends it."""

    name = ""
    regenerates = True

    def plan(
        self, labels: torch.Tensor, image: torch.Tensor, budget: int, psnr_db: float, gain: float = 1.0
    ) -> Plan | None:
        """What fits ``budget``; only the ideal bounds use the PSNR and the fade amplitude ``gain``."""
        raise NotImplementedError

    def receive(self, plan: Plan, labels: torch.Tensor, psnr_db: float, generator: torch.Generator) -> Outcome:
        raise NotImplementedError


class AnalogMap(Scheme):
    name = "analog-map"

    def __init__(self, num_classes: int, cleanup: str = "avgmax", channel: str = "awgn"):
        if cleanup not in CLEANUPS:
            raise ValueError(f"unknown cleanup {cleanup!r}; choose one of {', '.join(CLEANUPS)}")
        check_channel(channel)
        self.num_classes, self.cleanup, self.channel = num_classes, cleanup, channel

    def uses(self, labels: torch.Tensor, factor: int) -> int:
        small = downsample_labels(labels, factor)
        planes = int(compress(encode(small[None], self.num_classes), self.num_classes).presence.sum())
        return planes * small.numel() + self.num_classes + HEADER_BITS_ANALOG

    def plan(self, labels, image, budget, psnr_db, gain=1.0):
        for factor in FACTORS:
            uses = self.uses(labels, factor)
            if uses <= budget:
                return Plan(self.name, budget, uses, factor)
        return None

    def receive(self, plan, labels, psnr_db, generator):
        y = encode(downsample_labels(labels, plan.factor)[None], self.num_classes)
        channel = make_channel(self.channel, float(psnr_db))
        received = transmit(y, channel, self.num_classes, cleanup=self.cleanup, generator=generator)
        return Outcome(y=upsample(received, tuple(labels.shape)), key=("analog", plan.factor, float(psnr_db)))


class _Digital(Scheme):
    """Payload choice and delivery shared by the coded schemes; the ideal ones replace the link by capacity."""

    ideal = False

    def __init__(self, num_classes: int, link: DigitalLink):
        self.num_classes, self.link = num_classes, link

    def max_payload_bytes(self, budget: int, psnr_db: float, gain: float = 1.0) -> int:
        bits = math.floor(budget * capacity(psnr_db, gain)) if self.ideal else self.link.max_bits(budget)
        return bits // 8 - HEADER_BYTES_DIGITAL

    def charge(self, payload: bytes, budget: int, psnr_db: float, gain: float = 1.0) -> int:
        bits = 8 * (len(payload) + HEADER_BYTES_DIGITAL)
        return min(budget, math.ceil(bits / capacity(psnr_db, gain))) if self.ideal else self.link.channel_uses(bits)

    def deliver(self, plan: Plan, psnr_db: float, generator: torch.Generator) -> bytes | None:
        if self.ideal:
            return plan.payload
        delivery = self.link.send(bytes(HEADER_BYTES_DIGITAL) + plan.payload, psnr_db, generator)
        plan.detail.update(codewords=delivery.codewords, codeword_errors=delivery.codeword_errors)
        return delivery.data[HEADER_BYTES_DIGITAL:] if delivery.ok else None


class DigitalMap(_Digital):
    name = "digital-map"

    def plan(self, labels, image, budget, psnr_db, gain=1.0):
        room = self.max_payload_bytes(budget, psnr_db, gain)
        for factor in FACTORS:
            payload = map_payload(labels, factor)
            if len(payload) <= room:
                return Plan(self.name, budget, self.charge(payload, budget, psnr_db, gain), factor, payload=payload)
        return None

    def receive(self, plan, labels, psnr_db, generator):
        data = self.deliver(plan, psnr_db, generator)
        if data is None:
            return Outcome(failed=True)
        decoded = decode_map(data, tuple(labels.shape), plan.factor)
        # an exact map regenerates to the same image whatever carried it: one key per resolution
        return Outcome(y=encode(decoded[None], self.num_classes), key=("map", plan.factor))


class DigitalImage(_Digital):
    """The photo through one codec of :data:`~qgesco.semcom.codec.CODECS`; its name carries the codec
    unless it is JPEG."""

    regenerates = False
    base = "digital-image"

    def __init__(self, num_classes: int, link: DigitalLink, codec: str = "jpeg"):
        if codec not in CODECS:
            raise ValueError(f"unknown image codec {codec!r}; choose from {', '.join(CODECS)}")
        super().__init__(num_classes, link)
        self.codec = codec
        self.name = self.base if codec == "jpeg" else f"{self.base}-{codec}"
        self._fits = {}

    def _best(self, image: torch.Tensor, room: int):
        """:func:`~qgesco.semcom.codec.best_fit`, once per photo and room (plans repeat over SNRs)."""
        key = (hashlib.sha256(image.numpy().tobytes()).digest(), room)
        if key not in self._fits:
            self._fits[key] = best_fit(image, room, self.codec)
        return self._fits[key]

    def plan(self, labels, image, budget, psnr_db, gain=1.0):
        best = self._best(image, self.max_payload_bytes(budget, psnr_db, gain))
        if best is None:
            return None
        factor, quality, payload = best
        return Plan(self.name, budget, self.charge(payload, budget, psnr_db, gain), factor, quality, payload)

    def receive(self, plan, labels, psnr_db, generator):
        data = self.deliver(plan, psnr_db, generator)
        if data is None:
            return Outcome(failed=True)
        return Outcome(image=decode_image(data, tuple(labels.shape), plan.factor, plan.quality, self.codec))


class IdealMap(DigitalMap):
    name = "ideal-map"
    ideal = True


class IdealImage(DigitalImage):
    base = "ideal-image"
    ideal = True


@dataclass
class SymbolPlan(Plan):
    """A plan whose content is real channel symbols (unit average power), not bytes."""

    symbols: torch.Tensor | None = None


class DeepJSCCScheme(Scheme):
    """The photo through the DeepJSCC model (:mod:`~qgesco.semcom.jscc`) of the most real channel uses that fit
    the budget, of those in ``models`` (a folder; default the bundled ones) made for the photo's size."""

    name = "deepjscc"
    regenerates = False

    def __init__(self, num_classes: int, channel: str = "awgn", models=None):
        check_channel(channel)
        self.num_classes, self.channel = num_classes, channel
        self.models = [load_jscc(path) for path in bundled_models(models)]
        if not self.models:
            raise ValueError(f"no DeepJSCC models in {models or 'qgesco/assets'}; train one with qgesco train-jscc")

    def _fitting(self, hw: tuple[int, int], budget: int):
        fits = [(m.uses(hw), m, meta) for m, meta in self.models if tuple(meta["image_hw"]) == hw]
        return sorted((f for f in fits if f[0] <= budget), key=lambda f: f[0])

    def smallest(self, hw: tuple[int, int]) -> int:
        fits = self._fitting(hw, 10**12)
        if not fits:
            raise ValueError(f"no DeepJSCC model for {hw[0]}x{hw[1]} photos; train one with qgesco train-jscc")
        return fits[0][0]

    @torch.no_grad()
    def plan(self, labels, image, budget, psnr_db, gain=1.0):
        fits = self._fitting(tuple(image.shape[1:]), budget)
        if not fits:
            return None
        uses, model, meta = fits[-1]
        symbols = model.encode(image[None].float() / 255)
        detail = {"channels": model.channels, "model_sha256": meta["sha256"]}
        return SymbolPlan(self.name, budget, uses, 1, detail=detail, symbols=symbols)

    @torch.no_grad()
    def receive(self, plan, labels, psnr_db, generator):
        model = next(m for m, meta in self.models if meta["sha256"] == plan.detail["model_sha256"])
        gain = abs(rayleigh_gain(generator)) if self.channel == "rayleigh" else 1.0
        received = add_noise(plan.symbols, float(psnr_db), gain, generator)
        decoded = model.decode(received, torch.tensor(float(psnr_db) + 20 * math.log10(gain)))
        image = (decoded[0] * 255).round().clamp(0, 255).to(torch.uint8)
        tag = f"c{model.channels}-{plan.detail['model_sha256'][:8]}/snr{float(psnr_db):g}"
        return Outcome(image=image, tag=tag)


def make_schemes(
    names, num_classes: int, mcs: str, cleanup: str = "avgmax", channel: str = "awgn", codecs=("jpeg",)
) -> dict[str, Scheme]:
    """The named schemes on ``channel``, sharing one digital link, the image ones once per codec (a JPEG
    variant keeps the plain name); unknown names or codecs are refused before any work."""
    names, codecs = list(dict.fromkeys(names)), list(dict.fromkeys(codecs))
    unknown = [n for n in names if n not in SCHEMES]
    if unknown or not names:
        raise ValueError(f"unknown scheme(s) {unknown or names}; choose from {', '.join(SCHEMES)}")
    if not codecs or any(c not in CODECS for c in codecs):
        raise ValueError(f"unknown image codec(s) in {codecs}; choose from {', '.join(CODECS)}")
    link = DigitalLink(mcs, channel)
    made: dict[str, Scheme] = {}
    for n in names:
        if n == "analog-map":
            made[n] = AnalogMap(num_classes, cleanup, channel)
        elif n == "deepjscc":
            made[n] = DeepJSCCScheme(num_classes, channel)
        elif n in ("digital-map", "ideal-map"):
            made[n] = (DigitalMap if n == "digital-map" else IdealMap)(num_classes, link)
        else:
            for codec in codecs:
                scheme = (DigitalImage if n == "digital-image" else IdealImage)(num_classes, link, codec)
                made[scheme.name] = scheme
    return made


def smallest_budget(scheme: Scheme, labels: torch.Tensor, image: torch.Tensor, psnr_db: float) -> int:
    """The fewest real channel uses with which ``scheme`` can send anything of this image (for error messages)."""
    if isinstance(scheme, AnalogMap):
        return scheme.uses(labels, FACTORS[-1])
    if isinstance(scheme, DeepJSCCScheme):
        return scheme.smallest(tuple(image.shape[1:]))
    coarsest = FACTORS[-1]
    if isinstance(scheme, DigitalMap):
        payload = map_payload(labels, coarsest)
    else:
        payload = image_payload(image, coarsest, 1, scheme.codec)
    return scheme.charge(payload, 10**12, psnr_db)

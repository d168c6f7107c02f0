"""The transmission schemes compared at equal channel uses, each with an exact count of real channel uses.

Every scheme gets the same budget of real channel uses per image and is charged all of it (what it
leaves unused is idle air time); :attr:`Plan.uses` is what it actually occupies, never more than the
budget. Each scheme picks the best content that fits the budget:

- ``analog-map``: the paper's path. The present classes' one-hot planes (presence compression) as
  analog symbols scaled to unit average power, one real use per pixel and plane, plus the C-bit presence
  mask and 2 bits naming the map's resolution (one use per bit, sent clean as the published code does); cheaper at a map
  downsampled by 2, 4 or 8. The receiver cleans the planes (``auto``: the paper's avgmax at low SNR, a hard
  decision above, :data:`HARD_DECISION_FROM_DB`), upsamples them and regenerates.
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

Power: every scheme sends average power 1 per real channel use and the SNR is that over the noise
variance per real use (the analog map scaled by sqrt(K), :meth:`AnalogMap.gain_db`; ``power="peak"`` keeps
the paper's PSNR). The coded schemes adapt their MCS to the SNR and budget (:mod:`~qgesco.semcom.mcs`)
unless given a fixed one, which chooses the payload without knowing the SNR: the digital cliff.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ..channel import CLEANUPS, compress, encode, make_channel, transmit
from . import mcs as link_adaptation
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
from .link import ADAPTIVE, DigitalLink, capacity, check_channel, check_mcs, rayleigh_gain

SCHEMES = ("analog-map", "digital-map", "digital-image", "ideal-map", "ideal-image", "deepjscc")
#: How the analog map's SNR is counted: ``unit`` scales its symbols to average power 1 per real use, as
#: every other scheme (the paper normalises the map before sending); ``peak`` sends the one-hot symbols
#: as they are (peak 1, average 1/K for K sent planes: the paper's PSNR, 10 log10 K dB less power).
POWERS = ("unit", "peak")
#: The analog map's cleanups: the channel's, and ``auto``, the paper's ``avgmax`` below
#: :data:`HARD_DECISION_FROM_DB` and the hard ``argmax`` decision from there on.
MAP_CLEANUPS = ("auto", *CLEANUPS)
#: Where the hard decision overtakes avgmax on CamVid maps at unit power (bench/semcom_cleanup.py, docs/semcom.md):
#: above it avgmax's widened borders cost more pixels than its averaging saves.
HARD_DECISION_FROM_DB = 0.0
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
    """What the receiver has: a conditioning map to regenerate from, a decoded photo, or nothing (``failed``)."""

    y: torch.Tensor | None = None
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

    def __init__(self, num_classes: int, cleanup: str = "auto", channel: str = "awgn", power: str = "unit"):
        if cleanup not in MAP_CLEANUPS:
            raise ValueError(f"unknown cleanup {cleanup!r}; choose one of {', '.join(MAP_CLEANUPS)}")
        if power not in POWERS:
            raise ValueError(f"unknown power convention {power!r}; choose one of {', '.join(POWERS)}")
        check_channel(channel)
        self.num_classes, self.cleanup, self.channel, self.power = num_classes, cleanup, channel, power

    def planes(self, labels: torch.Tensor, factor: int) -> int:
        small = downsample_labels(labels, factor)
        return int(compress(encode(small[None], self.num_classes), self.num_classes).presence.sum())

    def uses(self, labels: torch.Tensor, factor: int) -> int:
        return (
            self.planes(labels, factor) * downsample_labels(labels, factor).numel()
            + self.num_classes
            + HEADER_BITS_ANALOG
        )

    def gain_db(self, labels: torch.Tensor, factor: int) -> float:
        """How much the sent map's amplitude is raised over the one-hot's, in dB: with K planes a pixel's K
        symbols hold one 1, so scaling them by sqrt(K) makes the average power per real use 1 (the mask
        and header bits are +-1 symbols already); 0 with ``power="peak"``."""
        return 10 * math.log10(self.planes(labels, factor)) if self.power == "unit" else 0.0

    def symbols(self, labels: torch.Tensor, factor: int) -> torch.Tensor:
        """Every real symbol sent, in order: the scaled planes, then the presence mask and header as +-1."""
        sent = compress(encode(downsample_labels(labels, factor)[None], self.num_classes), self.num_classes)
        header = torch.ones(self.num_classes + HEADER_BITS_ANALOG)
        header[: self.num_classes] = sent.presence[0].float() * 2 - 1
        scale = 10 ** (self.gain_db(labels, factor) / 20)
        return torch.cat([scale * sent.symbols.flatten().float(), header])

    def plan(self, labels, image, budget, psnr_db, gain=1.0):
        for factor in FACTORS:
            uses = self.uses(labels, factor)
            if uses <= budget:
                return Plan(self.name, budget, uses, factor)
        return None

    def receive(self, plan, labels, psnr_db, generator):
        """The map scaled by g = sqrt(K) over noise sigma is the one-hot over noise sigma / g: the channel runs
        at PSNR + 20 log10 g on the unscaled symbols (same draws), and the receiver never needs g."""
        y = encode(downsample_labels(labels, plan.factor)[None], self.num_classes)
        channel = make_channel(self.channel, float(psnr_db) + self.gain_db(labels, plan.factor))
        cleanup = self.cleanup
        if cleanup == "auto":
            cleanup = "argmax" if psnr_db >= HARD_DECISION_FROM_DB else "avgmax"
        received = transmit(y, channel, self.num_classes, cleanup=cleanup, generator=generator)
        return Outcome(y=upsample(received, tuple(labels.shape)))


class _Digital(Scheme):
    """Payload choice and delivery shared by the coded schemes; the ideal ones replace the link by capacity.

    With ``mcs="adaptive"`` the sender picks the MCS per SNR and budget (:func:`~qgesco.semcom.mcs.choose`;
    on ``rayleigh`` knowing the average SNR but not the fade, so against the fading-averaged error rate) and
    fills the budget's payload at it; a fixed MCS ignores the SNR (the cliff)."""

    ideal = False

    def __init__(
        self, num_classes: int, mcs: str = ADAPTIVE, channel: str = "awgn", mode: str = "ldpc", target: float = 0.1
    ):
        check_mcs(mcs)
        self.num_classes, self.mcs, self.channel, self.mode, self.target = num_classes, mcs, channel, mode, target
        self._links: dict[str, DigitalLink] = {}

    def link(self, budget: int, psnr_db: float) -> DigitalLink:
        fading = self.channel == "rayleigh"
        name = self.mcs if self.mcs != ADAPTIVE else link_adaptation.choose(psnr_db, budget, self.target, fading)
        if name not in self._links:
            self._links[name] = DigitalLink(name, self.channel, self.mode)
        return self._links[name]

    def max_payload_bytes(self, budget: int, psnr_db: float, gain: float = 1.0) -> int:
        bits = (
            math.floor(budget * capacity(psnr_db, gain)) if self.ideal else self.link(budget, psnr_db).max_bits(budget)
        )
        return bits // 8 - HEADER_BYTES_DIGITAL

    def charge(self, payload: bytes, budget: int, psnr_db: float, gain: float = 1.0) -> int:
        bits = 8 * (len(payload) + HEADER_BYTES_DIGITAL)
        if self.ideal:
            return min(budget, math.ceil(bits / capacity(psnr_db, gain)))
        return self.link(budget, psnr_db).channel_uses(bits)

    def _plan(self, budget, psnr_db, gain, factor, payload, quality=None) -> Plan:
        plan = Plan(self.name, budget, self.charge(payload, budget, psnr_db, gain), factor, quality, payload)
        if not self.ideal:
            plan.detail["mcs"] = self.link(budget, psnr_db).mcs
        return plan

    def deliver(self, plan: Plan, psnr_db: float, generator: torch.Generator) -> bytes | None:
        if self.ideal:
            return plan.payload
        link = self.link(plan.budget, psnr_db)
        delivery = link.send(bytes(HEADER_BYTES_DIGITAL) + plan.payload, psnr_db, generator)
        plan.detail.update(codewords=delivery.codewords, codeword_errors=delivery.codeword_errors)
        return delivery.data[HEADER_BYTES_DIGITAL:] if delivery.ok else None


class DigitalMap(_Digital):
    name = "digital-map"

    def plan(self, labels, image, budget, psnr_db, gain=1.0):
        room = self.max_payload_bytes(budget, psnr_db, gain)
        for factor in FACTORS:
            payload = map_payload(labels, factor)
            if len(payload) <= room:
                return self._plan(budget, psnr_db, gain, factor, payload)
        return None

    def receive(self, plan, labels, psnr_db, generator):
        data = self.deliver(plan, psnr_db, generator)
        if data is None:
            return Outcome(failed=True)
        decoded = decode_map(data, tuple(labels.shape), plan.factor)
        return Outcome(y=encode(decoded[None], self.num_classes))


class DigitalImage(_Digital):
    """The photo through one codec of :data:`~qgesco.semcom.codec.CODECS`; its name carries the codec
    unless it is JPEG."""

    regenerates = False
    base = "digital-image"

    def __init__(self, num_classes: int, codec: str = "jpeg", **link):
        if codec not in CODECS:
            raise ValueError(f"unknown image codec {codec!r}; choose from {', '.join(CODECS)}")
        super().__init__(num_classes, **link)
        self.codec = codec
        self.name = self.base if codec == "jpeg" else f"{self.base}-{codec}"
        self._fits, self._coded = {}, {}

    def _best(self, image: torch.Tensor, room: int):
        """:func:`~qgesco.semcom.codec.best_fit`, once per photo and room, each photo coded once per
        resolution and quality (plans repeat over SNRs and budgets)."""
        photo = hashlib.sha256(image.numpy().tobytes()).digest()
        if (photo, room) not in self._fits:
            self._fits[(photo, room)] = best_fit(image, room, self.codec, self._coded.setdefault(photo, {}))
        return self._fits[(photo, room)]

    def plan(self, labels, image, budget, psnr_db, gain=1.0):
        best = self._best(image, self.max_payload_bytes(budget, psnr_db, gain))
        if best is None:
            return None
        factor, quality, payload = best
        return self._plan(budget, psnr_db, gain, factor, payload, quality)

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
    names,
    num_classes: int,
    mcs: str = ADAPTIVE,
    cleanup: str = "auto",
    channel: str = "awgn",
    codecs=("jpeg",),
    *,
    power: str = "unit",
    link_mode: str = "ldpc",
    target: float = link_adaptation.DEFAULT_TARGET,
) -> dict[str, Scheme]:
    """The named schemes on ``channel``, the image ones once per codec (a JPEG variant keeps the plain name);
    unknown names or codecs are refused before any work. A new scheme is a :class:`Scheme` subclass added
    to :data:`SCHEMES` and to the branch below."""
    names, codecs = list(dict.fromkeys(names)), list(dict.fromkeys(codecs))
    unknown = [n for n in names if n not in SCHEMES]
    if unknown or not names:
        raise ValueError(f"unknown scheme(s) {unknown or names}; choose from {', '.join(SCHEMES)}")
    if not codecs or any(c not in CODECS for c in codecs):
        raise ValueError(f"unknown image codec(s) in {codecs}; choose from {', '.join(CODECS)}")
    link = dict(mcs=mcs, channel=channel, mode=link_mode, target=target)
    made: dict[str, Scheme] = {}
    for n in names:
        if n == "analog-map":
            made[n] = AnalogMap(num_classes, cleanup, channel, power)
        elif n == "deepjscc":
            made[n] = DeepJSCCScheme(num_classes, channel)
        elif n in ("digital-map", "ideal-map"):
            made[n] = (DigitalMap if n == "digital-map" else IdealMap)(num_classes, **link)
        else:
            for codec in codecs:
                scheme = (DigitalImage if n == "digital-image" else IdealImage)(num_classes, codec, **link)
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

"""The digital link: bytes -> 5G NR LDPC -> QAM -> AWGN or Rayleigh -> soft demapping -> LDPC decoding -> bytes.

The code is Sionna's (``sionna-no-rt``, PyTorch): the standard 5G NR LDPC code (both base graphs,
rate matching, layered belief propagation) and Gray-mapped QAM with exact soft demapping. It draws no
random numbers itself, so with the noise drawn here from the caller's seeded generator a run is
bit-for-bit repeatable. It is imported only when a digital link is made (docs/architecture.md: why
Sionna, and what it costs).

Conventions, so that the digital schemes compare with the analog map at the same "PSNR": a
complex symbol takes two real channel uses; the constellation is scaled to average power 1 per
real channel use and the noise per real use has the analog path's sigma = 10^(-PSNR/20)
(:func:`qgesco.channel.noise_sigma`). The analog one-hot map has peak 1 and average power at most 1,
so this gives the digital schemes at least the analog map's power: any win of the map is not a
power artefact. A codeword that does not decode exactly (checked against the sent bits, as a
CRC would) fails the whole payload: a corrupted PNG or JPEG is not shown.

Rayleigh fading is quasi-static, one gain h ~ CN(0, 1) per image and PSNR, held over the whole
payload, with perfect channel knowledge at the receiver, as :class:`qgesco.channel.Rayleigh` fades
the analog map (one fade per image). :func:`rayleigh_gain` draws h first from the same seeded
generator, exactly as that class does, so the analog map and every digital payload of an image see
the same fade. The receiver gets r = h s + n and equalises, r / h = s + n / h: for a flat fade this
is a sufficient statistic, its noise is complex Gaussian of variance sigma^2 / |h|^2 per symbol, and
the demapper is given that variance, so its LLRs are exact for the fade (a deep fade gives small,
honest LLRs rather than confident wrong ones). A payload thus decodes when |h|^2 / sigma^2 is above
the code's threshold and fails whole otherwise: outage, the fading counterpart of the AWGN cliff.
Sionna's own channel models (``FlatFadingChannel``, ``RayleighBlockFading``) were not used: they draw
from Sionna's global random state, and sharing the analog map's fade needs our generator.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import torch

from ..channel import noise_sigma
from .bler import bler

#: Codeword length in coded bits: divisible by 2, 4, 6 and 8 (QPSK to 256-QAM) and by 3 and 4 (rates 1/3, 3/4).
CODEWORD_BITS = 1200
#: A CRC-24 per codeword (5G NR's code-block CRC24B): counted in every codeword's information bits. The
#: receiver checks the decoded bits against the sent ones, which is what the CRC detects (it misses 2^-24).
CRC_BITS = 24
#: 3GPP TS 38.214 Table 5.1.3.1-2 (the 256-QAM PDSCH MCS table): (bits per complex symbol, code rate x 1024).
MCS_TABLE = (
    (2, 120), (2, 193), (2, 308), (2, 449), (2, 602),
    (4, 378), (4, 434), (4, 490), (4, 553), (4, 616), (4, 658),
    (6, 466), (6, 517), (6, 567), (6, 616), (6, 666), (6, 719), (6, 772), (6, 822), (6, 873),
    (8, 682.5), (8, 711), (8, 754), (8, 797), (8, 841), (8, 885), (8, 916.5), (8, 948),
)  # fmt: skip
RATES = {"1/3": (1, 3), "1/2": (1, 2), "2/3": (2, 3), "3/4": (3, 4)}
MODULATIONS = {"qpsk": 2, "16qam": 4}
CHANNELS = ("awgn", "rayleigh")
#: ``ldpc`` decodes every codeword; ``table`` draws each codeword's fate from the cached BLER curves
#: (:mod:`~qgesco.semcom.mcs`), the link abstraction of system-level simulators.
LINK_MODES = ("ldpc", "table")
#: The digital schemes pick their MCS per SNR and budget unless given a fixed one.
ADAPTIVE = "adaptive"
DEFAULT_MCS = ADAPTIVE
#: The lowest code rate of the 5G LDPC mother code (base graph 2); lower rates repeat coded bits.
_MOTHER_RATE = 1 / 5
_DECODER_ITERATIONS = 20


def mcs_names() -> list[str]:
    """Fixed codes: the 5G table's ``mcs0``..``mcs27`` and the older ``qpsk-1/2``-style names."""
    return [f"mcs{i}" for i in range(len(MCS_TABLE))] + [f"{m}-{r}" for m in MODULATIONS for r in RATES]


def parse_mcs(mcs: str) -> tuple[int, int, int]:
    """``"mcs5"`` or ``"qpsk-1/2"`` -> (information bits k per codeword, CRC included; coded bits n; bits per
    complex symbol)."""
    text = str(mcs).strip().lower()
    index = re.fullmatch(r"mcs(\d+)", text)
    if index and int(index[1]) < len(MCS_TABLE):
        bits, rate = MCS_TABLE[int(index[1])]
        return math.floor(CODEWORD_BITS * rate / 1024), CODEWORD_BITS, bits
    match = re.fullmatch(r"([0-9a-z]+)-(\d/\d)", text)
    if not match or match[1] not in MODULATIONS or match[2] not in RATES:
        raise ValueError(
            f"unknown code/modulation {mcs!r}; choose {ADAPTIVE}, mcs0..mcs{len(MCS_TABLE) - 1} "
            f"or one of {', '.join(mcs_names()[len(MCS_TABLE) :])}"
        )
    num, den = RATES[match[2]]
    return CODEWORD_BITS * num // den, CODEWORD_BITS, MODULATIONS[match[1]]


def check_mcs(mcs: str) -> None:
    if mcs != ADAPTIVE:
        parse_mcs(mcs)


def capacity(psnr_db: float, gain: float = 1.0) -> float:
    """Shannon capacity of the real AWGN channel at this PSNR, bits per real channel use (average power 1),
    with the amplitude ``gain`` |h| of a known flat fade."""
    return 0.5 * math.log2(1 + (gain / noise_sigma(float(psnr_db))) ** 2)


def rayleigh_gain(generator: torch.Generator) -> complex:
    """One flat Rayleigh fade h ~ CN(0, 1), drawn as :class:`qgesco.channel.Rayleigh` draws an image's fade
    (first from the generator), so that |h| equals the analog map's fade from an equally seeded generator."""
    re_im = torch.randn(1, 1, 2, generator=generator).reshape(2).double() / math.sqrt(2)
    return complex(float(re_im[0]), float(re_im[1]))


def check_channel(channel: str) -> None:
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; choose one of {', '.join(CHANNELS)}")


@dataclass
class Delivery:
    """What the receiver got: the decoded bytes (every codeword's, so with the sender's zero padding: the
    receiver is not told the payload's length), whether every codeword decoded, and how many failed."""

    data: bytes
    ok: bool
    codeword_errors: int
    codewords: int


@dataclass
class DigitalLink:
    """One fixed modulation and coding scheme; counts channel uses and carries payloads over AWGN or Rayleigh,
    decoding every codeword (``mode="ldpc"``) or drawing its fate from the cached BLER curves (``"table"``)."""

    mcs: str = "mcs5"
    channel: str = "awgn"
    mode: str = "ldpc"
    k: int = field(init=False)
    n: int = field(init=False)
    bits_per_symbol: int = field(init=False)

    def __post_init__(self):
        self.k, self.n, self.bits_per_symbol = parse_mcs(self.mcs)
        check_channel(self.channel)
        if self.mode not in LINK_MODES:
            raise ValueError(f"unknown link mode {self.mode!r}; choose one of {', '.join(LINK_MODES)}")
        self._parts = None

    @property
    def payload_bits(self) -> int:
        """Payload bits per codeword: its information bits less the CRC."""
        return self.k - CRC_BITS

    @property
    def uses_per_codeword(self) -> int:
        return 2 * self.n // self.bits_per_symbol

    def codewords(self, num_bits: int) -> int:
        return max(1, math.ceil(num_bits / self.payload_bits))

    def channel_uses(self, num_bits: int) -> int:
        """Real channel uses to carry ``num_bits`` (whole codewords, the last one zero-padded)."""
        return self.codewords(num_bits) * self.uses_per_codeword

    def max_bits(self, uses: int) -> int:
        """The most payload bits that fit in ``uses`` real channel uses."""
        return (uses // self.uses_per_codeword) * self.payload_bits

    def _sionna(self):
        if self._parts is None:
            try:
                from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
                from sionna.phy.mapping import Demapper, Mapper
            except ImportError:
                raise RuntimeError(
                    "the digital schemes need Sionna: pip install 'qgesco[semcom]' (or pip install sionna-no-rt)"
                ) from None
            encoder = LDPC5GEncoder(self.k, min(self.n, math.ceil(self.k / _MOTHER_RATE)))
            self._parts = (
                encoder,
                LDPC5GDecoder(encoder, hard_out=True, num_iter=_DECODER_ITERATIONS),
                Mapper("qam", self.bits_per_symbol),
                Demapper("app", "qam", self.bits_per_symbol),
            )
        return self._parts

    def _info(self, payload: bytes) -> torch.Tensor:
        """(codewords, k) information bits: the payload, zero-padded, then each codeword's CRC (zeros stand in)."""
        bits = np.unpackbits(np.frombuffer(payload, np.uint8))
        blocks = self.codewords(len(bits))
        padded = np.zeros(blocks * self.payload_bits, np.float32)
        padded[: len(bits)] = bits
        info = torch.zeros(blocks, self.k)
        info[:, : self.payload_bits] = torch.from_numpy(padded.reshape(blocks, -1))
        return info

    def _scrambling(self, codewords: int) -> torch.Tensor:
        """The bits XORed onto the coded bits before mapping, as 5G scrambles them (TS 38.211 7.3.1.1, here a
        fixed pseudo-random sequence both ends know): without it a payload's zero padding and CRC would
        favour some constellation points and the average power would drift from 1."""
        g = torch.Generator().manual_seed(0x5C4A)
        return torch.randint(0, 2, (codewords, self.n), generator=g).float()

    def _modulate(self, info: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Complex symbols (unit average energy: 1/2 per real use) and each coded bit's mother-code position:
        below the mother code's rate 1/5 a codeword repeats its bits cyclically (5G's circular buffer)."""
        encoder, _, mapper, _ = self._sionna()
        mother = encoder(info)
        where = torch.arange(self.n) % mother.shape[1]
        return mapper((mother[:, where] + self._scrambling(info.shape[0])) % 2), where

    @torch.no_grad()
    def real_symbols(self, payload: bytes) -> torch.Tensor:
        """What is sent per real channel use, in the units where the noise per real use has sigma (the
        real and imaginary parts of each symbol times sqrt 2): average power 1."""
        symbols, _ = self._modulate(self._info(payload))
        return torch.view_as_real(symbols).flatten() * math.sqrt(2)

    @torch.no_grad()
    def send(self, payload: bytes, psnr_db: float, generator: torch.Generator) -> Delivery:
        """``payload`` through code, modulation and the channel at ``psnr_db``; the fade (Rayleigh) and then
        the noise (or, with ``mode="table"``, each codeword's fate) come from ``generator`` only."""
        h = rayleigh_gain(generator) if self.channel == "rayleigh" else 1.0
        info = self._info(payload)
        if self.mode == "table":
            lost = torch.rand(info.shape[0], generator=generator, dtype=torch.float64) < bler(
                self.mcs, float(psnr_db) + 20 * math.log10(abs(h))
            )
            decoded = info.clone()
            decoded[lost, : self.payload_bits] = 1 - decoded[lost, : self.payload_bits]
        else:
            decoded = self._decode(info, h, noise_sigma(float(psnr_db)), generator)
        errors = int((decoded != info).any(1).sum())
        data = np.packbits(decoded[:, : self.payload_bits].reshape(-1).round().to(torch.uint8).numpy()).tobytes()
        return Delivery(data, errors == 0, errors, info.shape[0])

    def _decode(self, info: torch.Tensor, h: complex, sigma: float, generator: torch.Generator) -> torch.Tensor:
        _, decoder, _, demapper = self._sionna()
        symbols, where = self._modulate(info)
        noise = torch.randn((*symbols.shape, 2), generator=generator) * sigma / math.sqrt(2)
        received = h * symbols + torch.complex(noise[..., 0], noise[..., 1])
        # equalised by the known fade: noise variance sigma^2 / |h|^2 per complex symbol (1/sqrt(2) above)
        n0 = torch.tensor(sigma**2 / abs(h) ** 2, dtype=torch.float32)
        llr = demapper(received / torch.tensor(h, dtype=torch.complex64), n0)
        llr = llr * (1 - 2 * self._scrambling(info.shape[0]))  # descrambled: a flipped bit's LLR changes sign
        # the receiver adds the LLRs of each repeated bit's copies, which is exact for repetition
        return decoder(torch.zeros(llr.shape[0], int(where.max()) + 1).index_add_(1, where, llr))

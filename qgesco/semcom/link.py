"""The digital link: bytes -> 5G NR LDPC -> QAM -> AWGN or Rayleigh -> soft demapping -> LDPC decoding -> bytes.

Why Sionna (``sionna-no-rt`` 2.2, the ray-tracing-free build of NVIDIA's Sionna): since 2.0 it is
PyTorch (torch >= 2.9; no TensorFlow), a 690 kB wheel plus h5py (~17 MB), with the standard 5G NR
LDPC code (both base graphs, rate matching, layered belief propagation) and Gray-mapped QAM with
exact soft demapping. On this project's 2-core CPU, 64 codewords of n = 1024 encode, map, demap
and decode (20 iterations) in ~0.35 s on an idle machine; its many small tensor ops make it suffer
from thread contention (on a loaded machine one torch thread was 10x faster than two). It draws no
random numbers itself, so with the noise drawn here from the caller's seeded generator a run is
bit-for-bit repeatable. The alternatives were
worse: ``pyldpc`` 0.7.9 (random Gallager codes, not a standard; a numpy-only decoder; an sdist whose
build imports numpy) and ``scikit-commpy`` 0.8.0 (802.11n LDPC tables but a slow pure-numpy
decoder and little maintenance). Sionna is imported only when a digital link is made: it costs ~4 s.

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

#: Codeword length in bits: divisible by 2 and 4 (QPSK, 16-QAM) and by 3 and 4 (rates 1/3, 3/4).
CODEWORD_BITS = 1200
RATES = {"1/3": (1, 3), "1/2": (1, 2), "2/3": (2, 3), "3/4": (3, 4)}
MODULATIONS = {"qpsk": 2, "16qam": 4}
CHANNELS = ("awgn", "rayleigh")
#: The code and modulation a comparison uses unless told otherwise: a robust, common 5G MCS.
DEFAULT_MCS = "qpsk-1/2"
_DECODER_ITERATIONS = 20


def mcs_names() -> list[str]:
    return [f"{m}-{r}" for m in MODULATIONS for r in RATES]


def parse_mcs(mcs: str) -> tuple[int, int, int]:
    """``"qpsk-1/2"`` -> (information bits k, codeword bits n, bits per complex symbol)."""
    match = re.fullmatch(r"([0-9a-z]+)-(\d/\d)", str(mcs).strip().lower())
    if not match or match[1] not in MODULATIONS or match[2] not in RATES:
        raise ValueError(f"unknown code/modulation {mcs!r}; choose one of {', '.join(mcs_names())}")
    num, den = RATES[match[2]]
    return CODEWORD_BITS * num // den, CODEWORD_BITS, MODULATIONS[match[1]]


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
    """One modulation and coding scheme; counts channel uses and carries payloads over AWGN or Rayleigh."""

    mcs: str = DEFAULT_MCS
    channel: str = "awgn"
    k: int = field(init=False)
    n: int = field(init=False)
    bits_per_symbol: int = field(init=False)

    def __post_init__(self):
        self.k, self.n, self.bits_per_symbol = parse_mcs(self.mcs)
        check_channel(self.channel)
        self._parts = None

    @property
    def uses_per_codeword(self) -> int:
        return 2 * self.n // self.bits_per_symbol

    def codewords(self, num_bits: int) -> int:
        return max(1, math.ceil(num_bits / self.k))

    def channel_uses(self, num_bits: int) -> int:
        """Real channel uses to carry ``num_bits`` (whole codewords, the last one zero-padded)."""
        return self.codewords(num_bits) * self.uses_per_codeword

    def max_bits(self, uses: int) -> int:
        """The most payload bits that fit in ``uses`` real channel uses."""
        return (uses // self.uses_per_codeword) * self.k

    def _sionna(self):
        if self._parts is None:
            try:
                from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
                from sionna.phy.mapping import Demapper, Mapper
            except ImportError:
                raise RuntimeError(
                    "the digital schemes need Sionna: pip install 'qgesco[semcom]' (or pip install sionna-no-rt)"
                ) from None
            encoder = LDPC5GEncoder(self.k, self.n)
            self._parts = (
                encoder,
                LDPC5GDecoder(encoder, hard_out=True, num_iter=_DECODER_ITERATIONS),
                Mapper("qam", self.bits_per_symbol),
                Demapper("app", "qam", self.bits_per_symbol),
            )
        return self._parts

    @torch.no_grad()
    def send(self, payload: bytes, psnr_db: float, generator: torch.Generator) -> Delivery:
        """``payload`` through code, modulation and the channel at ``psnr_db``; the fade (Rayleigh) and then
        the noise come from ``generator`` only."""
        h = rayleigh_gain(generator) if self.channel == "rayleigh" else 1.0
        encoder, decoder, mapper, demapper = self._sionna()
        bits = np.unpackbits(np.frombuffer(payload, np.uint8))
        blocks = self.codewords(len(bits))
        sent = np.zeros(blocks * self.k, np.float32)
        sent[: len(bits)] = bits
        info = torch.from_numpy(sent.reshape(blocks, self.k))
        symbols = mapper(encoder(info))  # unit average energy per complex symbol: 1/2 per real use
        sigma = noise_sigma(float(psnr_db))
        noise = torch.randn((*symbols.shape, 2), generator=generator) * sigma / math.sqrt(2)
        received = h * symbols + torch.complex(noise[..., 0], noise[..., 1])
        # equalised by the known fade: noise variance sigma^2 / |h|^2 per complex symbol (1/sqrt(2) above)
        n0 = torch.tensor(sigma**2 / abs(h) ** 2, dtype=torch.float32)
        decoded = decoder(demapper(received / torch.tensor(h, dtype=torch.complex64), n0))
        errors = int((decoded != info).any(1).sum())
        data = np.packbits(decoded.reshape(-1).round().to(torch.uint8).numpy()).tobytes()
        return Delivery(data, errors == 0, errors, blocks)

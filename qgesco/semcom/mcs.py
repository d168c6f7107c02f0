"""Link adaptation: the 5G NR MCS table's measured block-error curves and the sender's choice of MCS.

The curves (:mod:`~qgesco.semcom.bler`) were measured once with this project's own link by
``bench/semcom_bler.py``, which regenerates them.

The rule, the CQI definition of 3GPP TS 38.214 (5.2.2.1): the highest-rate MCS whose transport-block error
rate, 1 - (1 - BLER)^C for the C codewords that fill the budget, is at most ``target`` (10 %) at the SNR the
sender knows; the lowest MCS when none is. Why this and not "maximise expected quality": it needs no
quality model of the source, is what a 5G sender does, and on these steep curves the next-lower MCS is
~1 dB more robust, so the chosen MCS's measured loss is far below the target (docs/semcom.md gives the
rates). A higher MCS index is a higher spectral efficiency, and every curve falls with SNR, so the choice
rises monotonically with SNR.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .bler import DEFAULT_TARGET, TABLE_PATH, bler, table
from .link import MCS_TABLE, DigitalLink

__all__ = ["DEFAULT_TARGET", "TABLE_PATH", "bler", "block_error", "choose", "shannon_snr", "table"]


def block_error(mcs: str, snr_db: float, codewords: int) -> float:
    """Probability that at least one of ``codewords`` codewords fails: the whole payload is lost."""
    return 1.0 - (1.0 - bler(mcs, snr_db)) ** codewords


#: |h|^2 at evenly spaced quantiles of Rayleigh fading (exponential, mean 1): the fading average's nodes.
_FADE_NODES = -np.log1p(-(np.arange(200) + 0.5) / 200)


@functools.lru_cache(maxsize=4096)
def choose(snr_db: float, budget_uses: int, target: float = DEFAULT_TARGET, fading: bool = False) -> str:
    """The MCS the sender uses at ``snr_db`` for a budget of real channel uses (the rule above). With
    ``fading`` the sender knows only the average SNR of a quasi-static Rayleigh channel: the error rate is
    averaged over the fade's distribution, so the target becomes an outage probability."""
    best = "mcs0"
    for i in range(len(MCS_TABLE)):
        name = f"mcs{i}"
        codewords = max(1, budget_uses // DigitalLink(name).uses_per_codeword)
        snrs = snr_db + 10 * np.log10(_FADE_NODES) if fading else np.array([snr_db])
        t = table()
        errors = 1 - (1 - np.interp(snrs, t["snr_db"], t["bler"][name], left=1.0, right=0.0)) ** codewords
        if errors.mean() <= target:
            best = name
    return best


def shannon_snr(mcs: str) -> float:
    """The SNR (dB) at which the real AWGN channel's capacity equals the MCS's payload bits per real use."""
    link = DigitalLink(mcs)
    return 10 * math.log10(2 ** (2 * link.payload_bits / link.uses_per_codeword) - 1)

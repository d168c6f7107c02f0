"""Link adaptation: the 5G NR MCS table's measured block-error curves and the sender's choice of MCS.

The curves (codeword error rate over AWGN against SNR, per MCS of
:data:`~qgesco.semcom.link.MCS_TABLE`, 1200-bit codewords, 20 decoder iterations) were measured once with
this project's own link (:class:`~qgesco.semcom.link.DigitalLink`) by ``bench/semcom_bler.py`` and ship as
``qgesco/assets/semcom_bler_awgn.json``; that script regenerates the file. They are made non-increasing in
SNR (a measured bump is sampling noise) and interpolated linearly between their 0.5 dB points.

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
import json
import math
from pathlib import Path

import numpy as np

from .link import MCS_TABLE, DigitalLink

TABLE_PATH = Path(__file__).resolve().parent.parent / "assets" / "semcom_bler_awgn.json"
#: The transport-block error rate a chosen MCS may have at the sender's SNR (5G's CQI target).
DEFAULT_TARGET = 0.1


@functools.lru_cache(maxsize=1)
def table() -> dict:
    """The cached curves: ``snr_db`` (a grid) and ``bler`` {mcs name: non-increasing values on it}."""
    if not TABLE_PATH.is_file():
        raise RuntimeError(f"{TABLE_PATH} is missing; regenerate it with `python bench/semcom_bler.py`")
    data = json.loads(TABLE_PATH.read_text())
    data["bler"] = {m: np.minimum.accumulate(np.asarray(v, float)) for m, v in data["bler"].items()}
    data["snr_db"] = np.asarray(data["snr_db"], float)
    return data


def bler(mcs: str, snr_db: float) -> float:
    """Codeword error rate of ``mcs`` at ``snr_db`` over AWGN (1 below the measured range, 0 above)."""
    t = table()
    if mcs not in t["bler"]:
        raise ValueError(f"no cached BLER curve for {mcs!r}; the table holds mcs0..mcs{len(MCS_TABLE) - 1}")
    return float(np.interp(snr_db, t["snr_db"], t["bler"][mcs], left=1.0, right=0.0))


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

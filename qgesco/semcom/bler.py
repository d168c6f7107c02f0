"""The cached block-error curves of the 5G NR MCS table over AWGN.

Codeword error rate against SNR per MCS of :data:`~qgesco.semcom.link.MCS_TABLE` (1200-bit codewords,
CRC-24 counted, 20 decoder iterations), measured once with this project's own link
(:class:`~qgesco.semcom.link.DigitalLink`) by ``bench/semcom_bler.py`` and shipped as
``qgesco/assets/semcom_bler_awgn.json``; that script regenerates the file. The curves are made
non-increasing in SNR (a measured bump is sampling noise) and interpolated linearly between their 0.5 dB
points. Its own module so that the link's ``table`` mode and the MCS choice both read it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

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
        raise ValueError(f"no cached BLER curve for {mcs!r}; the table holds mcs0..mcs{len(t['bler']) - 1}")
    return float(np.interp(snr_db, t["snr_db"], t["bler"][mcs], left=1.0, right=0.0))

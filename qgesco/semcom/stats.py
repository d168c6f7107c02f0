"""Statistics of a comparison: bootstrap confidence intervals, paired differences, and Rayleigh fading's
expected quality from the AWGN grid.

- **Bootstrap over images.** Every cell (scheme, budget, SNR) holds one score per image; its 95 % interval
  is the 2.5-97.5 percentile of the statistic over resamples of the images (``resamples`` of them, the same
  resamples for every cell, drawn from a seeded generator). Means (LPIPS, PSNR, MS-SSIM) resample the
  per-image values; mIoU resamples per-image confusion matrices and recomputes mIoU from their sum, as the
  dataset-level mIoU is defined. A resample is a weight (count) per image, so a statistic of it is one
  matrix product.
- **Paired differences.** The same resamples weigh two cells' images together: an image's two schemes saw
  the same channel draw and were regenerated from the same x_T and sampler noise (common random numbers),
  so their difference has far less spread than either score. A difference is significant when its
  interval excludes 0.
- **Rayleigh from AWGN.** Quasi-static fading with the receiver knowing h and the sender only the average
  SNR: a fade |h|^2 turns SNR p into the effective SNR p + 10 log10 |h|^2 for the whole image. The analog
  map and the ideal bounds (which know the fade) then score as on AWGN at that SNR: their per-image scores
  are interpolated linearly in dB between the grid's SNRs (clamped at its ends; the fraction of fades below
  the grid is reported). A digital payload, its MCS chosen for the average SNR against the fading-averaged
  error rate (:func:`~qgesco.semcom.mcs.choose` with ``fading``), arrives whole with probability
  (1 - BLER(eff))^C for its C codewords (the cached curves, :mod:`~qgesco.semcom.mcs`) and is lost
  otherwise (outage): its expected score mixes the delivered content's score and the lost image's. Written
  here (not drawn per fade) because 200 fades x SNRs x images of direct simulation is ~100 times the
  regenerations; it is checked against direct simulation on a subset (docs/semcom.md).
"""

from __future__ import annotations

import math

import numpy as np

from ..runcore import psnr_key, seed_sequence
from .bler import bler

RESAMPLES = 1000
LEVEL = 0.95
FADES = 200
MEANS = ("lpips", "psnr", "ms_ssim")


def miou(confusion: np.ndarray) -> np.ndarray:
    """mIoU of confusion matrices (..., C, C) over the classes that occur, as ConfusionMatrix.miou."""
    tp = np.diagonal(confusion, axis1=-2, axis2=-1).astype(np.float64)
    union = confusion.sum(-1) + confusion.sum(-2) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmean(np.where(union > 0, tp / union, np.nan), -1)


class Bootstrap:
    """Shared resamples of ``n`` images: ``weights`` (resamples, n) counts of each image."""

    def __init__(self, n: int, resamples: int = RESAMPLES, seed: int = 0):
        draws = np.random.default_rng(seed).integers(0, n, (resamples, n))
        self.n = n
        self.weights = np.stack([np.bincount(d, minlength=n) for d in draws]).astype(np.float64)

    def _interval(self, point: float, samples: np.ndarray) -> dict[str, float]:
        lo, hi = np.nanpercentile(samples, [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
        return {"value": float(point), "lo": float(lo), "hi": float(hi)}

    def mean(self, values: np.ndarray) -> dict[str, float]:
        values = np.asarray(values, np.float64)
        return self._interval(values.mean(), self.weights @ values / self.n)

    def miou(self, confusions: np.ndarray) -> dict[str, float]:
        flat = confusions.reshape(self.n, -1).astype(np.float64)
        c = confusions.shape[-1]
        return self._interval(miou(flat.sum(0).reshape(c, c)), miou((self.weights @ flat).reshape(-1, c, c)))

    def mean_difference(self, a: np.ndarray, b: np.ndarray) -> dict[str, float]:
        return self.mean(np.asarray(a, np.float64) - np.asarray(b, np.float64))

    def miou_difference(self, a: np.ndarray, b: np.ndarray) -> dict[str, float]:
        c = a.shape[-1]
        fa, fb = a.reshape(self.n, -1).astype(np.float64), b.reshape(self.n, -1).astype(np.float64)
        point = miou(fa.sum(0).reshape(c, c)) - miou(fb.sum(0).reshape(c, c))
        samples = miou((self.weights @ fa).reshape(-1, c, c)) - miou((self.weights @ fb).reshape(-1, c, c))
        return self._interval(point, samples)

    def cell(self, scores: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
        """Every metric of one cell: per-image arrays of :data:`MEANS` and ``confusion`` (n, C, C)."""
        out = {k: self.mean(scores[k]) for k in MEANS}
        out["miou"] = self.miou(scores["confusion"])
        return out

    def difference(self, a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
        """a - b for every metric, paired by image."""
        out = {k: self.mean_difference(a[k], b[k]) for k in MEANS}
        out["miou"] = self.miou_difference(a["confusion"], b["confusion"])
        return out


def significant(diff: dict[str, float]) -> bool:
    return diff["lo"] > 0 or diff["hi"] < 0


def fades(seed: int, index: int, snr_db: float, count: int = FADES) -> np.ndarray:
    """|h|^2 of ``count`` Rayleigh fades h ~ CN(0, 1) for one image and SNR (exponential with mean 1)."""
    entropy = seed_sequence(seed, index, psnr_key(snr_db) & 0xFFFFFFFF)  # the level's low 32 bits, as ever
    return np.random.default_rng(entropy).exponential(1.0, count)


def interpolation_weights(grid: list[float], snr_db: np.ndarray) -> np.ndarray:
    """(len(snr_db), len(grid)) weights of linear interpolation in dB on ``grid`` (ascending), clamped."""
    grid_arr = np.asarray(grid, np.float64)
    x = np.clip(np.asarray(snr_db, np.float64), grid_arr[0], grid_arr[-1])
    upper = np.clip(np.searchsorted(grid_arr, x, side="right"), 1, len(grid_arr) - 1)
    lower = upper - 1
    span = grid_arr[upper] - grid_arr[lower]
    frac = np.where(span > 0, (x - grid_arr[lower]) / np.where(span > 0, span, 1), 0.0)
    w = np.zeros((len(x), len(grid_arr)))
    np.add.at(w, (np.arange(len(x)), lower), 1 - frac)
    np.add.at(w, (np.arange(len(x)), upper), frac)
    return w


def effective_snr(snr_db: float, gains: np.ndarray) -> np.ndarray:
    return snr_db + 10 * np.log10(np.maximum(gains, 1e-30))


def delivery_probability(mcs: str, eff_snr: np.ndarray, codewords: int) -> np.ndarray:
    return np.array([(1.0 - bler(mcs, float(e))) ** codewords for e in eff_snr])


def mix(weights: np.ndarray, scores: list[dict[str, np.ndarray | float]]) -> dict[str, np.ndarray | float]:
    """The expected per-image score of a mixture: sum_j weights[j] * scores[j] (confusions mixed as counts)."""
    keys = (*MEANS, "confusion")
    return {k: sum(w * np.asarray(s[k], np.float64) for w, s in zip(weights, scores) if w) for k in keys}


def below_grid(grid: list[float], eff: np.ndarray) -> float:
    return float(np.mean(eff < min(grid))) if len(eff) else math.nan

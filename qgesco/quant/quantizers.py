"""The numerical pieces of post-training quantization: the uniform affine grid, the search
for the clipping range, AdaRound's learnable rounding and the LSQ activation quantizer.

Every quantized value lives on the signed grid ``[-2^(b-1), 2^(b-1) - 1]`` and dequantizes
as ``scale * (q - zero_point)``; symmetric quantizers have ``zero_point = 0``. One grid for
both modes means one integer dtype in the checkpoint (int8) and one formula in the runtime.

We implement AdaRound and block reconstruction ourselves: no maintained package offers
BRECQ-style reconstruction for this SPADE-conditioned UNet on CPU (``torch.ao`` has
observers and fbgemm kernels but no learned rounding; AIMET's AdaRound works layer by layer
on its own graph representation; the BRECQ / Q-Diffusion research code is unmaintained and
bound to its own model classes).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

#: Bit widths a quantizer supports: int8 storage holds at most 8, below 2 there is no grid.
SUPPORTED_BITS = range(2, 9)
#: Clipping ratios of the range search: a coarse pass over 100 % .. 20 % of the min-max range,
#: then a fine pass around each row's best (25 error evaluations instead of 81 for a 0.01 grid).
COARSE_RATIOS = [1.0 - 0.05 * i for i in range(17)]
FINE_OFFSETS = [0.01 * i for i in range(-4, 5) if i]
#: Smallest scale: a constant (e.g. all-zero) channel gets this instead of a division by zero.
MIN_SCALE = 1e-8
#: Elements of an activation used to score clipping candidates (min/max use all of it).
SEARCH_SAMPLE = 1 << 18


def check_bits(what: str, bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in SUPPORTED_BITS:
        raise ValueError(
            f"{what}={bits!r} is not supported: choose an integer from {SUPPORTED_BITS.start} to "
            f"{SUPPORTED_BITS.stop - 1} (8 = int8, 4 = two values per byte)"
        )
    return bits


def int_range(bits: int) -> tuple[int, int]:
    """``(qmin, qmax)`` of the signed ``bits``-bit grid."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity in the backward pass (straight-through estimator)."""
    return x + (x.round() - x).detach()


def scale_zero_point(
    lo: torch.Tensor, hi: torch.Tensor, bits: int, symmetric: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and (integer-valued, float) zero point that map ``[lo, hi]`` onto the grid.

    The asymmetric range is widened to contain 0 so that 0 is exactly representable:
    zero padding of a convolution then means the same thing before and after quantization.
    """
    qmin, qmax = int_range(bits)
    if symmetric:
        scale = (torch.maximum(lo.abs(), hi.abs()) / qmax).clamp(min=MIN_SCALE)
        return scale, torch.zeros_like(scale)
    lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    scale = ((hi - lo) / (qmax - qmin)).clamp(min=MIN_SCALE)
    return scale, (qmin - lo / scale).round().clamp(qmin, qmax)


def quantize_int(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, bits: int) -> torch.Tensor:
    """Nearest-rounded integers of ``x`` on the grid (as floats), clipped to the grid."""
    qmin, qmax = int_range(bits)
    return (torch.round(x / scale) + zero_point).clamp(qmin, qmax)


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, bits: int) -> torch.Tensor:
    """Quantize-dequantize ``x``; differentiable in ``x`` (straight-through) and in ``scale`` (LSQ)."""
    qmin, qmax = int_range(bits)
    q = (round_ste(x / scale) + zero_point).clamp(qmin, qmax)
    return (q - zero_point) * scale


def _lp_error(
    x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, bits: int, symmetric: bool, p: float
) -> torch.Tensor:
    """``sum |x - q(x)|^p`` per row, in one buffer rather than a temporary per step (same values): it runs
    once per clipping ratio of every weight row when fitting a model."""
    scale, zero = scale_zero_point(lo, hi, bits, symmetric)
    s, z = scale[:, None], zero[:, None]
    qmin, qmax = int_range(bits)
    return torch.div(x, s).round_().add_(z).clamp_(qmin, qmax).sub_(z).mul_(s).sub_(x).abs_().pow_(p).sum(dim=1)


def search_range(
    x: torch.Tensor, bits: int, symmetric: bool, method: str = "lp", p: float = 2.4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipping range ``(lo, hi)`` per row of the 2-D ``x``.

    ``minmax`` takes each row's extremes; ``lp`` shrinks them by a ratio (coarse grid, then
    refined per row) and keeps, per row, the range whose error ``sum |x - q(x)|^p`` is
    smallest. p = 2.4 (BRECQ's choice) weighs large errors a bit more than MSE: clipping a
    few outliers pays when it halves the step for everything else, mostly at 4 bits and below.
    """
    if method not in ("lp", "minmax"):
        raise ValueError(f"unknown range method {method!r}; use 'lp' (clip search) or 'minmax'")
    x = x.detach().float()
    if symmetric:
        hi = x.abs().amax(dim=1)
        lo = -hi
    else:
        lo, hi = x.amin(dim=1), x.amax(dim=1)
    if method == "minmax":
        return lo, hi
    if x.shape[1] > SEARCH_SAMPLE:
        x = x[:, :: math.ceil(x.shape[1] / SEARCH_SAMPLE)]
    best, best_ratio = torch.full_like(lo, float("inf")), torch.ones_like(lo)

    def consider(ratio: torch.Tensor) -> None:
        nonlocal best, best_ratio
        err = _lp_error(x, lo * ratio, hi * ratio, bits, symmetric, p)
        better = err < best
        best, best_ratio = torch.where(better, err, best), torch.where(better, ratio, best_ratio)

    for ratio in COARSE_RATIOS:
        consider(torch.full_like(lo, ratio))
    center = best_ratio
    for offset in FINE_OFFSETS:
        consider((center + offset).clamp(0.01, 1.0))
    return lo * best_ratio, hi * best_ratio


class AdaRound(nn.Module):
    """Learnable choice between rounding down and up, per weight (Nagel et al., 2020).

    The offset added to ``floor(w / s)`` is a rectified sigmoid ``h(v)`` in [0, 1],
    initialised to the fractional part so that training starts from the float weights;
    the regulariser ``sum 1 - |2h - 1|^beta`` pushes every ``h`` to 0 or 1 as ``beta`` is
    annealed. :meth:`hard` is the final decision, ``v >= 0``, which equals nearest rounding
    before any training. ``lo`` and ``hi`` are the grid's ends relative to the zero point
    (``qmin - zp``, ``qmax - zp``); they and ``scale`` are fixed during training, so they are
    laid out once here rather than on every step.
    """

    ZETA, GAMMA = 1.1, -0.1

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor):
        super().__init__()
        w_over_scale = weight / scale
        floor = w_over_scale.floor()
        rest = (w_over_scale - floor).clamp(0.0, 1.0 - 1e-6)
        self.register_buffer("floor", floor)
        self.register_buffer("scale", scale)
        self.register_buffer("lo", lo.float())
        self.register_buffer("hi", hi.float())
        self.v = nn.Parameter(-torch.log((self.ZETA - self.GAMMA) / (rest - self.GAMMA) - 1))

    def soft(self) -> torch.Tensor:
        return (torch.sigmoid(self.v) * (self.ZETA - self.GAMMA) + self.GAMMA).clamp(0, 1)

    def hard(self) -> torch.Tensor:
        return (self.v >= 0).to(self.floor.dtype)

    def forward(self) -> torch.Tensor:
        """The soft-rounded weight, on the grid (clipped to its ends)."""
        return (self.floor + self.soft()).clamp(self.lo, self.hi) * self.scale

    def rounded(self) -> torch.Tensor:
        """The hard decisions as integer steps relative to the zero point."""
        return (self.floor + self.hard()).clamp(self.lo, self.hi)

    def regularizer(self, beta: float) -> torch.Tensor:
        return (1 - (2 * self.soft() - 1).abs().pow(beta)).sum()


class ActQuantizer(nn.Module):
    """Per-tensor activation quantizer with a learnable step size (LSQ, Esser et al., 2020).

    Its range is set from calibration activations by :meth:`observe` / :meth:`finish_observing`
    (the mean over batches of each batch's Lp-optimal range); ``scale`` may then be trained
    by block reconstruction, the zero point stays fixed. Disabled, it passes values through.
    """

    def __init__(self, bits: int):
        super().__init__()
        self.bits = check_bits("act_bits", bits)
        self.scale = nn.Parameter(torch.tensor(1.0), requires_grad=False)
        self.register_buffer("zero_point", torch.tensor(0, dtype=torch.int8))
        self.enabled = True
        self.observing = False
        self._ranges: list[tuple[torch.Tensor, torch.Tensor]] = []

    def observe(self) -> None:
        self.observing, self._ranges = True, []

    def finish_observing(self) -> None:
        """Set scale and zero point from what was observed (nothing observed: a usage error)."""
        if not self._ranges:
            raise RuntimeError("activation quantizer saw no data while observing; was its layer ever called?")
        lo = torch.stack([r[0] for r in self._ranges]).mean()
        hi = torch.stack([r[1] for r in self._ranges]).mean()
        scale, zero = scale_zero_point(lo, hi, self.bits, symmetric=False)
        self.scale.data.copy_(scale)
        self.zero_point.copy_(zero.to(torch.int8))
        self.observing, self._ranges, self.enabled = False, [], True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            lo, hi = search_range(x.reshape(1, -1), self.bits, symmetric=False)
            self._ranges.append((lo[0], hi[0]))
            return x
        if not self.enabled:
            return x
        return fake_quantize(x, self.scale, self.zero_point.float(), self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"

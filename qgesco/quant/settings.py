"""The quantization settings: what to quantize and how to reconstruct it, one :class:`QuantConfig`
checked once, when it is made."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..fileio import Settings
from .quantizers import check_bits

WEIGHT_INITS = ("lp", "minmax")
#: AdaRound iterations per block unless asked otherwise: 1/20 of the paper's, enough for W8 (docs/quantization.md).
DEFAULT_ITERS = 1000
#: What a quantized model's report records beside the plan's bits (and what a resumed run must match).
REPORTED = (
    "weight_init", "lp_norm", "split", "keep_fp", "quantize_attention", "iters", "batch_size", "lr", "act_lr",
    "learn_act_scale", "reg_weight", "beta", "warmup", "cache_mb", "seed",
)  # fmt: skip


@dataclass(frozen=True)
class QuantConfig(Settings):
    """Bits, symmetry, split, layers kept in float, attention and weight-range init of a quantized model,
    then the AdaRound / LSQ knobs (BRECQ's defaults except the CPU-sized batch)."""

    weight_bits: int = 8
    act_bits: int | None = None
    symmetric: bool = False
    split: bool = True
    keep_fp: tuple[str, ...] = ()
    quantize_attention: bool = False
    weight_init: str = "lp"
    lp_norm: float = 2.4
    iters: int = DEFAULT_ITERS
    batch_size: int = 8
    lr: float = 1e-3
    act_lr: float = 4e-5
    learn_act_scale: bool = True
    reg_weight: float = 0.01
    beta: tuple[float, float] = (20.0, 2.0)
    warmup: float = 0.2
    cache_mb: float = 1024.0
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.keep_fp, str):
            raise ValueError(
                f"keep_fp is a list of patterns, got the string {self.keep_fp!r}; write ({self.keep_fp!r},)"
            )
        object.__setattr__(self, "keep_fp", tuple(self.keep_fp))
        object.__setattr__(self, "beta", tuple(self.beta))
        check_bits("weight_bits", self.weight_bits)
        if self.act_bits is not None:
            check_bits("act_bits", self.act_bits)
        for name in ("iters", "batch_size", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "batch_size" else 0):
                raise ValueError(f"{name} must be an integer >= {1 if name == 'batch_size' else 0}, got {value!r}")
        if not (self.lr > 0 and self.act_lr > 0 and self.reg_weight >= 0 and self.cache_mb > 0):
            raise ValueError("lr, act_lr and cache_mb must be > 0 and reg_weight >= 0")
        if not 0 <= self.warmup < 1:
            raise ValueError(
                f"warmup is the fraction of iterations without the rounding regulariser, in [0, 1); got {self.warmup}"
            )
        if len(self.beta) != 2 or not self.beta[0] >= self.beta[1] > 0:
            raise ValueError(f"beta=(start, end) is annealed downwards: need start >= end > 0, got {self.beta}")
        if self.weight_init not in WEIGHT_INITS:
            raise ValueError(f"weight_init={self.weight_init!r}: use 'lp' (clipping search) or 'minmax'")
        if not self.lp_norm > 0:
            raise ValueError(f"lp_norm must be > 0, got {self.lp_norm}")

    def plan_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`qgesco.quant.swap.make_plan`."""
        return {
            "weight_bits": self.weight_bits,
            "act_bits": self.act_bits,
            "symmetric": self.symmetric,
            "split": self.split,
            "keep_fp": self.keep_fp,
            "quantize_attention": self.quantize_attention,
        }

    def report_options(self) -> dict[str, Any]:
        """The settings the quantization report records beside the plan's bits."""
        d = self.to_dict()
        return {k: d[k] for k in REPORTED}

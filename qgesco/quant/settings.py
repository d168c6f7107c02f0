"""The quantization settings: what to quantize (:class:`QuantConfig`) and how to reconstruct
it (:class:`ReconstructionSettings`), each checked once, when it is made."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .quantizers import check_bits

WEIGHT_INITS = ("lp", "minmax")


@dataclass(frozen=True)
class QuantConfig:
    """Bits, symmetry, split, layers kept in float, attention and weight-range init of a quantized model."""

    weight_bits: int = 8
    act_bits: int | None = None
    symmetric: bool = False
    split: bool = True
    keep_fp: tuple[str, ...] = ()
    quantize_attention: bool = False
    weight_init: str = "lp"
    lp_norm: float = 2.4

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep_fp", tuple(self.keep_fp))
        check_bits("weight_bits", self.weight_bits)
        if self.act_bits is not None:
            check_bits("act_bits", self.act_bits)

    def check_init(self) -> None:
        """The weight-range search settings (checked after the reconstruction settings, as before)."""
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
        return {
            "weight_init": self.weight_init,
            "lp_norm": self.lp_norm,
            "split": self.split,
            "keep_fp": list(self.keep_fp),
            "quantize_attention": self.quantize_attention,
        }


#: AdaRound iterations per block unless asked otherwise: 1/20 of the paper's, enough for W8 (docs/quantization.md).
DEFAULT_ITERS = 1000


@dataclass(frozen=True)
class ReconstructionSettings:
    """AdaRound / LSQ knobs; defaults follow BRECQ except the CPU-sized batch."""

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
        if not self.beta[0] >= self.beta[1] > 0:
            raise ValueError(f"beta=(start, end) is annealed downwards: need start >= end > 0, got {self.beta}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

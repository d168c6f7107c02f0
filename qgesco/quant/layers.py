"""Quantized stand-ins for the UNet's Conv1d / Conv2d / Linear layers and its attention.

A :class:`QuantLayer` holds what the checkpoint holds — int8 weights, per-output-channel
scales and zero points, the fp32 bias, activation quantizers — and computes in fp32 from
the dequantized weights ("fake quantization"): numerically what an integer kernel computes,
but runnable anywhere, so calibration and evaluation need no low-bit runtime.

A *split* layer takes ``cat(h, skip)`` in the decoder: the first ``split`` input channels
come from the decoder path, the rest from the encoder skip, with very different ranges
(Q-Diffusion's shortcut splitting). It gets one weight scale per output channel *per input
group* and one activation quantizer per group, as if the concatenation were quantized
before it happens.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.unet import QKVAttention
from .quantizers import ActQuantizer, AdaRound, check_bits, int_range, quantize_int, scale_zero_point, search_range

#: The float layers we swap, by the name the checkpoint metadata uses for their operation.
FLOAT_OPS: dict[type, str] = {nn.Linear: "linear", nn.Conv1d: "conv1d", nn.Conv2d: "conv2d"}


def float_op(op: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, conv: dict) -> torch.Tensor:
    """The float operation named ``op`` (a value of :data:`FLOAT_OPS`) of ``x``; ``conv``: a convolution's
    keyword arguments (stride, padding, ...), ignored by ``linear``."""
    if op == "linear":
        return F.linear(x, weight, bias)
    return (F.conv2d if op == "conv2d" else F.conv1d)(x, weight, bias, **conv)


class QuantLayer(nn.Module):
    """A Conv1d/Conv2d/Linear with integer weights (``scale * (qweight - zero_point)``).

    During calibration it also keeps the float weight (``float_weight``, never saved) and,
    while its block is reconstructed, an :class:`AdaRound` module whose soft rounding replaces
    ``qweight``; :meth:`harden` writes the learned rounding back into ``qweight``.
    """

    def __init__(
        self,
        op: str,
        weight_shape: tuple[int, ...],
        *,
        bias: bool,
        bits: int,
        symmetric: bool,
        split: int | None = None,
        act_bits: int | None = None,
        conv: dict | None = None,
    ):
        super().__init__()
        if op not in FLOAT_OPS.values():
            raise ValueError(f"unknown layer op {op!r}; expected one of {sorted(FLOAT_OPS.values())}")
        out_ch, in_ch = weight_shape[:2]
        if split is not None and not 0 < split < in_ch:
            raise ValueError(f"split={split} must lie strictly inside the {in_ch} input channels")
        self.op, self.conv = op, dict(conv or {})
        self.bits, self.symmetric, self.split = check_bits("weight_bits", bits), bool(symmetric), split
        scale_shape = (out_ch,) if split is None else (2, out_ch)
        self.register_buffer("qweight", torch.zeros(weight_shape, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(scale_shape))
        self.register_buffer("zero_point", torch.zeros(scale_shape, dtype=torch.int8))
        self.bias = nn.Parameter(torch.zeros(out_ch), requires_grad=False) if bias else None
        groups = len(self.input_groups())
        self.input_quant = nn.ModuleList(ActQuantizer(act_bits) for _ in range(groups)) if act_bits else None
        self.rounding: AdaRound | None = None
        self.register_buffer("float_weight", None, persistent=False)

    @classmethod
    def like(
        cls, layer: nn.Module, *, bits: int, symmetric: bool, split: int | None = None, act_bits: int | None = None
    ) -> QuantLayer:
        """An empty quantized layer with ``layer``'s shape and convolution settings."""
        op = FLOAT_OPS[type(layer)]
        conv = {}
        if op != "linear":
            if layer.padding_mode != "zeros":
                raise ValueError(
                    f"cannot quantize a convolution with padding_mode={layer.padding_mode!r}; only 'zeros'"
                )
            conv = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
        return cls(
            op,
            tuple(layer.weight.shape),
            bias=layer.bias is not None,
            bits=bits,
            symmetric=symmetric,
            split=split,
            act_bits=act_bits,
            conv=conv,
        ).to(layer.weight.device)

    @classmethod
    def from_float(
        cls,
        layer: nn.Module,
        *,
        bits: int,
        symmetric: bool,
        split: int | None = None,
        act_bits: int | None = None,
        method: str = "lp",
        p: float = 2.4,
    ) -> QuantLayer:
        """``layer`` quantized with nearest rounding, its float weight kept for AdaRound."""
        q = cls.like(layer, bits=bits, symmetric=symmetric, split=split, act_bits=act_bits)
        w = layer.weight.detach().float()
        q.float_weight = w.clone()
        if layer.bias is not None:
            q.bias.data.copy_(layer.bias.detach().float())
        ranges = [
            search_range(w[:, a:b].reshape(w.shape[0], -1), bits, symmetric, method, p) for a, b in q.input_groups()
        ]
        scale, zero = zip(*(scale_zero_point(lo, hi, bits, symmetric) for lo, hi in ranges))
        q.scale.copy_(torch.stack(scale).reshape(q.scale.shape))
        q.zero_point.copy_(torch.stack(zero).reshape(q.zero_point.shape).to(torch.int8))
        q.qweight.copy_(quantize_int(w, q.per_weight(q.scale), q.per_weight(q.zero_point), bits).to(torch.int8))
        return q

    def input_groups(self) -> list[tuple[int, int]]:
        """``(start, stop)`` input-channel ranges that have their own scales: one, or two if split."""
        in_ch = self.qweight.shape[1]
        return [(0, in_ch)] if self.split is None else [(0, self.split), (self.split, in_ch)]

    def per_weight(self, t: torch.Tensor) -> torch.Tensor:
        """A per-(group, output channel) tensor laid out to broadcast against the weight."""
        out_ch, tail = self.qweight.shape[0], [1] * (self.qweight.dim() - 2)
        t = t.float().reshape(-1, out_ch)
        parts = [
            t[g].reshape(out_ch, 1, *tail).expand(out_ch, b - a, *tail) for g, (a, b) in enumerate(self.input_groups())
        ]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    @property
    def weight(self) -> torch.Tensor:
        """The weight this layer computes with: dequantized, or soft-rounded while AdaRound trains."""
        if self.rounding is not None:
            return self.rounding()
        return (self.qweight.float() - self.per_weight(self.zero_point)) * self.per_weight(self.scale)

    def start_adaround(self) -> None:
        if self.float_weight is None:
            raise RuntimeError("AdaRound needs the float weight; this layer was already finished")
        qmin, qmax = int_range(self.bits)
        zero = self.per_weight(self.zero_point)
        self.rounding = AdaRound(self.float_weight, self.per_weight(self.scale), qmin - zero, qmax - zero)

    def harden(self) -> None:
        """Write AdaRound's hard decisions into ``qweight`` and drop the soft variables."""
        self.qweight.copy_((self.rounding.rounded() + self.per_weight(self.zero_point)).to(torch.int8))
        self.rounding = None

    def finish(self) -> None:
        """Drop the float weight: from now on only the integer weights exist."""
        self.float_weight = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_quant is not None:
            parts = [quant(x[:, a:b]) for quant, (a, b) in zip(self.input_quant, self.input_groups())]
            x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return float_op(self.op, x, self.weight, self.bias, self.conv)

    def extra_repr(self) -> str:
        split = f", split={self.split}" if self.split is not None else ""
        return f"{self.op}, {tuple(self.qweight.shape)}, bits={self.bits}, symmetric={self.symmetric}{split}"


class QuantQKVAttention(QKVAttention):
    """Attention with quantized matmul inputs (q, k, v) and softmax output.

    The matmuls are written out (instead of ``scaled_dot_product_attention``) because the
    quantizers sit between them; the float result is the same.
    """

    def __init__(self, num_heads: int, legacy: bool, act_bits: int):
        super().__init__(num_heads, legacy)
        self.q_quant, self.k_quant, self.v_quant, self.probs_quant = (ActQuantizer(act_bits) for _ in range(4))

    @classmethod
    def like(cls, attention: QKVAttention, act_bits: int) -> QuantQKVAttention:
        return cls(attention.num_heads, attention.legacy, act_bits)

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        b, _, length = qkv.shape
        q, k, v = self.split(qkv)
        q, k, v = self.q_quant(q), self.k_quant(k), self.v_quant(v)
        probs = torch.softmax((q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5, dim=-1)
        a = self.probs_quant(probs) @ v
        return a.transpose(-1, -2).reshape(b, -1, length)

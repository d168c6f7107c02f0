"""8-bit files on CPU: the checkpoint's integers run through oneDNN's int8 convolution and matmul kernels.

Each :class:`~qgesco.quant.QuantLayer` becomes an :class:`Int8Layer`. With activation quantizers
(W8A8) its input is rounded onto the checkpoint's activation grid as uint8 (``q + 128``); without
(a W8 file) onto a per-tensor grid found at run time from the input's min and max (*dynamic*
quantization, torchao's ``int8_dynamic_activation_int8_weight``), which costs one ``aminmax`` per
call and an activation rounding error the file does not describe (docs/runtime.md bounds it). It is multiplied
with the int8 weights in int32 by ``torch.ops.onednn.qconv_pointwise`` / ``qlinear_pointwise``,
and written out as fp32 with the per-channel scale ``s_x * s_w`` and the bias. Nothing is
requantized on the way out: GroupNorm, SiLU, SPADE modulation and attention stay float, as in
the fake-quant model, which this layer reproduces to float rounding.

Why the kernels are called by hand: they are the ones PyTorch's PT2E x86 flow lowers to, but
that flow re-derives scales from its own observers and needs ``torch.compile``; the eager
``torch.ao.nn.quantized`` modules need quantized tensors (deprecated in 2.13) and a uint8
output scale that neither our checkpoint nor the fake-quant model has. Two gaps are closed here:

- *Weight zero points.* The kernels ignore them (asymmetric weights are our default), so the
  weight goes in as ``q`` and ``z_w * sum(x_hat over the window)`` is subtracted afterwards, in place
  on the kernel's output: the window sum is the channel sum of the quantized input (one reduction)
  under a ones kernel of the layer's window. (An extra all-ones output channel would compute it in
  the same call, but slicing it off costs a copy of every output.)
- *16-bit saturation.* Without VNNI (AVX2, AVX-512F) the u8 x s8 products are summed in pairs
  into int16 (``vpmaddubsw``) and saturate once ``255 * (|w_a| + |w_b|) > 32767``. Where
  :func:`pairs_saturate` finds this (probed once, on the real kernel), layers whose weights can
  overflow run as two 7-bit halves ``q = floor(q/2) + ceil(q/2)``: exact, at twice the integer
  work. Weights of at most 7 bits (``qgesco quantize --wbits 7``) never need the split, and
  dynamic grids use 7-bit activations on such CPUs (:func:`dynamic_bits`), which never saturate.

Split layers (``cat(h, skip)`` inputs) run one kernel call per input group, each with its own
activation scale and weight-scale row, and add. Convolutions with ``groups > 1`` are not
supported (the UNet has none).

*Layout.* The kernels compute channels-innermost (NHWC), so the receiver runs channels_last
throughout (``load_runtime``): the quantized input is written in that layout by the one pass that
converts it to uint8, and the output is returned as the kernel writes it, with no per-layer copy
(``tests/test_runtime.py`` counts them with ``torch.profiler``).
"""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn as nn

from ..quant.layers import QuantLayer, float_op
from ..quant.quantizers import int_range
from .weight_only import PackedQuantLayer

#: The batch weights are first laid out for: one image's guided step (conditional and unconditional
#: passes as one batch), what a receiver runs first.
FIRST_BATCH = 2

#: uint8 = int8 + 128: the kernels take unsigned activations.
U8_SHIFT = 128
INT16_MAX = 32767


def _kernel_args(op: str, conv: dict) -> tuple:
    if op == "linear":
        return ()
    dims = 1 if op == "conv1d" else 2
    return tuple(
        [
            list(conv[k]) if isinstance(conv[k], (list, tuple)) else [conv[k]] * dims
            for k in ("stride", "padding", "dilation")
        ]
    ) + (conv["groups"],)


def _prepack(
    op: str,
    w: torch.Tensor,
    w_scale: torch.Tensor,
    x_scale: float,
    x_zero: int,
    conv_args: tuple,
    x_shape: tuple[int, ...] | torch.Size | None = None,
) -> torch.Tensor:
    if op == "linear":
        return torch.ops.onednn.qlinear_prepack(w, None)
    return torch.ops.onednn.qconv_prepack(w, w_scale, x_scale, x_zero, *conv_args, x_shape and list(x_shape))


def _run(
    op: str,
    u: torch.Tensor,
    x_scale: float,
    x_zero: int,
    packed: torch.Tensor,
    w_scale: torch.Tensor,
    w_zero: torch.Tensor,
    bias: torch.Tensor | None,
    conv_args: tuple,
) -> torch.Tensor:
    """fp32 ``s_x * s_w * sum((u - x_zero) * w) + bias``, per output channel."""
    if op == "linear":
        return torch.ops.onednn.qlinear_pointwise(
            u, x_scale, x_zero, packed, w_scale, w_zero, bias, 1.0, 0, torch.float32, "none", [], ""
        )
    return torch.ops.onednn.qconv_pointwise(
        u, x_scale, x_zero, packed, w_scale, w_zero, bias, *conv_args, 1.0, 0, torch.float32, "none", [], ""
    )


@functools.cache
def pairs_saturate() -> bool:
    """Whether this CPU's int8 kernels saturate pairwise 16-bit sums (no VNNI): probed on one
    1x1 convolution whose exact result, 4 * 255 * -128, does not fit two int16 pair sums."""
    w = torch.full((1, 4, 1, 1), -128, dtype=torch.int8)
    args = _kernel_args("conv2d", {"stride": 1, "padding": 0, "dilation": 1, "groups": 1})
    scale = torch.ones(1)
    packed = _prepack("conv2d", w, scale, 1.0, 0, args)
    u = torch.full((1, 4, 1, 1), 255, dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    out = _run("conv2d", u, 1.0, 0, packed, scale, torch.zeros(1, dtype=torch.int64), None, args)
    return out.item() != 4 * 255 * -128


def dynamic_bits() -> int:
    """Bits of the run-time activation grid: 7 where the kernels sum pairs in int16 (no VNNI), since
    ``127 * (128 + 128)`` fits where ``255 * 256`` does not, so no layer needs the 7-bit weight halves; else 8."""
    return 7 if pairs_saturate() else 8


class _Group(nn.Module):
    """One input group of a layer: its activation grid (the file's, or found per call), packed weights and
    correction."""

    def __init__(
        self,
        op: str,
        conv_args: tuple,
        q: torch.Tensor,
        w_scale: torch.Tensor,
        w_zero: torch.Tensor,
        bias: torch.Tensor | None,
        act: tuple[float, int, int] | None,
        halves: bool,
        grid_bits: int | None = None,
        input_hw: tuple[int, ...] | None = None,
    ):
        super().__init__()
        out_ch = q.shape[0]
        self.op, self.conv_args, self.out_ch, self.halves = op, conv_args, out_ch, halves
        self.dynamic = act is None
        if self.dynamic:  # unsigned grid [0, 2^bits - 1], scale and zero point from each input's range
            self.act_scale, self.act_zero, self.u_min, self.u_max = 1.0, 0, 0, 2 ** (grid_bits or dynamic_bits()) - 1
        else:
            act_scale, act_zero, act_bits = act
            qmin, qmax = int_range(act_bits)
            self.act_scale, self.act_zero = act_scale, act_zero + U8_SHIFT
            self.u_min, self.u_max = qmin + U8_SHIFT, qmax + U8_SHIFT
        rows = [torch.div(q, 2, rounding_mode="floor"), q - torch.div(q, 2, rounding_mode="floor")] if halves else [q]
        w = torch.cat(rows).to(torch.int8).contiguous()
        self.register_buffer("w_scale", torch.cat([w_scale.float()] * len(rows)))
        self.register_buffer("w_zero", torch.zeros(w.shape[0], dtype=torch.int64))
        full_bias = None if bias is None else torch.cat([bias.float()] + [torch.zeros(out_ch)] * halves)
        self.register_buffer("bias", full_bias)
        self.corrected = bool(w_zero.any())
        shape = (1, out_ch) + (1,) * (q.dim() - 2)
        self.register_buffer("neg_offset", -(w_scale.float() * w_zero.float()).reshape(shape))
        # the window sum of (u - zero) under each output: a ones kernel on the channel sum (None: 1x1, stride 1)
        window = op != "linear" and (any(k > 1 for k in q.shape[2:]) or any(s > 1 for s in conv_args[0]))
        self.register_buffer("window", torch.ones((1, 1) + tuple(q.shape[2:])) if window else None)
        self.window_args = dict(zip(("stride", "padding", "dilation"), conv_args))
        # packed for a nonzero zero point (dynamic grids keep one, :meth:`grid`): the weights then carry the
        # compensation the kernel needs, instead of being reordered to add it on every call; and for the
        # input shape the layer will see, where known (:meth:`pack_for`)
        self.pack_zero = self.act_zero if not self.dynamic else 1
        known = input_hw is not None and op != "linear"
        self.packed_for = (FIRST_BATCH, q.shape[1], *input_hw) if known else None
        self.weight_shape = tuple(w.shape)
        self.packed = _prepack(op, w, self.w_scale, self.act_scale, self.pack_zero, conv_args, self.packed_for)
        self.packed_bytes = w.numel()

    def grid(self, x: torch.Tensor) -> tuple[float, int]:
        """The activation scale and zero point for ``x``: the file's, or (dynamic) ``x``'s range with 0 on the grid."""
        if not self.dynamic:
            return self.act_scale, self.act_zero
        lo, hi = (v.item() for v in _range(x))
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        scale = (hi - lo) / self.u_max or 1.0
        zero = min(self.u_max, max(0, round(-lo / scale)))
        if zero == 0:  # one level below 0, so that the zero point is never 0: the weights are packed for that
            return (hi / (self.u_max - 1) or 1.0), 1
        return scale, zero

    def pack_for(self, u: torch.Tensor) -> None:
        """Lay a convolution's weights out for ``u``'s shape, once per change of shape: oneDNN picks its
        weight blocking by the input's batch and size, and reorders weights packed for another shape inside
        every call (docs/runtime.md). A sampler changes shape rarely (guided steps, then unguided ones)."""
        if self.op == "linear" or self.packed_for == tuple(u.shape):
            return
        w = self.packed.to_dense().reshape(self.weight_shape)  # a conv1d's comes back as 2-D
        self.packed_for = tuple(u.shape)
        self.packed = _prepack(self.op, w, self.w_scale, self.act_scale, self.pack_zero, self.conv_args, u.shape)

    def window_sum(self, q: torch.Tensor, zero: int) -> torch.Tensor:
        """``sum(q - zero)`` over each output's input window (padding counts as ``zero``): ``q`` holds the
        quantized values as float (exact integers: a uint8 sum would first convert the whole input)."""
        dim = -1 if self.op == "linear" else 1
        total = q.sum(dim, keepdim=True).sub_(q.shape[dim] * zero)
        if self.window is None:
            return total
        return float_op(self.op, total, self.window, None, self.window_args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, zero = self.grid(x)
        q = torch.div(x, scale).round_().add_(zero).clamp_(self.u_min, self.u_max)
        u = _uint8_channels_innermost(q)
        self.pack_for(u)
        y = _run(self.op, u, scale, zero, self.packed, self.w_scale, self.w_zero, self.bias, self.conv_args)
        if self.halves:
            y = y[:, : self.out_ch] + y[:, self.out_ch :]
        if self.corrected:  # - s_w * z_w * sum(x_hat over the window), in place
            y.addcmul_(self.window_sum(q, zero), self.neg_offset, value=scale)
        return y


def _uint8_channels_innermost(q: torch.Tensor) -> torch.Tensor:
    """``q`` as uint8 with channels innermost (NHWC / NWC: the kernels' own layout, which they would
    otherwise reorder to), in the one pass that converts it."""
    if q.dim() == 2:
        return q.to(torch.uint8)
    out = torch.empty_like(q.movedim(1, -1), dtype=torch.uint8, memory_format=torch.contiguous_format)
    return out.movedim(-1, 1).copy_(q)


def _range(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x``'s min and max without a copy: ``aminmax`` copies strided inputs, and on a 4-D channels_last
    tensor takes a far slower path than on the same memory seen as one dimension (docs/runtime.md)."""
    flat = x.movedim(1, -1) if x.dim() > 2 else x
    if flat.is_contiguous():
        return torch.aminmax(flat.reshape(-1))
    return x.amin(), x.amax()


class Int8Layer(nn.Module):
    """A :class:`QuantLayer` computed by oneDNN's int8 kernels: on the file's activation grids where it
    has activation quantizers (W8A8), else on a grid found per call from the input's range (W8, dynamic),
    of ``grid_bits`` bits (default :func:`dynamic_bits`, this CPU's; 8 on a CPU without VNNI computes what
    a VNNI CPU does, exactly, as 7-bit weight halves). ``input_hw``: the spatial size its input will have,
    for the weights' layout (a convolution lays them out again at a call of another size)."""

    def __init__(self, layer: QuantLayer, grid_bits: int | None = None, input_hw: tuple[int, ...] | None = None):
        super().__init__()
        if layer.op != "linear" and layer.conv["groups"] != 1:
            raise ValueError(f"int8 compute supports groups=1 convolutions only, got groups={layer.conv['groups']}")
        self.op, self.grid_bits = layer.op, grid_bits or dynamic_bits()
        with layer.unpacked() if isinstance(layer, PackedQuantLayer) else contextlib.nullcontext():
            weights = layer.qweight
        in_ch, out_ch = weights.shape[1], weights.shape[0]
        self.bounds = [(0, in_ch)] if layer.split is None else [(0, layer.split), (layer.split, in_ch)]
        scales, zeros = layer.scale.reshape(-1, out_ch), layer.zero_point.reshape(-1, out_ch)
        conv_args = _kernel_args(layer.op, layer.conv)
        acts = (
            [None] * len(self.bounds)
            if layer.input_quant is None
            else [(float(a.scale), int(a.zero_point), a.bits) for a in layer.input_quant]
        )
        groups = []
        for g, ((a, b), act) in enumerate(zip(self.bounds, acts)):
            q = weights[:, a:b]
            u_max = 2**self.grid_bits - 1 if act is None else int_range(act[2])[1] + U8_SHIFT
            worst = 2 * u_max * int(q.to(torch.int16).abs().max())  # int8 abs(-128) wraps
            groups.append(
                _Group(
                    layer.op,
                    conv_args,
                    q,
                    scales[g],
                    zeros[g],
                    layer.bias if g == 0 else None,
                    act,
                    halves=pairs_saturate() and worst > INT16_MAX,
                    grid_bits=self.grid_bits,
                    input_hw=input_hw,
                )
            )
        self.groups = nn.ModuleList(groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.groups) == 1:
            return self.groups[0](x)
        (a0, b0), (a1, b1) = self.bounds
        return self.groups[0](x[:, a0:b0]).add_(self.groups[1](x[:, a1:b1]))

    def extra_repr(self) -> str:
        halves = any(g.halves for g in self.groups)
        grid = f"dynamic u{self.grid_bits}" if self.groups[0].dynamic else "static"
        return f"{self.op}, input groups={len(self.groups)}, activations {grid}" + (", 7-bit halves" if halves else "")

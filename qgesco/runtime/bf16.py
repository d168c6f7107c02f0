"""bfloat16 where the CPU has it natively (AVX512-BF16, AMX-BF16): the ``bf16`` backend, the int8 float layers.

What a user tries first on such a CPU is ``torch.autocast("cpu", dtype=torch.bfloat16)`` around the fp32
model: fast (AMX), but autocast keeps a bf16 copy of every weight beside the fp32 one. This backend
holds one copy: the convolutions' weights are converted once, in place, exactly where the published
``use_fp16`` puts float16 (:meth:`~qgesco.models.unet.UNetModel.convert_convs`): encoder, middle and
decoder convolutions in bf16, linears, norms and the output
head in fp32. It changes what the file computes (bf16 rounds to 8 significant bits), so it is opt-in;
docs/runtime.md has its distance from fp32. Without native bf16 the kernels emulate it, slower than fp32,
so it is refused there.

An int8 receiver keeps some layers weight-only (:class:`~qgesco.runtime.policy.Int8Policy`): mostly 1x1
convolutions, the decoders' skip convolutions among them, which fp32 runs off oneDNN (``_slow_conv2d``,
one thread) at a tenth of the step. :class:`Bf16Layer` computes them in bf16 on oneDNN (AMX) instead,
3.5x faster at full width with the casts (docs/runtime.md), holding the dequantized weight once in bf16.
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn

from ..models.unet import UNetModel
from ..quant.layers import QuantLayer, float_op
from .timing import cpu_flags

#: /proc/cpuinfo flags of native bf16 arithmetic.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


#: ``ONEDNN_MAX_CPU_ISA`` caps below oneDNN's first native-bf16 ISA (AVX512_CORE_BF16): it would emulate bf16.
ISAS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


def bf16_native() -> bool:
    """Whether this CPU computes bf16 natively (a flag of :data:`BF16_FLAGS` in /proc/cpuinfo; False
    where it cannot be read) and oneDNN takes bf16 without emulating it (not capped below bf16)."""
    capped = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in ISAS_WITHOUT_BF16
    return bool(cpu_flags() & set(BF16_FLAGS)) and not capped and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def check_bf16(device: str | torch.device = "cpu") -> None:
    """Refuse, in one line, a device or CPU where the bf16 backend would not pay."""
    if torch.device(device).type != "cpu":
        raise ValueError(f"backend='bf16' is a CPU backend; on {torch.device(device).type} load with backend='auto'")
    if not bf16_native():
        raise ValueError(
            "backend='bf16': this CPU has no native bf16 (AVX512-BF16 or AMX-BF16), where bf16 runs slower "
            "than fp32; load with backend='auto'"
        )


def to_bf16(model: UNetModel) -> UNetModel:
    """``model``'s convolutions in bf16, in place (each fp32 weight is freed as it is converted)."""
    model.convert_convs(torch.bfloat16)
    model.runtime_backend = ("bf16", "asked for: convolutions in bf16 (native on this CPU), the rest fp32")
    return model


class Bf16Layer(nn.Module):
    """A weight-only :class:`~qgesco.quant.QuantLayer` computed in bf16: its dequantized weight and bias
    held in bf16 (two bytes a weight, one copy), its input rounded to bf16, its output returned as fp32 in
    the input's layout, for the fp32 layers around it. Rounds like the ``bf16`` backend, to 8 significant bits."""

    def __init__(self, layer: QuantLayer):
        super().__init__()
        if layer.input_quant is not None:
            raise ValueError("Bf16Layer computes weight-only layers; this one quantizes its input")
        self.op, self.conv = layer.op, layer.conv
        weight = layer.weight.detach().to(torch.bfloat16)
        if layer.op == "conv2d":
            weight = weight.contiguous(memory_format=torch.channels_last)
        self.register_buffer("weight", weight)
        self.register_buffer("bias", None if layer.bias is None else layer.bias.detach().to(torch.bfloat16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return float_op(self.op, x.to(torch.bfloat16), self.weight, self.bias, self.conv).float()

    def extra_repr(self) -> str:
        return f"{self.op}, {tuple(self.weight.shape)}, bf16 weight-only"

"""``bf16``: a full-precision file computed in bfloat16 where the CPU has native bf16 (AVX512-BF16 / AMX-BF16).

What a user tries first on such a CPU is ``torch.autocast("cpu", dtype=torch.bfloat16)`` around the fp32
model: fast (AMX), but autocast keeps a bf16 copy of every weight beside the fp32 one. This backend
holds one copy: the convolutions' weights are converted once, in place, exactly where the published
``use_fp16`` puts float16 (:meth:`~qgesco.models.unet.UNetModel.convert_convs`): encoder, middle and
decoder convolutions in bf16, linears, norms and the output
head in fp32. It changes what the file computes (bf16 rounds to 8 significant bits), so it is opt-in;
docs/runtime.md has its distance from fp32. Without native bf16 the kernels emulate it, slower than fp32,
so it is refused there.
"""

from __future__ import annotations

import torch

from ..models.unet import UNetModel
from .timing import cpu_flags

#: /proc/cpuinfo flags of native bf16 arithmetic.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def bf16_native() -> bool:
    """Whether this CPU computes bf16 natively (a flag of :data:`BF16_FLAGS` in /proc/cpuinfo; False
    where it cannot be read) and oneDNN takes bf16."""
    return bool(cpu_flags() & set(BF16_FLAGS)) and torch.ops.mkldnn._is_mkldnn_bf16_supported()


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

"""Which backend a quantized file takes and which of its layers run on integer kernels: an :class:`Int8Policy`.

The rules are data, not constants: a policy says how wide the per-call activation grids of a W8 file
are, which layers stay weight-only, from what arithmetic intensity a layer's integer kernel pays and
what quality a W8 file's grids must keep. :func:`default_policy` fills it in from this CPU (its grid
width) and from the file (an LPIPS its maker recorded, :func:`~qgesco.quant.checkpoint.dynamic_lpips`);
the measurements behind the defaults are in docs/runtime.md.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, replace

import torch

from ..quant.checkpoint import PACKED_BITS, dynamic_lpips
from . import bf16 as bf16_support
from .int8 import dynamic_bits

#: Widest per-call activation grid: the kernels take uint8 activations.
MAX_GRID_BITS = 8

#: Layers never given integer kernels: the input conv (3 input channels, K = 27: too small for an int8
#: GEMM to pay) is also where ``UNetModel.dtype`` reads the compute dtype.
WEIGHT_ONLY_LAYERS = ("input_blocks.0.0",)

#: Weight-only layers that stay fp32 where the others compute in bf16: the input conv (it sets the
#: network's compute dtype) and the output conv (it writes the noise prediction itself).
FP32_LAYERS = ("input_blocks.0.0", "out.2")


@dataclass(frozen=True)
class Int8Policy:
    """How a quantized file runs on CPU (:func:`~qgesco.runtime.load_runtime`, :func:`~qgesco.runtime.to_int8`).

    - ``grid_bits``: width of a W8 file's per-call activation grids, 2 to 8; None takes this CPU's
      (:func:`~qgesco.runtime.int8.dynamic_bits`: 8 with VNNI, 7 without, where 8 runs as 7-bit weight halves).
    - ``dynamic_weight_only``: ``fnmatch`` patterns of the layers a W8 file keeps weight-only. The
      decoders' 1x1 skip convolutions read the un-normalised residual stream, whose range one per-call
      grid resolves worst, and the output conv writes the noise prediction itself.
    - ``min_intensity``: a W8 file's layer takes integer kernels only from this many multiply-adds per
      activation element it moves (:func:`intensity`): below it the per-call work around the kernel (range,
      rounding, zero-point correction) costs more than the kernel saves. 0 puts every layer on them.
    - ``max_dynamic_lpips``: a W8 file whose recorded LPIPS on these grids (against its float model) is
      above this runs weight-only, exactly, under ``auto``; a file that records none runs int8.
    - ``bf16``: a full-precision file computes its convolutions in bfloat16 (opt-in: it changes what
      the file computes; CPUs with native bf16 only, :mod:`qgesco.runtime.bf16`).
    - ``weight_only_bf16``: an int8 receiver's weight-only layers, bar :data:`FP32_LAYERS`, compute in
      bf16 (:class:`~qgesco.runtime.bf16.Bf16Layer`); None: where this CPU computes bf16 natively.
    """

    grid_bits: int | None = None
    dynamic_weight_only: tuple[str, ...] = ("*.skip_connection", "out.2")
    min_intensity: float = 200.0
    max_dynamic_lpips: float = 0.005
    bf16: bool = False
    weight_only_bf16: bool | None = None

    def __post_init__(self) -> None:
        bits = self.grid_bits
        if bits is not None and (isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= MAX_GRID_BITS):
            raise ValueError(f"Int8Policy grid_bits={bits!r}: give a width of 2 to {MAX_GRID_BITS} bits, or None")
        if isinstance(self.dynamic_weight_only, str) or not all(isinstance(p, str) for p in self.dynamic_weight_only):
            raise ValueError(
                f"Int8Policy dynamic_weight_only={self.dynamic_weight_only!r}: give a tuple of layer-name "
                "patterns, e.g. ('*.skip_connection', 'out.2')"
            )
        if self.weight_only_bf16 not in (None, True, False):
            raise ValueError(f"Int8Policy weight_only_bf16={self.weight_only_bf16!r}: give True, False or None (auto)")
        for name in ("min_intensity", "max_dynamic_lpips"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"Int8Policy {name}={value!r}: give a finite number >= 0")

    def grid(self) -> int:
        """The per-call grid width this policy runs: its own, or this CPU's."""
        return self.grid_bits or dynamic_bits()

    def integer(self, name: str, weight_shape, quantized_input: bool, dynamic: bool) -> bool:
        """Whether a layer (its name, weight shape, whether it has an activation quantizer, whether the file
        has none at all) takes integer kernels: in a W8A8 file those with activation quantizers, in a W8
        file those this policy does not keep weight-only; never :data:`WEIGHT_ONLY_LAYERS`."""
        if name in WEIGHT_ONLY_LAYERS:
            return False
        if dynamic:
            excluded = any(fnmatch.fnmatchcase(name, pattern) for pattern in self.dynamic_weight_only)
            return not excluded and intensity(weight_shape) >= self.min_intensity
        return quantized_input

    def bf16_weight_only(self) -> bool:
        """Whether weight-only layers compute in bf16 under this policy on this CPU; ``True`` where the CPU
        has no native bf16 is refused in one line (bf16 is emulated there, slower than fp32)."""
        native = bf16_support.bf16_native()
        if self.weight_only_bf16 and not native:
            raise ValueError(
                "Int8Policy(weight_only_bf16=True): this CPU has no native bf16 (AVX512-BF16 or AMX-BF16), where "
                "bf16 runs slower than fp32; leave weight_only_bf16=None"
            )
        return native if self.weight_only_bf16 is None else self.weight_only_bf16

    @staticmethod
    def bf16_eligible(name: str, quantized_input: bool) -> bool:
        """Whether a layer left off integer kernels may compute in bf16: a weight-only one (no activation
        quantizer) outside :data:`FP32_LAYERS`."""
        return not quantized_input and name not in FP32_LAYERS


def intensity(weight_shape) -> float:
    """Multiply-adds per activation element moved: ``k^2 * c_in * c_out / (c_in + c_out)``."""
    out_ch, in_ch, *kernel = weight_shape
    return math.prod(kernel) * in_ch * out_ch / (in_ch + out_ch)


def default_policy(meta: dict | None = None) -> Int8Policy:
    """The policy ``auto`` runs a file with on this CPU: grids of the CPU's width, unless the file records
    that they miss the quality bar while 8-bit grids (exact on any CPU, as 7-bit weight halves) meet it."""
    policy = Int8Policy(grid_bits=dynamic_bits())
    recorded = dynamic_lpips(meta) if meta else {}
    own, wide = recorded.get(policy.grid_bits), recorded.get(MAX_GRID_BITS)
    bar = policy.max_dynamic_lpips
    if own is not None and own > bar and wide is not None and wide <= bar:
        return replace(policy, grid_bits=MAX_GRID_BITS)
    return policy


def default_backend(
    meta: dict, device: str | torch.device = "cpu", policy: Int8Policy | None = None
) -> tuple[str, str]:
    """The backend ``auto`` picks for a file under ``policy`` (default :func:`default_policy`), and why
    (one line, printed by sample/demo/evaluate/bench).

    A file with activation quantizers (W8A8) runs on integer kernels on CPU, on the file's own grids:
    what its model computes, to float rounding. A W8 file runs on integer kernels on grids found per
    call, unless the file records an LPIPS for them above the policy's bar: then exactly (weight-only).
    ``backend=`` overrides either way. Files of <= 4 bits stay packed (weight-only): the int8 kernels
    would need them unpacked."""
    bits = meta["weight_bits"]
    if torch.device(device).type != "cpu":
        return "weight-only", f"int8 kernels are CPU-only; {torch.device(device).type} computes in float"
    if bits <= PACKED_BITS:
        return "weight-only", f"W{bits} stays packed two per byte; float compute (docs/runtime.md)"
    if meta["act_bits"]:
        return "int8", f"W{bits}A{meta['act_bits']} on CPU: oneDNN int8 kernels on the file's activation grids"
    policy = policy or default_policy(meta)
    grid = policy.grid()
    recorded = dynamic_lpips(meta).get(grid)
    kernels = f"W{bits} on CPU: oneDNN int8 kernels on per-call {grid}-bit activation grids"
    if recorded is None:
        return "int8", f"{kernels} (the file records no LPIPS for them; docs/runtime.md bounds the demo's)"
    cost = f"LPIPS {recorded:.4f} vs fp32 recorded in the file (bar {policy.max_dynamic_lpips})"
    if recorded <= policy.max_dynamic_lpips:
        return "int8", f"{kernels}, {cost}"
    return (
        "weight-only",
        f"W{bits}: per-call {grid}-bit activation grids cost {cost}: exact instead; backend='int8' takes them",
    )

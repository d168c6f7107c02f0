"""``load_runtime(path, backend)``: a quantized checkpoint as a deployable low-bit model.

The file goes through the same checks as :func:`~qgesco.quant.load_quantized`
(:func:`~qgesco.quant.checkpoint.read_quantized`: header against the described network,
checksum, integer grids, scales) before anything is allocated beyond the stored tensors, which
then become the model's buffers as they are (``assign=True``): no float copy of the weights is
kept, and packed 4-bit weights stay packed.
"""

from __future__ import annotations

import os
from dataclasses import asdict

import torch

from ..models.config import UNetConfig
from ..models.unet import UNetModel
from ..quant.checkpoint import PACKED_BITS, read_quantized
from ..quant.swap import quant_layers
from .int8 import Int8Layer
from .weight_only import PackedQuantLayer

#: ``weight-only``: integer weights, fp32 compute (any device); ``int8``: integer compute of every
#: layer with activation quantizers through oneDNN (CPU, needs a checkpoint made with ``act_bits``).
BACKENDS = ("weight-only", "int8")


def _check_config(found: UNetConfig, expected: UNetConfig, path: str | os.PathLike) -> None:
    expected = expected.replace(use_fp16=False)
    if found != expected:
        a, b = asdict(found), asdict(expected)
        diff = ", ".join(f"{k}={a[k]!r} (expected {b[k]!r})" for k in a if a[k] != b[k])
        raise ValueError(f"{path}: quantized for another model configuration: {diff}; quantize this receiver's model instead")


#: Layers left weight-only by :func:`to_int8`: the input conv (3 input channels, K = 27: too
#: small for an int8 GEMM to pay) is also where ``UNetModel.dtype`` reads the compute dtype.
WEIGHT_ONLY_LAYERS = ("input_blocks.0.0",)


def to_int8(model: UNetModel) -> UNetModel:
    """Swap, in place, every layer with activation quantizers (bar :data:`WEIGHT_ONLY_LAYERS`) for an :class:`Int8Layer`."""
    for name, layer in quant_layers(model):
        if layer.input_quant is not None and name not in WEIGHT_ONLY_LAYERS:
            model.set_submodule(name, Int8Layer(layer))
    return model


def load_runtime(path: str | os.PathLike, backend: str = "weight-only", device: str | torch.device = "cpu",
                 config: UNetConfig | None = None) -> UNetModel:
    """The quantized model in ``path`` with low-bit weights in memory, in eval mode; ``model(x, t, y)`` as usual.

    ``config``: the receiver's model configuration; a checkpoint quantized from another
    configuration is refused before anything is computed. ``weight-only`` computes bit for bit
    what ``load_quantized(path)`` computes, ``int8`` each layer to float rounding (docs/runtime.md).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown runtime backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    model, tensors, meta = read_quantized(path)
    if config is not None:
        _check_config(model.config, config, path)
    if backend == "int8":
        if meta["act_bits"] is None:
            raise ValueError(f"{path}: has float activations, so there is nothing to compute in int8; run it with "
                             "backend='weight-only', or quantize with activations (qgesco quantize --abits 8 --calib ...)")
        if torch.device(device).type != "cpu":
            raise ValueError(f"the int8 backend runs oneDNN CPU kernels; device={device!r} takes backend='weight-only'")
    for name, layer in quant_layers(model):
        if layer.bits <= PACKED_BITS:
            model.set_submodule(name, PackedQuantLayer.like(layer))
    model.load_state_dict(tensors, strict=True, assign=True)
    del tensors  # the model holds them now; to_int8 frees each layer's int8 copy once it is prepacked
    model.eval()
    if backend == "int8":
        to_int8(model)
    return model.to(device)

"""``load_runtime(path, backend)``: a quantized checkpoint as a deployable low-bit model.

The file goes through the same checks as :func:`~qgesco.quant.load_quantized`
(:func:`~qgesco.quant.checkpoint.read_quantized`: header against the described network,
checksum, integer grids, scales) before anything is allocated beyond the stored tensors, which
then become the model's buffers as they are (``assign=True``): no float copy of the weights is
kept, and packed 4-bit weights stay packed.
"""

from __future__ import annotations

import fnmatch
import math
import os
from dataclasses import asdict
from pathlib import Path

import torch

from ..fileio import read_meta
from ..models.checkpoint import BUNDLED, bundled_path
from ..models.config import UNetConfig
from ..models.unet import UNetModel
from ..quant.checkpoint import KIND, PACKED_BITS, read_quantized
from ..quant.swap import quant_layers
from .int8 import Int8Layer, dynamic_bits
from .weight_only import PackedQuantLayer

#: ``weight-only``: integer weights, fp32 compute (any device), exactly the simulated model;
#: ``int8``: integer compute through oneDNN (CPU) on the file's activation grids (W8A8) or on
#: per-call dynamic grids (W8); ``auto``: :func:`default_backend`.
BACKENDS = ("auto", "weight-only", "int8")


def _check_config(found: UNetConfig, expected: UNetConfig, path: str | os.PathLike) -> None:
    expected = expected.replace(use_fp16=False)
    if found != expected:
        a, b = asdict(found), asdict(expected)
        diff = ", ".join(f"{k}={a[k]!r} (expected {b[k]!r})" for k in a if a[k] != b[k])
        raise ValueError(
            f"{path}: quantized for another model configuration: {diff}; quantize this receiver's model instead"
        )


#: Layers left weight-only by :func:`to_int8`: the input conv (3 input channels, K = 27: too
#: small for an int8 GEMM to pay) is also where ``UNetModel.dtype`` reads the compute dtype.
WEIGHT_ONLY_LAYERS = ("input_blocks.0.0",)

#: Further layers a W8 file (dynamic grids) keeps weight-only: the decoders' 1x1 skip convolutions
#: read the un-normalised residual stream, whose range one per-call grid resolves worst (they
#: alone cause 70% of the dynamic grids' error, measured on the demo model, docs/runtime.md), and
#: the output conv writes the noise prediction itself. Together 4% of the published model's MACs.
DYNAMIC_WEIGHT_ONLY = ("*.skip_connection", "out.2")


#: ``auto`` on a W8 file keeps a layer weight-only below this many multiply-adds per activation element
#: it reads or writes, ``k^2 * c_in * c_out / (c_in + c_out)``: below it the per-call work around the
#: integer kernel (finding the grid, quantizing, the zero-point correction) costs more than the kernel
#: saves over fp32 (per-layer timings on the demo model, docs/runtime.md). Every layer of the published
#: widths is above it, most of the demo model's small layers below.
INT8_MIN_INTENSITY = 200


def intensity(weight_shape) -> float:
    """Multiply-adds per activation element moved: ``k^2 * c_in * c_out / (c_in + c_out)``."""
    out_ch, in_ch, *kernel = weight_shape
    return math.prod(kernel) * in_ch * out_ch / (in_ch + out_ch)


def _integer(name: str, weight_shape, quantized_input: bool, dynamic: bool, min_intensity: float) -> bool:
    """Whether :func:`to_int8` gives this layer (of this weight shape, with an activation quantizer or not)
    integer kernels."""
    if name in WEIGHT_ONLY_LAYERS:
        return False
    if dynamic:
        excluded = any(fnmatch.fnmatchcase(name, pattern) for pattern in DYNAMIC_WEIGHT_ONLY)
        return not excluded and intensity(weight_shape) >= min_intensity
    return quantized_input


def to_int8(model: UNetModel, grid_bits: int | None = None, min_intensity: float = 0.0) -> UNetModel:
    """Swap, in place, quantized layers for :class:`Int8Layer`: in a W8A8 file those with activation
    quantizers (the rest keep the file's float activations) bar :data:`WEIGHT_ONLY_LAYERS`; in a W8 file
    (dynamic grids of ``grid_bits``, default this CPU's) every one bar those, :data:`DYNAMIC_WEIGHT_ONLY`
    and layers of less than ``min_intensity`` (:func:`intensity`; ``auto`` passes :data:`INT8_MIN_INTENSITY`)."""
    dynamic = all(layer.input_quant is None for _, layer in quant_layers(model))
    for name in [name for name, _ in quant_layers(model)]:  # names only: each int8 copy is freed once packed
        layer = model.get_submodule(name)
        shape = layer.qweight.shape if layer.bits > PACKED_BITS else layer.weight_shape
        if _integer(name, shape, layer.input_quant is not None, dynamic, min_intensity):
            model.set_submodule(name, Int8Layer(layer, grid_bits))
    return model


#: The demo table's quality bar: LPIPS of a receiver's images against fp32's.
QUALITY_BAR = 0.005

#: LPIPS vs fp32 of the bundled W8 demo file on per-call activation grids of each width (bits), first
#: 32 CamVid val scenes (``python bench/backend_quality.py --images 32 --threads 1``, docs/runtime.md).
DYNAMIC_LPIPS = {7: 0.0013, 8: 0.0007}


def default_backend(meta: dict, device: str | torch.device = "cpu") -> tuple[str, str]:
    """The backend ``auto`` picks for a file, and why (one line, printed by sample/demo/evaluate).

    A file with activation quantizers (W8A8) runs on integer kernels on CPU, on the file's own
    grids: what its model computes, to float rounding. A W8 file runs on integer kernels on grids
    found per call where this CPU's grid width (:func:`~qgesco.runtime.int8.dynamic_bits`: 8 bits
    with VNNI, 7 without) kept the demo within :data:`QUALITY_BAR` (:data:`DYNAMIC_LPIPS`), else
    exactly (weight-only); ``backend=`` overrides either way. Files of <= 4 bits stay packed
    (weight-only): the int8 kernels would need them unpacked."""
    bits = meta["weight_bits"]
    if torch.device(device).type != "cpu":
        return "weight-only", f"int8 kernels are CPU-only; {torch.device(device).type} computes in float"
    if bits <= PACKED_BITS:
        return "weight-only", f"W{bits} stays packed two per byte; float compute (docs/runtime.md)"
    if meta["act_bits"]:
        return "int8", f"W{bits}A{meta['act_bits']} on CPU: oneDNN int8 kernels on the file's activation grids"
    grid = dynamic_bits()
    cost = f"LPIPS {DYNAMIC_LPIPS[grid]:.4f} vs fp32 on the demo (bar {QUALITY_BAR})"
    if DYNAMIC_LPIPS[grid] <= QUALITY_BAR:
        return "int8", f"W{bits} on CPU: oneDNN int8 kernels on per-call {grid}-bit activation grids, {cost}"
    return "weight-only", (
        f"W{bits}: this CPU's per-call activation grids have {grid} bits (no VNNI), {cost}: exact instead; "
        "backend='int8' takes them (docs/runtime.md)"
    )


def backend_line(path_or_name: str | os.PathLike, device: str | torch.device = "cpu") -> str | None:
    """``name: runtime backend int8 (why)`` for a quantized file or bundled name loaded with ``auto``
    (what ``qgesco sample`` and ``evaluate`` print); None for anything else."""
    path = bundled_path(str(path_or_name)) if str(path_or_name) in BUNDLED else Path(path_or_name)
    if not path.is_file():
        return None
    meta = read_meta(path)
    if meta.get("kind") != KIND:
        return None
    backend, why = default_backend(meta, device)
    layers = meta.get("layers", {})
    if backend == "int8":
        dynamic = not any(entry.get("act") for entry in layers.values())
        integer = sum(
            _integer(name, entry["weight_shape"], bool(entry.get("act")), dynamic, INT8_MIN_INTENSITY)
            for name, entry in layers.items()
        )
        why += f"; {integer} of {len(layers)} quantized layers on them, the rest in float"
    kept = len(meta.get("fp_layers", []))
    if kept:
        why += f"; {kept} layer(s) kept in float by the file (--keep-fp)"
    return f"{Path(path).name}: runtime backend {backend} ({why})"


def load_runtime(
    path: str | os.PathLike, backend: str = "auto", device: str | torch.device = "cpu", config: UNetConfig | None = None
) -> UNetModel:
    """The quantized model in ``path`` with low-bit weights in memory, in eval mode; ``model(x, t, y)`` as usual.

    ``config``: the receiver's model configuration; a checkpoint quantized from another
    configuration is refused before anything is computed. ``weight-only`` computes bit for bit
    what ``load_quantized(path)`` computes; ``int8`` on the file's activation grids each layer to float
    rounding, on dynamic grids (a file without activation quantizers) within docs/runtime.md's bound.
    The model's ``runtime_backend`` says which backend was taken and why.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown runtime backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    model, tensors, meta = read_quantized(path)
    if config is not None:
        _check_config(model.config, config, path)
    why, min_intensity = "asked for", 0.0
    if backend == "auto":
        backend, why = default_backend(meta, device)
        min_intensity = INT8_MIN_INTENSITY  # only where the kernels pay; "int8" asks for every layer
    if backend == "int8":
        if torch.device(device).type != "cpu":
            raise ValueError(f"the int8 backend runs oneDNN CPU kernels; device={device!r} takes backend='weight-only'")
    for name, layer in quant_layers(model):
        if layer.bits <= PACKED_BITS:
            model.set_submodule(name, PackedQuantLayer.like(layer))
    model.load_state_dict(tensors, strict=True, assign=True)
    del tensors  # the model holds them now; to_int8 frees each layer's int8 copy once it is prepacked
    model.eval()
    if backend == "int8":  # channels_last throughout: the int8 kernels' layout, so no layer reorders its input
        to_int8(model, min_intensity=min_intensity).to(memory_format=torch.channels_last)
    model.runtime_backend = (backend, why)
    return model.to(device)

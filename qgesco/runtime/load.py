"""``load_runtime(path, backend, policy)``: a quantized checkpoint as a deployable low-bit model.

The file goes through the same checks as :func:`~qgesco.quant.load_quantized`
(:func:`~qgesco.quant.checkpoint.read_quantized`: header against the described network,
checksum, integer grids, scales) before anything is allocated beyond the stored tensors, which
then become the model's buffers as they are (``assign=True``): no float copy of the weights is
kept, and packed 4-bit weights stay packed. Which backend and which layers run on integer kernels
is an :class:`~qgesco.runtime.policy.Int8Policy`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ..fileio import QUANTIZED_KIND
from ..models.checkpoint import read_model_meta, resolve_source
from ..models.config import UNetConfig
from ..models.costs import model_costs
from ..models.unet import UNetModel
from ..quant.checkpoint import PACKED_BITS, read_quantized
from ..quant.swap import quant_layers
from .allocator import keep_freed_memory
from .bf16 import Bf16Layer
from .int8 import Int8Layer
from .policy import Int8Policy, default_backend, default_policy
from .weight_only import PackedQuantLayer

#: ``weight-only``: integer weights, fp32 compute (any device), exactly the simulated model;
#: ``int8``: integer compute through oneDNN (CPU) on the file's activation grids (W8A8) or on
#: per-call dynamic grids (W8); ``auto``: :func:`~qgesco.runtime.policy.default_backend`.
BACKENDS = ("auto", "weight-only", "int8")


def _check_config(found: UNetConfig, expected: UNetConfig, path: str | os.PathLike) -> None:
    expected = expected.replace(use_fp16=False)
    if found != expected:
        a, b = asdict(found), asdict(expected)
        diff = ", ".join(f"{k}={a[k]!r} (expected {b[k]!r})" for k in a if a[k] != b[k])
        raise ValueError(
            f"{path}: quantized for another model configuration: {diff}; quantize this receiver's model instead"
        )


def to_int8(model: UNetModel, policy: Int8Policy | None = None) -> UNetModel:
    """Swap, in place, the quantized layers ``policy`` gives integer kernels (:meth:`Int8Policy.integer`)
    for :class:`Int8Layer`: in a W8A8 file those with activation quantizers, in a W8 file (per-call grids
    of ``policy.grid()`` bits) those it does not keep weight-only. Default: :class:`Int8Policy` with
    ``min_intensity=0``, every layer bar its weight-only patterns. Weight-only layers the policy puts in
    bf16 (:meth:`Int8Policy.bf16_weight_only`) become :class:`~qgesco.runtime.bf16.Bf16Layer`."""
    policy = policy or Int8Policy(min_intensity=0.0)
    bf16 = policy.bf16_weight_only()
    dynamic = all(layer.input_quant is None for _, layer in quant_layers(model))
    sizes = model_costs(model.config).input_hw_by_module  # what each convolution's weights are laid out for
    for name in [name for name, _ in quant_layers(model)]:  # names only: each int8 copy is freed once packed
        layer = model.get_submodule(name)
        shape = layer.qweight.shape if layer.bits > PACKED_BITS else layer.weight_shape
        quantized_input = layer.input_quant is not None
        if policy.integer(name, shape, quantized_input, dynamic):
            model.set_submodule(name, Int8Layer(layer, policy.grid(), sizes.get(name)))
        elif bf16 and layer.bits > PACKED_BITS and policy.bf16_eligible(name, quantized_input):
            model.set_submodule(name, Bf16Layer(layer))
    return model


def backend_line(
    path_or_name: str | os.PathLike, device: str | torch.device = "cpu", policy: Int8Policy | None = None
) -> str | None:
    """``name: runtime backend int8 (why)`` for a quantized file or bundled name loaded with ``auto``
    (what ``qgesco sample`` and ``evaluate`` print); None for anything else."""
    try:
        path = resolve_source(path_or_name)
        meta = read_model_meta(path)
    except (OSError, ValueError):
        return None
    if meta["kind"] != QUANTIZED_KIND:
        return None
    policy = policy or default_policy(meta)
    backend, why = default_backend(meta, device, policy)
    layers = meta.get("layers", {})
    if backend == "int8":
        dynamic = not any(entry.get("act") for entry in layers.values())
        integer = {
            name
            for name, entry in layers.items()
            if policy.integer(name, entry["weight_shape"], bool(entry.get("act")), dynamic)
        }
        bf16 = policy.bf16_weight_only() and sum(
            policy.bf16_eligible(name, bool(entry.get("act"))) for name, entry in layers.items() if name not in integer
        )
        rest = f"{bf16} in bf16, the rest in fp32" if bf16 else "the rest in float"
        why += f"; {len(integer)} of {len(layers)} quantized layers on them, {rest}"
    kept = len(meta.get("fp_layers", []))
    if kept:
        why += f"; {kept} layer(s) kept in float by the file (--keep-fp)"
    return f"{Path(path).name}: runtime backend {backend} ({why})"


def load_runtime(
    path: str | os.PathLike,
    backend: str = "auto",
    device: str | torch.device = "cpu",
    config: UNetConfig | None = None,
    policy: Int8Policy | None = None,
) -> UNetModel:
    """The quantized model in ``path`` with low-bit weights in memory, in eval mode; ``model(x, t, y)`` as usual.

    ``config``: the receiver's model configuration; a checkpoint quantized from another
    configuration is refused before anything is computed. ``weight-only`` computes bit for bit
    what ``load_quantized(path)`` computes; ``int8`` on the file's activation grids each layer to float
    rounding, on dynamic grids (a file without activation quantizers) within docs/runtime.md's bound.
    ``policy`` (default :func:`~qgesco.runtime.policy.default_policy` of the file; for ``backend="int8"``
    with ``min_intensity=0``, every eligible layer) decides the backend ``auto`` takes and the layers
    ``int8`` swaps. The model's ``runtime_backend`` says which backend was taken and why.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown runtime backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    model, tensors, meta = read_quantized(path)
    if config is not None:
        _check_config(model.config, config, path)
    why = "asked for"
    if backend == "auto":
        policy = policy or default_policy(meta)
        backend, why = default_backend(meta, device, policy)
    elif policy is None:
        policy = replace(default_policy(meta), min_intensity=0.0)  # "int8" asks for every layer
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
        to_int8(model, policy).to(memory_format=torch.channels_last)
    model.runtime_backend = (backend, why)
    keep_freed_memory(device)  # steps reuse each other's activation pages (qgesco.runtime.allocator)
    return model.to(device)

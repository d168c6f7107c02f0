"""Quantized checkpoints: integer weights, scales, zero points, activation scales, the
config and the provenance in one self-describing safetensors file (docs/quantization.md).

Loading checks every tensor's name, shape and dtype against the network the stored config
and plan describe (from the file header, before reading any data), then a sha256 over all
tensors written at save time (by :func:`qgesco.fileio.load_tensors`), then value ranges; only then does it build the
model. A
truncated, tampered or foreign file fails with one message, never half-way through a run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import torch
from safetensors import safe_open

from ..fileio import QUANTIZED_KIND, load_tensors, read_kind, require_finite, save_tensors
from ..models.config import UNetConfig
from ..models.unet import UNetModel
from .quantizers import int_range
from .swap import PLAN_KEYS, act_quantizers, apply_plan, quant_layers

FORMAT_VERSION = 1
#: Weights of at most this many bits are stored two per byte.
PACKED_BITS = 4
#: Optional metadata: LPIPS against the float model of images made with the file run on per-call
#: activation grids (a W8 file on the int8 backend), by grid width in bits, as its maker measured it.
#: The runtime's default policy reads it (:func:`qgesco.runtime.default_policy`).
DYNAMIC_LPIPS = "dynamic_lpips"
_DTYPES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    "I8": torch.int8,
    "U8": torch.uint8,
    "I16": torch.int16,
    "I32": torch.int32,
    "I64": torch.int64,
    "BOOL": torch.bool,
}


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Signed values in [-8, 7] as uint8, two per byte: ``q + 8`` in the low nibble for even
    flat indices, in the high nibble for odd ones; an odd count is padded with q = 0."""
    u = (q.reshape(-1).to(torch.int16) + 8).to(torch.uint8)
    if u.numel() % 2:
        u = torch.cat([u, u.new_full((1,), 8)])
    return u[0::2] | (u[1::2] << 4)


def unpack_int4(packed: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`pack_int4`: int8 values of the given shape."""
    pairs = torch.stack([packed & 0x0F, packed >> 4], dim=1).reshape(-1)
    return (pairs[: math.prod(shape)].to(torch.int16) - 8).to(torch.int8).reshape(shape)


def dynamic_lpips(meta: Mapping[str, Any]) -> dict[int, float]:
    """The LPIPS a file records for its per-call activation grids, ``{grid bits: LPIPS}`` (empty when it
    records none); a malformed record is refused in one line."""
    recorded = meta.get(DYNAMIC_LPIPS) or {}
    try:
        checked = {int(bits): float(value) for bits, value in dict(recorded).items()}
    except (TypeError, ValueError):
        checked = None
    if checked is None or not all(2 <= b <= 8 and math.isfinite(v) and v >= 0 for b, v in checked.items()):
        raise ValueError(
            f"quantized checkpoint metadata {DYNAMIC_LPIPS}={recorded!r}: expected {{grid bits (2-8): LPIPS >= 0}}; "
            "record it again with qgesco.quant.checkpoint.record_dynamic_lpips"
        )
    return checked


def record_dynamic_lpips(path: str | os.PathLike, measured: Mapping[int, float]) -> None:
    """Add a measured LPIPS per grid width (``{7: 0.0013}``) to a quantized file's metadata, atomically,
    beside any recorded before; the tensors are unchanged."""
    _, tensors, meta = read_quantized(path)
    recorded = {**dynamic_lpips(meta), **dynamic_lpips({DYNAMIC_LPIPS: measured})}
    meta = {k: v for k, v in meta.items() if k != "sha256"}
    meta[DYNAMIC_LPIPS] = {str(bits): value for bits, value in sorted(recorded.items())}
    save_tensors(path, tensors, meta)


def save_quantized(qmodel: UNetModel, path: str | os.PathLike, **provenance: Any) -> None:
    """Write a model made by :func:`~qgesco.quant.quantize` (plus ``provenance``) to ``path``, atomically."""
    plan = qmodel.quant_plan
    if plan is None:
        raise ValueError("not a quantized model: make one with qgesco.quant.quantize() or load_quantized()")
    unfinished = [
        name for name, layer in quant_layers(qmodel) if layer.float_weight is not None or layer.rounding is not None
    ]
    if unfinished:
        raise ValueError(f"layers {unfinished[:3]} are still being calibrated; save the model quantize() returns")
    tensors = dict(qmodel.state_dict())
    require_finite(tensors, str(path))
    layers = {}
    for name, layer in quant_layers(qmodel):
        packed = layer.bits <= PACKED_BITS
        if packed:
            tensors[f"{name}.qweight"] = pack_int4(layer.qweight)
        layers[name] = {**plan["layers"][name], "bits": layer.bits, "packed": packed}
    meta = {
        "kind": QUANTIZED_KIND,
        "format_version": FORMAT_VERSION,
        "config": qmodel.config.to_dict(),
        **{k: plan[k] for k in PLAN_KEYS},
        "layers": layers,
        "split_layers": {name: entry["split"] for name, entry in layers.items() if entry["split"] is not None},
        "act_quantizers": [name for name, _ in act_quantizers(qmodel)],
        "activation": None
        if plan["act_bits"] is None
        else {"bits": plan["act_bits"], "granularity": "per-tensor", "symmetric": False},
        "provenance": {**(qmodel.quant_report or {}), **provenance},
    }
    save_tensors(path, tensors, meta)


def _skeleton(meta: dict[str, Any], path: str | os.PathLike) -> tuple[UNetModel, dict[str, Any]]:
    """The empty quantized network (on the meta device) that the metadata describes."""
    try:
        config = UNetConfig.from_dict(meta["config"]).replace(use_fp16=False)
        plan = {k: meta[k] for k in PLAN_KEYS}
        with torch.device("meta"):
            model = apply_plan(UNetModel(config), plan, fit=False)
    except (KeyError, TypeError) as e:
        raise ValueError(
            f"{path}: incomplete quantized-checkpoint metadata ({type(e).__name__}: {e}); re-create the file"
        ) from None
    return model, plan


def _check_header(path: str | os.PathLike, expected: dict[str, tuple[tuple[int, ...], torch.dtype]]) -> None:
    with safe_open(str(path), framework="pt") as f:
        found = {k: (tuple(f.get_slice(k).get_shape()), _DTYPES.get(f.get_slice(k).get_dtype())) for k in f.keys()}
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    wrong = [
        f"{k} {found[k][0]} {found[k][1]} (expected {shape} {dtype})"
        for k, (shape, dtype) in expected.items()
        if k in found and found[k] != (shape, dtype)
    ]
    if missing or unexpected or wrong:
        parts = [
            f"{path}: tensors do not match the network its metadata describes (tampered with, or written by another "
            "tool):"
        ]
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape/dtype", wrong)):
            if keys:
                parts.append(f"  {len(keys)} {label}, first: {', '.join(keys[:3])}")
        raise ValueError("\n".join(parts))


def _check_values(model: UNetModel, tensors: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Integers inside their grids, scales positive and finite."""

    def bad(key: str, why: str) -> None:
        raise ValueError(f"{path}: {key} {why}; the file was not written by save_quantized")

    for name, layer in quant_layers(model):
        qmin, qmax = int_range(layer.bits)
        for key in (f"{name}.qweight", f"{name}.zero_point"):
            q = tensors[key]
            if key.endswith("qweight") and layer.bits <= PACKED_BITS:
                q = unpack_int4(q, tuple(layer.qweight.shape))
            if q.numel() and not (qmin <= int(q.min()) and int(q.max()) <= qmax):
                bad(key, f"holds values outside the {layer.bits}-bit grid [{qmin}, {qmax}]")
    for key, value in tensors.items():
        if key.endswith("scale") and value.numel() and not (torch.isfinite(value).all() and (value > 0).all()):
            bad(key, "holds non-positive or non-finite scales")


def read_quantized(path: str | os.PathLike) -> tuple[UNetModel, dict[str, torch.Tensor], dict[str, Any]]:
    """The checked contents of a file written by :func:`save_quantized`, before any model is built.

    Returns the empty quantized network the metadata describes (on the meta device, with
    ``quant_plan`` and ``quant_report``), the tensors as stored (weights of <= 4 bits still
    packed) and the metadata. Every check of the module docstring runs here, so every loader
    (the fake-quant model, the low-bit runtime) refuses the same files with the same message.
    """
    meta = read_kind(
        path,
        (QUANTIZED_KIND,),
        "a quantized model",
        "full-precision models load with qgesco.models.checkpoint.load_float_model",
    )
    if meta.get("format_version") != FORMAT_VERSION:
        found = "no format_version" if meta.get("format_version") is None else f"format {meta['format_version']!r}"
        raise ValueError(
            f"{path}: quantized checkpoint with {found}, this qgesco reads {FORMAT_VERSION}; re-create it with "
            "qgesco quantize"
        )
    model, plan = _skeleton(meta, path)
    if not plan["layers"]:
        raise ValueError(
            f"{path}: labelled W{plan['weight_bits']} but every layer is float (nothing quantized); quantize the "
            "float model again with fewer --keep-fp patterns, or use the float model"
        )
    expected = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    for name, layer in quant_layers(model):
        if layer.bits <= PACKED_BITS:
            expected[f"{name}.qweight"] = ((math.ceil(layer.qweight.numel() / 2),), torch.uint8)
    _check_header(path, expected)
    if not meta.get("sha256"):
        raise ValueError(f"{path}: quantized checkpoint without its checksum; re-create it with qgesco quantize")
    try:  # a malformed record is refused here, not when a backend is chosen
        dynamic_lpips(meta)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    tensors, _ = load_tensors(path)
    _check_values(model, tensors, path)
    model.quant_plan = plan
    model.quant_report = meta.get("provenance", {})
    return model, tensors, meta


def load_quantized(path: str | os.PathLike, device: str | torch.device = "cpu") -> UNetModel:
    """The fake-quantized model of a file written by :func:`save_quantized`, in eval mode.

    It computes in fp32 from the stored integer weights, exactly as the model that was saved.
    """
    model, tensors, _ = read_quantized(path)
    for name, layer in quant_layers(model):
        if layer.bits <= PACKED_BITS:
            tensors[f"{name}.qweight"] = unpack_int4(tensors[f"{name}.qweight"], tuple(layer.qweight.shape))
    model = model.to_empty(device="cpu")
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval()

"""Which layers get quantized, and the module swap that does it.

The *plan* is a JSON-able description — bits, every quantized layer with its op, shape,
split point and activation quantizers, the attention modules with quantized matmuls, the
layers kept in full precision — made once from the float model. ``quantize`` applies it to
a copy of the model with fitted scales; ``load_quantized`` applies the plan stored in the
checkpoint to an empty skeleton. One description for both, so a checkpoint can never
describe another network than the one calibrated.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any, TypedDict

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ..models.unet import QKVAttention, SDMResBlock, UNetModel
from .layers import FLOAT_OPS, QuantLayer, QuantQKVAttention
from .quantizers import ActQuantizer, check_bits


class LayerPlan(TypedDict, total=False):
    """One quantized Conv/Linear layer: what the skeleton needs to rebuild it without the float model."""

    op: str  # "conv2d", "conv1d" or "linear"
    weight_shape: list[int]
    split: int | None  # input channels of the first part of a decoder cat(h, skip), else None
    called: bool  # a forward pass calls it (only called layers get activation quantizers)
    act: bool  # it has activation quantizers
    conv: dict[str, Any]  # stride, padding, dilation, groups (convolutions only)


class QuantPlan(TypedDict):
    """What :func:`make_plan` decides and a quantized checkpoint stores (JSON, top-level keys)."""

    weight_bits: int
    act_bits: int | None
    symmetric: bool
    layers: dict[str, LayerPlan]
    attention: list[str]  # QKVAttention modules with quantized matmul inputs and softmax output
    fp_layers: list[str]  # layers kept in full precision


#: Plan keys that the checkpoint metadata stores at its top level.
PLAN_KEYS = tuple(QuantPlan.__annotations__)


def called_layers(model: UNetModel) -> set[str]:
    """Names of the Conv/Linear layers a forward pass really calls.

    The encoder blocks carry a SPADE norm that the published forward never calls. Its convs
    are quantized all the same (they are part of the checkpoint) but, seeing no data, get
    neither activation quantizers nor AdaRound.
    """
    param = next(model.parameters())
    side = 2 * model.config.downsample_factor  # GroupNorm needs more than one value per group
    called: set[str] = set()
    hooks = [
        m.register_forward_hook(lambda *_, name=name: called.add(name))
        for name, m in model.named_modules()
        if type(m) in FLOAT_OPS
    ]
    try:
        with torch.no_grad():
            model(
                torch.zeros(1, 3, side, side, device=param.device),
                torch.zeros(1, dtype=torch.long, device=param.device),
                torch.zeros(1, model.config.label_channels, side, side, device=param.device),
            )
    finally:
        for h in hooks:
            h.remove()
    return called


def concat_splits(model: UNetModel) -> dict[str, int]:
    """Layers whose input is ``cat(h, skip)``, with the number of channels coming from ``h``.

    In the first block of each decoder level both the first 3x3 conv (after the SPADE norm
    and SiLU, which keep the channel order) and the 1x1 skip conv read the concatenation.
    """
    splits = {}
    for name, m in model.named_modules():
        if isinstance(m, SDMResBlock) and m.concat_split is not None:
            splits[f"{name}.in_layers.{len(m.in_layers) - 1}"] = m.concat_split
            if type(m.skip_connection) in FLOAT_OPS:
                splits[f"{name}.skip_connection"] = m.concat_split
    return splits


def _kept_in_fp(names: Iterable[str], patterns: Iterable[str]) -> set[str]:
    """Layer names matched by ``patterns`` (glob, or a module prefix such as ``out``)."""
    names, kept = list(names), set()
    for pattern in patterns:
        hits = {n for n in names if fnmatch.fnmatchcase(n, pattern) or n.startswith(pattern + ".")}
        if not hits:
            raise ValueError(
                f"keep_fp pattern {pattern!r} matches no Conv/Linear layer; "
                f"layer names look like {names[0]!r} or 'output_blocks.*.skip_connection'"
            )
        kept |= hits
    return kept


def make_plan(
    model: UNetModel,
    *,
    weight_bits: int,
    act_bits: int | None,
    symmetric: bool,
    split: bool = True,
    keep_fp: Iterable[str] = (),
    quantize_attention: bool = False,
) -> QuantPlan:
    check_bits("weight_bits", weight_bits)
    if act_bits is not None:
        check_bits("act_bits", act_bits)
    if quantize_attention and act_bits is None:
        raise ValueError(
            "quantize_attention quantizes the attention matmul inputs and softmax output: it needs act_bits"
        )
    layers = {name: m for name, m in model.named_modules() if type(m) in FLOAT_OPS}
    kept = _kept_in_fp(layers, keep_fp)
    called = called_layers(model)
    splits = concat_splits(model) if split else {}
    entries: dict[str, LayerPlan] = {}
    for name, m in layers.items():
        if name in kept:
            continue
        entry: LayerPlan = {
            "op": FLOAT_OPS[type(m)],
            "weight_shape": list(m.weight.shape),
            "split": splits.get(name),
            "called": name in called,
            "act": act_bits is not None and name in called,
        }
        if entry["op"] != "linear":
            entry["conv"] = {k: list(getattr(m, k)) for k in ("stride", "padding", "dilation")} | {"groups": m.groups}
        entries[name] = entry
    if not entries:
        raise ValueError(
            f"keep_fp {list(keep_fp)} keeps all {len(layers)} Conv/Linear layers in float: nothing would be "
            "quantized, yet the file would be labelled quantized; keep fewer layers in float, or use the float model"
        )
    attention = sorted(n for n, m in model.named_modules() if isinstance(m, QKVAttention)) if quantize_attention else []
    return QuantPlan(
        weight_bits=weight_bits,
        act_bits=act_bits,
        symmetric=bool(symmetric),
        layers=entries,
        attention=attention,
        fp_layers=sorted(kept),
    )


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def apply_plan(
    model: UNetModel, plan: QuantPlan, *, fit: bool, method: str = "lp", p: float = 2.4, progress: bool = False
) -> UNetModel:
    """Swap the plan's layers in place: fitted from the float weights (``fit``) or empty, to be loaded."""
    for name, entry in tqdm(plan["layers"].items(), desc="fitting weight ranges", unit="layer", disable=not progress):
        try:
            layer = model.get_submodule(name)
        except AttributeError:
            layer = None
        if type(layer) not in FLOAT_OPS or list(layer.weight.shape) != list(entry["weight_shape"]):
            raise ValueError(
                f"quantization plan names layer {name} with weight {entry['weight_shape']}, "
                "which this model does not have: the plan was made for another architecture"
            )
        kwargs = dict(
            bits=plan["weight_bits"],
            symmetric=plan["symmetric"],
            split=entry["split"],
            act_bits=plan["act_bits"] if entry["act"] else None,
        )
        _replace(
            model,
            name,
            QuantLayer.from_float(layer, **kwargs, method=method, p=p) if fit else QuantLayer.like(layer, **kwargs),
        )
    for name in plan["attention"]:
        attention = model.get_submodule(name)
        if not isinstance(attention, QKVAttention):
            raise ValueError(f"quantization plan names attention {name}, which this model does not have")
        _replace(model, name, QuantQKVAttention.like(attention, plan["act_bits"]))
    return model


def quant_layers(module: nn.Module) -> list[tuple[str, QuantLayer]]:
    return [(n, m) for n, m in module.named_modules() if isinstance(m, QuantLayer)]


def act_quantizers(module: nn.Module) -> list[tuple[str, ActQuantizer]]:
    return [(n, m) for n, m in module.named_modules() if isinstance(m, ActQuantizer)]

"""Analytic receiver costs beyond :mod:`qgesco.models.costs`: quantized checkpoint bytes and bit-ops.

Both come from the network built on the meta device, so the published 675M-parameter model
costs nothing to measure. *Bit-ops* = multiply-adds x weight bits x activation bits, summed over
the layers that multiply (convolutions, linears, attention matmuls): the fp32 network counts
32 x 32 per MAC, a W8A8 layer 8 x 8. It is the defined counterpart of the paper's "-79 % FLOPs",
which states no formula; a weight-only runtime counts w x 32 although it multiplies in fp32.
"""

from __future__ import annotations

import math

import torch

from ..models.config import UNetConfig
from ..models.costs import ModelCosts
from ..models.unet import UNetModel
from ..quant.checkpoint import PACKED_BITS
from ..quant.swap import QuantPlan, apply_plan, make_plan, quant_layers

FP_BITS = 32


def quant_plan(cfg: UNetConfig, weight_bits: int, act_bits: int | None = None, symmetric: bool = False) -> QuantPlan:
    """The plan ``quantize`` would make for a model of ``cfg`` (every Conv/Linear, split scales), on the meta device."""
    with torch.device("meta"):
        return make_plan(
            UNetModel(cfg.replace(use_fp16=False)), weight_bits=weight_bits, act_bits=act_bits, symmetric=symmetric
        )


def stored_bytes(cfg: UNetConfig, plan: QuantPlan | None = None) -> int:
    """Tensor bytes of the checkpoint that holds a model of ``cfg`` quantized by ``plan`` (fp32 without
    one), header excluded: the project's one byte count (Table I, ``info``, bench/receiver.py), whatever
    form a backend holds the weights in (prepacked oneDNN int8 is invisible to ``state_dict``; packed int4;
    bf16). Quantized weights count one byte each up to 8 bits, two per byte at <= 4 bits, as stored."""
    with torch.device("meta"):
        model = UNetModel(cfg.replace(use_fp16=False))
        if plan:
            model = apply_plan(model, plan, fit=False)
    total = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    for _, layer in quant_layers(model):
        if layer.bits <= PACKED_BITS:
            total -= layer.qweight.numel() - math.ceil(layer.qweight.numel() / 2)
    return total


def bit_ops(costs: ModelCosts, plan: QuantPlan | None = None) -> int:
    """Bit-ops of one forward (``costs`` from :func:`~qgesco.models.costs.model_costs`): fp32 without a
    ``plan``, else each planned layer at its bits (float activations count 32) and the attention
    matmuls at ``act_bits`` where the plan quantizes them."""
    layers, attention = (plan["layers"], set(plan["attention"])) if plan else ({}, set())
    w_bits = plan["weight_bits"] if plan else FP_BITS
    a_bits = plan["act_bits"] if plan and plan["act_bits"] else FP_BITS
    total = 0
    for name, flops in costs.flops_by_module.items():
        macs = flops // 2
        if name in layers:
            total += macs * w_bits * (a_bits if layers[name]["act"] else FP_BITS)
        elif name in attention:
            total += macs * a_bits * a_bits
        else:
            total += macs * FP_BITS * FP_BITS
    return total


def bit_scaled_flops(costs: ModelCosts, plan: QuantPlan | None = None) -> float:
    """FLOPs of one guided step (two forwards), each multiply-add scaled by its bits / (32 x 32):
    :func:`bit_ops` in FLOP units, as evaluation tables report it."""
    return 2 * 2 * bit_ops(costs, plan) / FP_BITS**2

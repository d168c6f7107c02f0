"""The low-bit receiver: quantized checkpoints run with their weights (and activations) low-bit.

    from qgesco.runtime import load_runtime, export_onnx
    model = load_runtime("w8.safetensors")                       # 8-bit on CPU: int8 x int8 -> int32 (oneDNN)
    model = load_runtime("w8.safetensors", backend="weight-only")  # int8 weights, fp32 compute: the simulation exactly
    model = load_runtime("w4.safetensors")                       # packed int4 weights, fp32 compute
    model = load_runtime("w8.safetensors", policy=Int8Policy(grid_bits=8))  # the rules of ``auto``, as data
    export_onnx("w8a8.safetensors", "w8a8.onnx")                 # QDQ graph for onnxruntime

``qgesco.quant`` makes the checkpoint and simulates it (fake quantization); this package
deploys it. Both agree to float rounding; docs/runtime.md has the measurements, docs/architecture.md
the forms a quantized layer takes.
"""

from .int8 import Int8Layer, pairs_saturate
from .load import BACKENDS, backend_line, load_runtime, to_int8
from .policy import Int8Policy, default_backend, default_policy
from .weight_only import PackedQuantLayer

__all__ = [
    "BACKENDS",
    "Int8Layer",
    "Int8Policy",
    "PackedQuantLayer",
    "backend_line",
    "default_backend",
    "default_policy",
    "load_runtime",
    "pairs_saturate",
    "to_int8",
]

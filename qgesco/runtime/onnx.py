"""ONNX export of the fp32 and the quantized UNet, runnable by onnxruntime or OpenVINO on CPU.

The quantized graph is the QDQ format: every integer weight is an int8 initializer behind a
per-channel ``DequantizeLinear`` (axis 0, the checkpoint's zero points; split layers as two
input-channel blocks concatenated), every activation quantizer a ``QuantizeLinear`` ->
``DequantizeLinear`` pair on int8 with the checkpoint's scale and zero point. The graph
therefore computes exactly what the fake-quant model computes; a runtime that fuses QDQ
patterns may run the layers in integers. onnxruntime fuses only ``DQ -> Conv -> Q``, and our
convolutions feed float GroupNorms and additions, not a ``Q``, so it runs them in float
(docs/runtime.md).

Export goes through ``torch.onnx.export(dynamo=True)``; the Q/DQ nodes come from PyTorch's
``quantized_decomposed`` ops, which the exporter translates one to one. This module only swaps
the quantized layers for modules written in those ops. The batch dimension is dynamic, the
image size fixed by the model's config.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers the Q/DQ ops before the exporter builds its table)
import torch.nn as nn

from ..fileio import QUANTIZED_KIND
from ..models.unet import UNetModel
from ..quant.layers import QuantLayer, float_op
from ..quant.quantizers import ActQuantizer, int_range
from ..quant.swap import act_quantizers, quant_layers
from .int8 import pairs_saturate

INPUT_NAMES = ["x", "t", "y"]


class QDQ(nn.Module):
    """An activation quantizer as ``QuantizeLinear -> DequantizeLinear``."""

    def __init__(self, quantizer: ActQuantizer):
        super().__init__()
        self.scale, self.zero_point = float(quantizer.scale), int(quantizer.zero_point)
        self.qmin, self.qmax = int_range(quantizer.bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ops = torch.ops.quantized_decomposed
        q = ops.quantize_per_tensor(x, self.scale, self.zero_point, self.qmin, self.qmax, torch.int8)
        if (self.qmin, self.qmax) != int_range(8):
            q = q.clamp(self.qmin, self.qmax)  # QuantizeLinear saturates to int8, not to the b-bit grid
        return ops.dequantize_per_tensor(q, self.scale, self.zero_point, self.qmin, self.qmax, torch.int8)


class QDQLayer(nn.Module):
    """A :class:`QuantLayer` whose weight is ``DequantizeLinear`` of int8 initializers, one per input group."""

    def __init__(self, layer: QuantLayer):
        super().__init__()
        self.op, self.conv, self.bits = layer.op, layer.conv, layer.bits
        q = layer.qweight
        out_ch = q.shape[0]
        scales, zeros = layer.scale.reshape(-1, out_ch), layer.zero_point.reshape(-1, out_ch)
        self.groups = layer.input_groups()
        for g, (a, b) in enumerate(self.groups):
            self.register_buffer(f"qweight{g}", q[:, a:b].contiguous())
            self.register_buffer(f"scale{g}", scales[g].clone())
            self.register_buffer(f"zero_point{g}", zeros[g].to(torch.int64))
        self.bias = None if layer.bias is None else nn.Parameter(layer.bias.detach().clone(), requires_grad=False)
        self.input_quant = None if layer.input_quant is None else nn.ModuleList(QDQ(a) for a in layer.input_quant)

    @property
    def weight(self) -> torch.Tensor:
        ops, (qmin, qmax) = torch.ops.quantized_decomposed, int_range(self.bits)
        ws = [
            ops.dequantize_per_channel(
                getattr(self, f"qweight{g}"),
                getattr(self, f"scale{g}"),
                getattr(self, f"zero_point{g}"),
                0,
                qmin,
                qmax,
                torch.int8,
            )
            for g in range(len(self.groups))
        ]
        return ws[0] if len(ws) == 1 else torch.cat(ws, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_quant is not None:
            parts = [quant(x[:, a:b]) for quant, (a, b) in zip(self.input_quant, self.groups)]
            x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return float_op(self.op, x, self.weight, self.bias, self.conv)


def to_qdq(model: UNetModel) -> UNetModel:
    """Swap, in place, the fake-quant layers and activation quantizers for their Q/DQ forms."""
    for name, layer in quant_layers(model):
        model.set_submodule(name, QDQLayer(layer))
    for name, quantizer in act_quantizers(model):
        model.set_submodule(name, QDQ(quantizer))
    return model


def load_for_export(source: str | os.PathLike) -> UNetModel:
    """The model in a file (or bundled name) ready to export: fp32 as is, quantized in Q/DQ form."""
    from ..models.checkpoint import load_float_model, read_model_meta, resolve_source
    from ..quant.checkpoint import load_quantized

    path = resolve_source(source)
    if read_model_meta(path)["kind"] == QUANTIZED_KIND:
        return to_qdq(load_quantized(path))
    return load_float_model(path)


#: Protobuf's 2 GiB message limit: larger models keep their weights in ``<name>.onnx.data`` beside the graph.
PROTOBUF_LIMIT = 2**31 - 2**26


def export_onnx(
    model: UNetModel, path: str | os.PathLike, opset: int = 21, external_data: bool | None = None
) -> list[Path]:
    """Write ``model`` (fp32, or after :func:`to_qdq`) as ONNX, atomically; returns the files written.

    ``external_data`` (default: only above protobuf's 2 GiB limit) puts the weights in
    ``<name>.onnx.data`` next to the graph, which names it relatively: move both together."""
    if any(isinstance(m, (QuantLayer, ActQuantizer)) for m in model.modules()):
        raise ValueError("the model still holds fake-quant layers; pass it through to_qdq() (load_for_export does)")
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    args = (
        torch.randn(2, 3, *cfg.image_hw, generator=g),
        torch.tensor([10, 500]),
        torch.rand(2, cfg.label_channels, *cfg.image_hw, generator=g),
    )
    batch = torch.export.Dim("batch", min=1, max=1024)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notes
        exporter_log.setLevel(logging.ERROR)  # and its registry chatter (torchvision ops it skips)
        try:
            program = torch.onnx.export(
                model.eval(),
                args,
                dynamo=True,
                opset_version=opset,
                input_names=INPUT_NAMES,
                output_names=["out"],
                dynamic_shapes=({0: batch}, {0: batch}, {0: batch}),
                external_data=False,
                verbose=False,
            )
        finally:
            exporter_log.setLevel(level)
    if external_data is None:
        external_data = sum(t.numel() * t.element_size() for t in model.state_dict().values()) > PROTOBUF_LIMIT
    return save_atomically(program, Path(path), external_data)


def save_atomically(program, path: Path, external_data: bool) -> list[Path]:
    """Save in a temporary folder beside ``path`` under the final names (the graph records its data
    file's name), then rename: the data file first, the graph last, so a graph never names a missing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
        program.save(str(Path(tmp, path.name)), external_data=external_data)
        written = sorted(Path(tmp).iterdir(), key=lambda f: f.name == path.name)
        for f in written:
            os.chmod(f, 0o644)
            os.replace(f, path.with_name(f.name))
    return [path.with_name(f.name) for f in written]


def onnx_agreement(model: UNetModel, path: str | os.PathLike, batch: int = 2, seed: int = 0) -> float:
    """Relative L2 difference between ``model`` and the ONNX file run by onnxruntime on CPU, on
    random inputs. With activation quantizers, expect the size of the model's own sensitivity to
    float rounding (docs/runtime.md), not 1e-6."""
    import onnxruntime as ort

    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    x, t = torch.randn(batch, 3, *cfg.image_hw, generator=g), torch.randint(0, 1000, (batch,), generator=g)
    y = torch.rand(batch, cfg.label_channels, *cfg.image_hw, generator=g)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = torch.from_numpy(session.run(None, {"x": x.numpy(), "t": t.numpy(), "y": y.numpy()})[0])
    with torch.no_grad():
        ref = model(x, t, y)
    return ((out - ref).norm() / ref.norm().clamp(min=1e-12)).item()


class OnnxModel:
    """``model(x, t, y)`` over an onnxruntime session, so the samplers can drive it."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {"x": x.numpy(), "t": t.numpy(), "y": y.numpy()})[0]
        return torch.from_numpy(out)


def _wide_symmetric_weights(path: str | os.PathLike) -> int:
    """How many int8 weights behind a ``DequantizeLinear`` with zero points 0 reach beyond 7 bits
    (|q| > 63): those OpenVINO runs as u8 x i8, exactly only where pairs of products fit int16."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {init.name: init for init in graph.initializer if init.data_location != onnx.TensorProto.EXTERNAL}
    wide = 0
    for node in graph.node:
        if (
            node.op_type != "DequantizeLinear"
            or len(node.input) < 3
            or not {node.input[0], node.input[2]} <= inits.keys()
        ):
            continue
        q, zero = (numpy_helper.to_array(inits[name]) for name in (node.input[0], node.input[2]))
        wide += int(q.dtype == np.int8 and not zero.any() and np.abs(q.astype(np.int16)).max() > 63)
    return wide


class OpenVinoModel:
    """``model(x, t, y)`` over an exported ONNX graph compiled by OpenVINO for the CPU (``pip install
    qgesco[openvino]``), in fp32 (OpenVINO would pick bf16 on CPUs that have it). QDQ convolutions
    run in int8 only with symmetric weights; without VNNI only 7-bit ones are exact (``qgesco
    quantize --wbits 7 --abits 8 --symmetric``): 8-bit weights saturate (docs/runtime.md)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        import openvino as ov

        if pairs_saturate() and (wide := _wide_symmetric_weights(path)):
            raise ValueError(
                f"{path}: {wide} symmetric weight tensors use more than 7 bits, which OpenVINO's int8 kernels "
                "compute wrongly on this CPU (no VNNI: 16-bit pair saturation); export a file quantized with "
                "--wbits 7, or run this graph with OnnxModel"
            )
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.request.infer({"x": x.numpy(), "t": t.numpy(), "y": y.numpy()})
        return torch.from_numpy(self.request.get_output_tensor(0).data.copy())  # the request reuses its buffer

    def layer_precisions(self) -> dict[str, int]:
        """Convolutions and matrix products of the compiled graph by the precision they run in."""
        counts: dict[str, int] = {}
        for op in self.compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            kind = info["layerType"].astype(str)
            if kind in ("Convolution", "FullyConnected", "MatMul"):
                key = f"{kind} {info['runtimePrecision'].astype(str)}"
                counts[key] = counts.get(key, 0) + 1
        return counts

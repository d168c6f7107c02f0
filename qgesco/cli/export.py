"""``qgesco export``: a model file (fp32 or quantized) as an ONNX graph for onnxruntime."""

from __future__ import annotations

import argparse

from qgesco.cli._args import input_files

FORMATS = ("onnx",)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="write an fp32 or quantized model as ONNX (QDQ nodes for the integer layers), checked in onnxruntime",
        description="Export a model file, bundled model or quantized checkpoint (qgesco quantize) to ONNX opset 21 "
        "with a dynamic batch: int8 weights behind DequantizeLinear, activation quantizers as QuantizeLinear/"
        "DequantizeLinear pairs. Then run it once in onnxruntime and print its difference to the PyTorch "
        "model (docs/runtime.md).",
    )
    p.add_argument("model", help="model file, bundled model name (camvid-demo) or quantized checkpoint")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="output format (default onnx)")
    p.add_argument("--out", required=True, metavar="model.onnx")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime agreement run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import importlib.util
    import math
    import os
    from pathlib import Path

    from qgesco import validate

    validate.output_file("--out", args.out, (".onnx",), inputs=input_files(model=args.model))
    needed = ["onnx", "onnxscript"] + ([] if args.no_check else ["onnxruntime"])
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(
            f"export needs the optional package(s) {', '.join(missing)}; install them with pip install 'qgesco[onnx]'"
        )
    from qgesco.runtime.onnx import export_onnx, load_for_export, onnx_agreement

    model = load_for_export(args.model)
    validate.finite_weights(f"model {args.model}", model)
    files = export_onnx(model, args.out)
    line = f"wrote {', '.join(map(str, files))}: {sum(os.path.getsize(f) for f in files) / 2**20:.2f} MiB"
    if not args.no_check:
        difference = onnx_agreement(model, args.out)
        if not math.isfinite(difference) or difference > 1e-2:
            for f in files:
                Path(f).unlink(missing_ok=True)
            raise ValueError(
                f"onnxruntime disagrees with PyTorch (relative L2 difference {difference:.3g}); "
                f"{', '.join(map(str, files))} removed: report this with the model file"
            )
        line += f"; onnxruntime vs PyTorch, relative L2 difference {difference:.2e}"
    print(line)
    return 0

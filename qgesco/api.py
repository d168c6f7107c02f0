"""The five things a user does, each one call (re-exported by ``qgesco``)::

    model = qgesco.load_model("camvid-demo")                  # ours, quantized, or the published .pt + flags
    y = qgesco.send(labels, 12, qgesco.AWGN(10), generator=g) # sender + channel + receiver cleanup
    images = qgesco.regenerate(model, y)                      # receiver (default ddpm30, guided t >= 500)
    qmodel = qgesco.quantize(model, calib, qgesco.QuantConfig(weight_bits=8))  # calib: build_calibration_set
    result = qgesco.evaluate.evaluate(models, EvalSettings("camvid:val"), "runs/eval")  # see qgesco.evaluate

(``calib = qgesco.build_calibration_set(model, maps, qgesco.CalibrationRecipe(...))``; every run takes one
settings object.)

Only :func:`load_model` lives here: it is the one place that knows every checkpoint kind, so
that the CLI and users open any model file the same way.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from . import validate
from .fileio import QUANTIZED_KIND, digests_required
from .models.checkpoint import (
    BUNDLED,
    load_float_model,
    load_official_checkpoint,
    read_model_meta,
    resolve_source,
    source_path,
)
from .models.unet import UNetModel
from .runtime import Int8Policy, load_runtime
from .runtime.allocator import keep_freed_memory
from .runtime.bf16 import check_bf16, to_bf16


def load_model(
    path_or_name: str | os.PathLike,
    device: str | torch.device = "cpu",
    backend: str = "auto",
    require_digest: bool = False,
    policy: Int8Policy | None = None,
    **flags: Any,
) -> UNetModel:
    """Any model, in eval mode on ``device``: a bundled name (``camvid-demo``, ``camvid-demo-w8``),
    one of our ``.safetensors`` files (full precision or quantized), or a published GESCO/SDM
    ``.pt`` checkpoint together with the flags of its sampling script (``image_size=256, ...``).

    A quantized file loads into the low-bit runtime (:func:`qgesco.runtime.load_runtime`): its
    weights stay int8 / packed int4 in memory. ``backend="auto"`` takes the faster backend for the
    file (integer kernels for 8-bit files on CPU; :func:`qgesco.runtime.default_backend` says why);
    ``"weight-only"`` computes exactly what the simulated model (:func:`qgesco.quant.load_quantized`)
    computes. A full-precision file takes ``"auto"`` (fp32) or ``"bf16"`` (opt-in, CPUs with native bf16:
    its convolutions in bfloat16, :mod:`qgesco.runtime.bf16`). ``policy`` (:class:`qgesco.runtime.Int8Policy`)
    overrides the rules ``auto`` follows: grid width, layers kept weight-only, quality bar, bf16 use.

    Every file is checked against its digest; one without (a published ``.pt``, a file from before
    qgesco wrote digests) loads with a warning, or is refused with ``require_digest=True``."""
    if require_digest:
        with digests_required():
            return load_model(path_or_name, device, backend, policy=policy, **flags)
    if not isinstance(path_or_name, (str, os.PathLike)):
        raise ValueError(
            f"load_model takes a file path or a bundled name ({', '.join(BUNDLED)}), got {type(path_or_name).__name__}"
        )
    validate.device("device", str(device))  # cuda without a GPU: one line here, not torch's deep in loading
    path = source_path(path_or_name)
    if path.suffix == ".pt":
        if not flags:
            raise ValueError(
                f"{path}: a published .pt checkpoint needs the flags it was trained with, e.g. "
                "load_model(path, image_size=256, num_classes=35, num_channels=256, ...) (README)"
            )
        model = load_official_checkpoint(path, map_location=device, **flags).eval()
        keep_freed_memory(device)
        return model
    if flags:
        raise ValueError(f"flags {sorted(flags)} only apply to published .pt checkpoints; {path} stores its own config")
    path = resolve_source(path)
    if read_model_meta(path)["kind"] != QUANTIZED_KIND:
        if backend not in ("auto", "bf16"):
            raise ValueError(f"{path} is a full-precision file: backend is 'auto' (fp32) or 'bf16', got {backend!r}")
        if backend == "bf16" or (policy is not None and policy.bf16):
            check_bf16(device)
            model = to_bf16(load_float_model(path, device=device))
        else:
            model = load_float_model(path, device=device)
        keep_freed_memory(device)  # steps reuse each other's activation pages (qgesco.runtime.allocator)
        return model
    if backend == "bf16":
        raise ValueError(f"{path} is quantized: backend='bf16' is for full-precision files; use 'auto' here")
    return load_runtime(path, backend=backend, device=device, policy=policy)

"""The models an evaluation compares, and the cost columns of the paper's Table I.

A model is a file (an fp32 model from training, or a quantized checkpoint), the name of a
bundled model, or any loaded ``model(x, t, y)`` with a ``config`` (:class:`UNetConfig`), so a
low-bit runtime model can be evaluated like the others. Its Table I entries:

- **weight bits**: the quantizer's, else the parameters' float width;
- **size**: bytes of the tensors its checkpoint stores (:func:`qgesco.runtime.costs.stored_bytes`:
  int8 per weight up to 8 bits, two per byte at 4, header aside), whatever form the backend holds
  them in, in MB of 10^6 bytes as the paper's 2699 MB;
- **TFLOPs**: one classifier-free-guided step (two forwards, the paper's 13.82 for GESCO),
  :func:`qgesco.runtime.costs.bit_scaled_flops`: for a quantized model each layer's FLOPs are
  scaled by (weight bits / 32) x (input bits / 32), the bit-operation count in fp32 units (the
  paper does not state its rule).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import validate
from ..api import load_model
from ..fileio import tensors_sha256
from ..models.checkpoint import BUNDLED
from ..models.config import UNetConfig
from ..models.costs import model_costs
from ..models.unet import UNetModel
from ..runtime.costs import bit_scaled_flops, stored_bytes

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
#: Names the run's folders and grid columns use for other things.
RESERVED = {"original", "map", "received"}
CALIBRATION_LABELS = {"timestep": "Timestep", "noise+timestep": "Noise + Timestep"}


@dataclass
class EvalModel:
    """A model under evaluation: its name in tables and folders, the callable, and its Table I facts."""

    name: str
    model: Any
    info: dict[str, Any]

    @property
    def config(self) -> UNetConfig:
        return self.model.config


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name) or name in RESERVED:
        raise ValueError(
            f"model name {name!r}: use letters, digits and . _ + - (e.g. fp32, W8, W4A8), not {sorted(RESERVED)}"
        )
    return name


def default_name(source: str | os.PathLike) -> str:
    """``runs/x/w8.safetensors`` -> ``w8``; a bundled model keeps its name."""
    return str(source) if str(source) in BUNDLED else Path(source).name.split(".")[0]


def load_eval_model(name: str, source: Any, device: str | torch.device = "cpu") -> EvalModel:
    """``source``: a model file, a bundled model's name, or a loaded model with a ``config``."""
    check_name(name)
    if isinstance(source, (str, os.PathLike)):
        model, origin = load_model(source, device), str(source)
        validate.finite_weights(f"model {name!r} ({source})", model)
    else:
        model = source.to(device).eval() if isinstance(source, torch.nn.Module) else source
        origin = type(source).__name__
    if not isinstance(getattr(model, "config", None), UNetConfig):
        raise ValueError(
            f"model {name!r} ({type(model).__name__}) has no UNetConfig `config`; evaluation reads the image size "
            "and the classes from it: load models with load_model / load_quantized"
        )
    return EvalModel(name, model, describe(model, origin))


def describe(model: Any, origin: str) -> dict[str, Any]:
    """Source, precision, size, TFLOPs, calibration kind and weight digest of ``model``."""
    is_unet = isinstance(model, UNetModel)  # any other callable counts as a float model
    plan = model.quant_plan if is_unet else None
    calib = ((model.quant_report if is_unet else None) or {}).get("calibration")
    state = model.state_dict() if isinstance(model, torch.nn.Module) else None
    first = next(model.parameters(), None) if state is not None else None
    float_bits = torch.finfo(first.dtype).bits if first is not None else 32
    return {
        "source": origin,
        "kind": "quantized" if plan else "fp",
        "weight_bits": plan["weight_bits"] if plan else float_bits,
        "act_bits": plan["act_bits"] if plan else None,
        "size_mb": stored_bytes(model.config, plan) / 1e6,
        "tflops": bit_scaled_flops(_costs(model.config), plan) / 1e12,
        "calibration": None if not calib else ("timestep" if calib.get("timestep_only") else "noise+timestep"),
        "sha256": None if state is None else tensors_sha256(state),
    }


_costs = functools.lru_cache(maxsize=8)(model_costs)

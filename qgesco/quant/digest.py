"""Fingerprints that tie a quantized model and resume state to the exact run (model weights,
calibration set, settings) they belong to; built on :func:`qgesco.fileio.tensors_sha256`."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

from ..fileio import tensors_sha256


def weights_sha256(model: torch.nn.Module) -> str:
    """Identity of a float model's weights, whatever its file, name or dtype: the digest of its
    state dict in float32 (what ``quantize`` records as ``model_sha256``)."""
    return tensors_sha256({k: v.float() if v.is_floating_point() else v for k, v in model.state_dict().items()})


def fingerprint(obj: Any) -> str:
    """sha256 of a JSON-able object, independent of key order."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()

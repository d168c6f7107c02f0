"""Content digests: the checksum stored in quantized checkpoints and the fingerprints that
tie resume state to the exact run (model weights, calibration set, settings) it belongs to."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

import torch


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of ``tensors``, in name order."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def weights_sha256(model: torch.nn.Module) -> str:
    """Identity of a float model's weights, whatever its file, name or dtype: the digest of its
    state dict in float32 (what ``quantize`` records as ``model_sha256``)."""
    return tensors_sha256({k: v.float() if v.is_floating_point() else v for k, v in model.state_dict().items()})


def fingerprint(obj: Any) -> str:
    """sha256 of a JSON-able object, independent of key order."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()

"""Receiver cleanup of a noisy map before it conditions the model.

Noise scatters small values over every pixel of every sent plane; a 3x3 filter per plane
restores the blocky structure the model was trained on. ``avgmax`` (3x3 average, then
3x3 max, zero-padded at the border) is what the published GESCO sampler does; ``median``
(3x3, borders replicated) removes isolated spikes without widening regions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CLEANUPS = ("avgmax", "median", "none")


def cleanup(x: torch.Tensor, method: str = "avgmax") -> torch.Tensor:
    """Filter each (H, W) plane of ``x`` (any leading axes); same shape out."""
    if method not in CLEANUPS:
        raise ValueError(f"unknown cleanup {method!r}; choose one of {CLEANUPS}")
    if method == "none" or x.numel() == 0:
        return x
    if x.dim() < 2:
        raise ValueError(f"cleanup filters (..., H, W) planes, got shape {tuple(x.shape)}")
    planes = x.reshape(-1, 1, *x.shape[-2:])
    if method == "avgmax":
        out = F.max_pool2d(F.avg_pool2d(planes, 3, stride=1, padding=1), 3, stride=1, padding=1)
    else:
        padded = F.pad(planes, (1, 1, 1, 1), mode="replicate")
        out = padded.unfold(2, 3, 1).unfold(3, 3, 1).flatten(-2).median(-1).values
    return out.reshape(x.shape)

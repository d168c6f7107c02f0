"""Receiver cleanup of a noisy map before it conditions the model.

Noise scatters small values over every pixel of every sent plane; a 3x3 filter per plane
restores the blocky structure the model was trained on. ``avgmax`` (3x3 average, then
3x3 max, zero-padded at the border) is what the published GESCO sampler does; ``median``
(3x3, borders replicated) removes isolated spikes without widening regions. ``avgmax`` widens
every region by a pixel, so even a clean map leaves each border pixel with two planes at 1;
``argmax`` is a hard decision instead: each pixel takes the sent class plane with the largest
received value (the maximum-likelihood decision for one-hot symbols in white noise), which returns
a clean map exactly. It decides across planes, so :func:`~qgesco.channel.transmit` applies it
(:func:`hard_decision`); docs/semcom.md measures the four against each other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CLEANUPS = ("argmax", "avgmax", "median", "none")


def cleanup(x: torch.Tensor, method: str = "avgmax") -> torch.Tensor:
    """Filter each (H, W) plane of ``x`` (any leading axes); same shape out."""
    if method not in CLEANUPS:
        raise ValueError(f"unknown cleanup {method!r}; choose one of {CLEANUPS}")
    if method == "argmax":
        raise ValueError("the argmax cleanup decides across a map's planes: use transmit(..., cleanup='argmax')")
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


def hard_decision(y: torch.Tensor, sent: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Received maps (N, P, H, W) -> one-hot maps: per pixel the sent class plane (``sent``, (N, P) bool)
    with the largest value; planes past ``num_classes`` (instance edges) thresholded at 1/2."""
    scores = y[:, :num_classes].masked_fill(~sent[:, :num_classes, None, None], float("-inf"))
    classes = F.one_hot(scores.argmax(1), num_classes).permute(0, 3, 1, 2).to(y.dtype)
    return torch.cat([classes, (y[:, num_classes:] > 0.5).to(y.dtype)], 1)

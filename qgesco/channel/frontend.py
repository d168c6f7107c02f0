"""The whole sender -> channel -> receiver front-end in one call (:func:`send` from label maps,
:func:`transmit` from encoded maps).

Training (noise-aware conditioning), calibration, evaluation and the demo must all see
the same corrupted maps, so they share this function rather than re-assembling the steps.
"""

from __future__ import annotations

import torch

from .. import validate
from . import filters, presence
from .noise import Channel
from .onehot import check_y, encode


def transmit(
    y: torch.Tensor,
    channel: Channel,
    num_classes: int,
    *,
    cleanup: str = "avgmax",
    compress: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``y`` as the receiver's model gets it: same shape, dtype and device.

    With ``compress`` only the present classes' planes and the edge plane cross the
    channel (absent classes arrive as exact zeros), as in the published sampler;
    without it every plane is sent and corrupted. ``cleanup`` then filters the received planes.
    """
    check_y(y, num_classes)
    channel.check_batch(y.shape[0])
    if not compress:
        received = channel(y, generator=generator)
        if cleanup == "argmax":
            return filters.hard_decision(received, torch.ones(y.shape[:2], dtype=torch.bool), num_classes)
        return filters.cleanup(received, cleanup)
    sent = presence.compress(y, num_classes)
    received = channel(sent.symbols, generator=generator, image_index=sent.image_index)
    if cleanup == "argmax":
        return filters.hard_decision(presence.decompress(sent._replace(symbols=received)), sent.sent, num_classes)
    return presence.decompress(sent._replace(symbols=filters.cleanup(received, cleanup)))


def send(
    labels: torch.Tensor,
    num_classes: int,
    channel: Channel,
    *,
    instance: torch.Tensor | None = None,
    cleanup: str = "avgmax",
    compress: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Label maps (N, H, W) [+ instance maps] -> the received conditioning map the model gets.

    The sender's encoding (one-hot + instance edges) followed by :func:`transmit`.
    """
    validate.finite_number("num_classes", num_classes, low=1, integer=True)
    if not isinstance(channel, Channel):
        raise ValueError(
            f"channel must be a channel such as qgesco.AWGN(psnr_db), got {channel!r}; "
            "e.g. qgesco.send(labels, 12, qgesco.AWGN(10))"
        )
    if not isinstance(labels, torch.Tensor) or labels.numel() == 0:
        raise ValueError(
            f"labels must be a non-empty (N, H, W) tensor of class indices, got "
            f"{getattr(labels, 'shape', type(labels).__name__)}"
        )
    return transmit(
        encode(labels, num_classes, instance),
        channel,
        num_classes,
        cleanup=cleanup,
        compress=compress,
        generator=generator,
    )

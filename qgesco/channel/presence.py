"""Class-presence compression, the way the published GESCO sampler transmits a map.

A street scene holds a dozen or so of its dataset's classes; the planes of the absent
ones are all zero. So the sender transmits only the planes of present classes (and the
edge plane, always) plus a C-bit presence mask, and the receiver puts zero planes
back: lossless on a clean map, and channel noise lands only on what was actually sent.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .onehot import check_y


def _sent_planes(presence: torch.Tensor, label_channels: int) -> torch.Tensor:
    """The presence mask extended by the edge plane, which is always sent."""
    always = torch.ones(presence.shape[0], label_channels - presence.shape[1], dtype=torch.bool, device=presence.device)
    return torch.cat([presence, always], dim=1)


class Compressed(NamedTuple):
    """What crosses the channel for a batch of maps."""

    #: (S, H, W) real symbols: the sent planes of every image, image after image, in y's channel order.
    symbols: torch.Tensor
    #: (N, C) bool: the C-bit presence mask of each image, sent beside the symbols (as bits).
    presence: torch.Tensor
    #: Channels of the receiver's ``y``: C, or C + 1 with the instance-edge plane.
    label_channels: int

    @property
    def sent(self) -> torch.Tensor:
        """(N, label_channels) bool: which planes of ``y`` are among ``symbols``."""
        return _sent_planes(self.presence, self.label_channels)

    @property
    def image_index(self) -> torch.Tensor:
        """(S,) the image each plane of ``symbols`` belongs to, for per-image channel parameters."""
        sent = self.sent
        return torch.arange(sent.shape[0], device=sent.device).repeat_interleave(sent.sum(1))


def compress(y: torch.Tensor, num_classes: int) -> Compressed:
    """Keep the planes of classes present in each image (any non-zero pixel) and the edge plane."""
    check_y(y, num_classes)
    presence = y[:, :num_classes].flatten(2).ne(0).any(-1)
    return Compressed(y[_sent_planes(presence, y.shape[1])], presence, y.shape[1])


def decompress(packed: Compressed) -> torch.Tensor:
    """The receiver's ``y``: the received planes in place, zero planes for absent classes."""
    sent = packed.sent
    if packed.symbols.dim() != 3 or packed.symbols.shape[0] != int(sent.sum()):
        raise ValueError(
            f"the presence mask announces {int(sent.sum())} planes but {tuple(packed.symbols.shape)} symbols "
            "arrived; symbols must be the (S, H, W) planes of compress(), in order"
        )
    y = packed.symbols.new_zeros(sent.shape[0], sent.shape[1], *packed.symbols.shape[1:])
    y[sent] = packed.symbols
    return y

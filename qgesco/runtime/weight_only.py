"""Weight-only low-bit layers: integer weights in memory, dequantized layer by layer per forward.

An int8 checkpoint needs nothing new: :class:`~qgesco.quant.QuantLayer` already holds int8
``qweight`` and dequantizes it for each call, and the runtime loader hands it the stored
tensors without a float copy. Weights of at most 4 bits are the one addition: they stay
packed two per byte, as in the file, and are unpacked only for the duration of their layer's
call (:class:`PackedQuantLayer`), so at most one layer's int8 and float weights exist at a time.
Device-agnostic (plain tensor ops), but only run on CPU so far.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch

from ..quant.checkpoint import unpack_int4
from ..quant.layers import QuantLayer


class PackedQuantLayer(QuantLayer):
    """A :class:`QuantLayer` whose ``qweight`` holds ``ceil(numel / 2)`` packed bytes between calls."""

    @classmethod
    def like(cls, layer: QuantLayer) -> PackedQuantLayer:
        """An empty packed layer shaped like ``layer`` (on ``layer``'s device: meta while loading)."""
        act_bits = layer.input_quant[0].bits if layer.input_quant is not None else None
        with torch.device(layer.qweight.device):
            new = cls(
                layer.op,
                tuple(layer.qweight.shape),
                bias=layer.bias is not None,
                bits=layer.bits,
                symmetric=layer.symmetric,
                split=layer.split,
                act_bits=act_bits,
                conv=layer.conv,
            )
            new.weight_shape = tuple(layer.qweight.shape)
            new.qweight = torch.zeros(math.ceil(layer.qweight.numel() / 2), dtype=torch.uint8)
        return new

    @contextlib.contextmanager
    def unpacked(self) -> Iterator[None]:
        """``qweight`` as int8 values for the duration of the block (re-entrant)."""
        packed = self.qweight
        if packed.dtype == torch.uint8:
            self.qweight = unpack_int4(packed, self.weight_shape)
        try:
            yield
        finally:
            self.qweight = packed

    @property
    def weight(self) -> torch.Tensor:
        with self.unpacked():
            return QuantLayer.weight.fget(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.unpacked():
            return super().forward(x)

    def extra_repr(self) -> str:
        return f"{self.op}, {self.weight_shape}, bits={self.bits} packed, symmetric={self.symmetric}" + (
            f", split={self.split}" if self.split is not None else ""
        )

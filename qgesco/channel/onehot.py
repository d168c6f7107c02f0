"""Sender side: label map (+ instance map) -> the model's conditioning tensor ``y``.

The receiver's UNet is conditioned on exactly this layout, so the sender builds it the
way the published GESCO/SDM code does: C one-hot class channels, then, when an instance
map exists, one channel marking instance boundaries (N, C[+1], H, W), float32.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .. import validate

#: A map from label values to a class index, or to ``None`` for "no class" (all-zero pixel).
IgnoreMap = Mapping[int, int | None]


def _integer_map(name: str, values, fix: str) -> torch.Tensor:
    """``values`` as an (N, H, W) integer tensor, or one clear error."""
    values = torch.as_tensor(values)
    if values.dtype == torch.bool or values.is_floating_point() or values.is_complex():
        raise ValueError(f"{name} must hold integer ids, got dtype {values.dtype}; {fix}")
    if values.dim() != 3:
        raise ValueError(
            f"{name} must be (N, H, W), got shape {tuple(values.shape)}; "
            "add a batch axis with m[None] or drop a channel axis with m[:, 0]"
        )
    return values


def class_indices(labels, num_classes: int, ignore: IgnoreMap | None = None) -> torch.Tensor:
    """Validated class index per pixel, (N, H, W) int64, with -1 where ``ignore`` says "no class".

    ``ignore`` maps label values (typically outside ``0..C-1``, e.g. 255 or CamVid's
    "Unlabelled") to a class index or to ``None``. Any other value outside ``0..C-1``
    is an error rather than a silent clamp, because it means the wrong class count.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    labels = _integer_map(
        "label map", labels, "labels are class indices; do not normalise them, pass labels.long()"
    ).long()
    ignore = dict(ignore or {})
    for raw, cls in ignore.items():
        if cls is not None and not (isinstance(cls, int) and 0 <= cls < num_classes):
            raise ValueError(
                f"ignore maps label {raw} to {cls!r}; use a class index in 0..{num_classes - 1} or None (no class)"
            )
    keys = torch.tensor(sorted(ignore), dtype=torch.long, device=labels.device)
    bad = ((labels < 0) | (labels >= num_classes)) & ~torch.isin(labels, keys)
    if bad.any():
        values = torch.unique(labels[bad]).tolist()
        shown = ", ".join(map(str, values[:8])) + (", ..." if len(values) > 8 else "")
        raise ValueError(
            f"label values {shown} are outside 0..{num_classes - 1}; give the model's class count (--num-classes), "
            f"or map void labels to no class with --ignore {values[0]} (or to a class: --ignore {values[0]}:CLASS; "
            f"in Python ignore={{{values[0]}: None}})"
        )
    indices = labels.clone()
    for raw, cls in ignore.items():
        indices[labels == raw] = -1 if cls is None else cls
    return indices


def instance_edges(instance) -> torch.Tensor:
    """(N, 1, H, W) bool: a pixel is an edge if any 4-neighbour has a different instance id."""
    instance = _integer_map("instance map", instance, "instance ids are integers; pass instance.long()")
    edge = torch.zeros_like(instance, dtype=torch.bool)
    across = instance[:, :, 1:] != instance[:, :, :-1]
    edge[:, :, 1:] |= across
    edge[:, :, :-1] |= across
    down = instance[:, 1:, :] != instance[:, :-1, :]
    edge[:, 1:, :] |= down
    edge[:, :-1, :] |= down
    return edge[:, None]


def encode(labels, num_classes: int, instance=None, *, ignore: IgnoreMap | None = None) -> torch.Tensor:
    """The model's ``y``: C one-hot channels, plus the instance-edge channel if ``instance`` is given.

    A model trained with an edge channel but used on data without instance maps can be
    given the label map itself as ``instance``: its edges are then the class boundaries.
    """
    indices = class_indices(labels, num_classes, ignore)
    n, h, w = indices.shape
    y = torch.zeros(n, num_classes, h, w, device=indices.device)
    y.scatter_(1, indices.clamp(min=0)[:, None], (indices >= 0)[:, None].float())
    if instance is None:
        return y
    edges = instance_edges(instance)
    if edges.shape[0] != n or edges.shape[2:] != indices.shape[1:]:
        raise ValueError(
            f"instance map has shape {(edges.shape[0], *edges.shape[2:])} but the label map has "
            f"{tuple(indices.shape)}; both must describe the same images at the same size"
        )
    return torch.cat([y, edges.to(y)], dim=1)


def check_y(y: torch.Tensor, num_classes: int) -> None:
    """Raise unless ``y`` is a float (N, C or C+1, H, W) map, the layout :func:`encode` makes."""
    if not isinstance(y, torch.Tensor) or not y.is_floating_point():
        raise ValueError(
            f"y must be a float tensor (N, C[+1], H, W) as made by encode(), got {type(y).__name__} "
            f"{getattr(y, 'dtype', '')}"
        )
    if y.dim() != 4 or y.shape[1] not in (num_classes, num_classes + 1):
        raise ValueError(
            f"y must be (N, {num_classes} classes [+1 edge channel], H, W), got shape {tuple(y.shape)}; "
            "is num_classes the model's class count?"
        )
    validate.finite_tensor("y", y)

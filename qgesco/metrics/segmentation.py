"""mIoU and pixel accuracy from integer label maps, accumulated over batches in a confusion matrix.

Accumulating counts (not per-batch scores) makes the result independent of how a dataset
is split into batches, which is how segmentation benchmarks define the numbers.
"""

from __future__ import annotations

import numpy as np
import torch


def _labels(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(
            f"{name}: expected integer class indices, got {t.dtype}; take argmax over the class axis first"
        )
    return t.long()


class ConfusionMatrix:
    """Counts ``matrix[target, pred]`` over every pixel whose target is not ``ignore_index``."""

    def __init__(self, num_classes: int, ignore_index: int | None = None) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred, target) -> ConfusionMatrix:
        """Add a batch of label maps (same shape; torch tensors or numpy arrays, any device)."""
        pred = _labels(pred, "pred")
        target = _labels(target, "target").to(pred.device)
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
        if self.ignore_index is not None:
            keep = target != self.ignore_index
            pred, target = pred[keep], target[keep]
        n = self.num_classes
        for name, t in (("pred", pred), ("target", target)):
            if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
                hint = "" if name == "pred" else "; pass ignore_index for the void/unlabelled class"
                raise ValueError(f"{name} has labels outside [0, {n - 1}] (found {int(t.min())}..{int(t.max())}){hint}")
        counts = torch.bincount((target * n + pred).flatten(), minlength=n * n)
        self.matrix += counts.view(n, n).cpu().numpy()
        return self

    def iou(self) -> np.ndarray:
        """Per-class IoU; NaN for classes absent from both target and prediction."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(axis=0) + self.matrix.sum(axis=1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def miou(self) -> float:
        """Mean IoU over the classes that occur (in target or prediction)."""
        iou = self.iou()
        if np.isnan(iou).all():
            raise ValueError("no labelled pixels counted yet; mIoU is undefined")
        return float(np.nanmean(iou))

    def pixel_accuracy(self) -> float:
        """Correct pixels / labelled pixels."""
        total = self.matrix.sum()
        if total == 0:
            raise ValueError("no labelled pixels counted yet; pixel accuracy is undefined")
        return float(np.trace(self.matrix) / total)


def miou(pred, target, num_classes: int, ignore_index: int | None = None) -> float:
    """mIoU of one batch; for a dataset, accumulate with :class:`ConfusionMatrix`."""
    return ConfusionMatrix(num_classes, ignore_index).update(pred, target).miou()


def pixel_accuracy(pred, target, num_classes: int, ignore_index: int | None = None) -> float:
    """Pixel accuracy of one batch; for a dataset, accumulate with :class:`ConfusionMatrix`."""
    return ConfusionMatrix(num_classes, ignore_index).update(pred, target).pixel_accuracy()

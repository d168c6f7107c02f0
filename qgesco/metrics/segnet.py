"""A small CamVid segmentation network for semantic fidelity: segment a regenerated image and
compare the labels with the semantic map that was transmitted (mIoU, pixel accuracy).

    from qgesco.metrics import ConfusionMatrix, segment
    cm = ConfusionMatrix(12).update(segment((generated + 1) / 2), sent_label)
    cm.miou(), cm.pixel_accuracy()

The network is a compact UNet trained from scratch on CamVid at 48x64, the demo model's
resolution (``bench/train_segnet.py``); its weights ship in ``qgesco/assets``. It predicts
all 12 CamVid classes, Unlabelled included, because the transmitted maps contain it too.
Other sizes are resized to 48x64 and the logits back, so accuracy is only known at 48x64.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from qgesco.fileio import load_tensors
from qgesco.metrics.images import as_image_batch

#: The bundled weights (``python bench/train_segnet.py`` writes them).
WEIGHTS = Path(__file__).resolve().parents[1] / "assets" / "segnet_camvid.safetensors"
#: The (H, W) the bundled weights were trained and evaluated at.
TRAIN_HW = (48, 64)


def _conv_bn_relu(cin: int, cout: int, dilation: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class SegNet(nn.Module):
    """UNet: per level two 3x3 conv-BN-ReLU, 2x max-pool down, bilinear up + skip concat.

    The deepest level uses dilation 2, so at 48x64 its receptive field spans the whole image:
    sky, road and facades are told apart by where they are as much as by their colour.
    """

    def __init__(self, num_classes: int = 12, widths: tuple[int, ...] = (24, 48, 96, 160)) -> None:
        super().__init__()
        if len(widths) < 2:
            raise ValueError(f"widths needs at least two levels, got {widths}")
        self.num_classes = num_classes
        self.widths = tuple(widths)
        last = len(widths) - 1
        self.down = nn.ModuleList(
            nn.Sequential(
                *_conv_bn_relu(cin, cout, 2 if i == last else 1), *_conv_bn_relu(cout, cout, 2 if i == last else 1)
            )
            for i, (cin, cout) in enumerate(zip((3,) + self.widths[:-1], self.widths))
        )
        self.up = nn.ModuleList(
            nn.Sequential(*_conv_bn_relu(deep + skip, skip), *_conv_bn_relu(skip, skip))
            for deep, skip in zip(self.widths[:0:-1], self.widths[-2::-1])
        )
        self.head = nn.Conv2d(self.widths[0], num_classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits (N, C, H, W) for images (N, 3, H, W) in [0, 1]."""
        x = images * 2 - 1  # the data module's [-1, 1], which training fed
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)

    def config(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "widths": list(self.widths)}

    @classmethod
    def pretrained(cls, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> SegNet:
        """The bundled CamVid weights, frozen, in eval mode, on ``device`` in ``dtype``; ``.meta`` holds their
        provenance."""
        return cls.load(WEIGHTS, device, dtype)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> SegNet:
        """Weights written by ``bench/train_segnet.py``; one clear error if missing or unusable."""
        fix = "reinstall qgesco from a full checkout, or re-create it with `python bench/train_segnet.py`"
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"segmentation weights missing at {path}; {fix}")
        try:
            tensors, meta = load_tensors(path)
            model = cls(**meta["config"])
            model.load_state_dict(tensors, strict=True)
        except (ValueError, KeyError, TypeError, RuntimeError) as e:
            raise ValueError(
                f"{path}: unusable segmentation weights ({type(e).__name__}: {' '.join(str(e).split())[:200]}); {fix}"
            ) from None
        model.meta = meta
        return model.eval().requires_grad_(False).to(device=device, dtype=dtype)

    @torch.inference_mode()
    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """int64 labels (N, H, W) for float RGB images in [0, 1], (N, 3, H, W) or (3, H, W).

        Any other size than :data:`TRAIN_HW` is resized to it (bilinear, antialiased) and the
        logits back (bilinear), so the network always sees the scale it was trained on.
        """
        x = as_image_batch(images)
        hw = tuple(x.shape[-2:])
        p = next(self.parameters())
        x = x.to(device=p.device, dtype=p.dtype)
        if hw != TRAIN_HW:
            x = F.interpolate(x, size=TRAIN_HW, mode="bilinear", align_corners=False, antialias=True)
        logits = self(x)
        if hw != TRAIN_HW:
            logits = F.interpolate(logits, size=hw, mode="bilinear", align_corners=False)
        return logits.argmax(dim=1).to(images.device)


@functools.lru_cache(maxsize=4)
def _pretrained(device: str, dtype: torch.dtype) -> SegNet:
    return SegNet.pretrained(device, dtype)


def segment(images: torch.Tensor) -> torch.Tensor:
    """CamVid labels (N, H, W), int64 in 0..11, for float RGB images in [0, 1] (N, 3, H, W).

    The bundled network is loaded once per process for each (device, dtype) of the input and
    runs on the images' device in their dtype. Accuracy is measured at 48x64 (docs/metrics.md).
    """
    as_image_batch(images)
    return _pretrained(str(images.device), images.dtype).segment(images)

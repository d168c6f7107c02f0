"""Resize, crop and flip shared by every dataset.

A scene is first resized to :attr:`SceneTransform.resize_hw` — ``image_hw`` enlarged by
``crop_margin`` — and then cut to exactly ``image_hw``: a random window plus a random
mirror when training, the centre window otherwise. The resize is the expensive, fixed part
(datasets cache its output); the crop is a cheap per-item slice, so augmentation costs
nothing on top of the cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

#: Default enlargement before a training crop: enough for varied crops, small enough that the
#: crop still shows nearly the whole scene at the scale evaluation sees.
TRAIN_CROP_MARGIN = 0.125


def resize_nearest(array: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a (H, W) map, sampling at pixel centres like PIL does.

    Done in numpy so label and instance maps of any integer width (8-bit labels, Cityscapes'
    16/32-bit instance ids) go through the same code and stay aligned with each other.
    """
    src_h, src_w = array.shape[:2]
    rows = ((np.arange(hw[0]) + 0.5) * (src_h / hw[0])).astype(np.intp)
    cols = ((np.arange(hw[1]) + 0.5) * (src_w / hw[1])).astype(np.intp)
    return array[rows[:, None], cols[None, :]]


@dataclass(frozen=True)
class SceneTransform:
    """Resize to ``image_hw`` (+ ``crop_margin``), then crop back to ``image_hw``.

    ``crop_margin`` defaults to :data:`TRAIN_CROP_MARGIN` when ``train`` and to 0 (an exact
    resize) otherwise; give it explicitly to evaluate on centre crops at the training scale.
    """

    image_hw: tuple[int, int]
    train: bool = False
    crop_margin: float | None = None

    def __post_init__(self) -> None:
        hw = tuple(self.image_hw)
        if len(hw) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in hw):
            raise ValueError(f"image_hw must be two positive integers (height, width), got {self.image_hw!r}")
        object.__setattr__(self, "image_hw", (int(hw[0]), int(hw[1])))
        if self.crop_margin is not None and not 0 <= self.crop_margin <= 1:
            raise ValueError(f"crop_margin must lie in [0, 1], got {self.crop_margin}")

    @property
    def margin(self) -> float:
        if self.crop_margin is not None:
            return self.crop_margin
        return TRAIN_CROP_MARGIN if self.train else 0.0

    @property
    def resize_hw(self) -> tuple[int, int]:
        return tuple(round(v * (1 + self.margin)) for v in self.image_hw)

    def resize(
        self, image: Image.Image, label: np.ndarray, instance: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Image bicubic (PIL's antialiased filter), label and instance nearest, all to ``resize_hw``."""
        h, w = self.resize_hw
        rgb = np.asarray(image.convert("RGB").resize((w, h), Image.Resampling.BICUBIC))
        return rgb, resize_nearest(label, (h, w)), None if instance is None else resize_nearest(instance, (h, w))

    def crop_flip(
        self,
        image: np.ndarray,
        label: np.ndarray,
        instance: np.ndarray | None,
        rng: np.random.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Cut ``image_hw`` out of resized arrays: random window and mirror when training, centre otherwise."""
        (h, w), (big_h, big_w) = self.image_hw, image.shape[:2]
        if self.train:
            if rng is None:
                raise ValueError("a training transform needs rng for its random crop and flip")
            top, left = int(rng.integers(big_h - h + 1)), int(rng.integers(big_w - w + 1))
            flip = bool(rng.random() < 0.5)
        else:
            top, left, flip = (big_h - h) // 2, (big_w - w) // 2, False

        def cut(array: np.ndarray | None) -> np.ndarray | None:
            if array is None:
                return None
            array = array[top : top + h, left : left + w]
            return array[:, ::-1] if flip else array

        return cut(image), cut(label), cut(instance)

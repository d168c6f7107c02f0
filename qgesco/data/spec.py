"""Dataset spec strings, so that every CLI names data the same way: ``camvid:train``,
``cityscapes:val``, ``synthetic:N`` and ``synthetic:N:cityscapes``."""

from __future__ import annotations

import os

from qgesco.data.datasets import CamVid, Cityscapes, SceneDataset
from qgesco.data.synthetic import SyntheticScenes

SPEC_FORMS = (
    "camvid:SPLIT, cityscapes:SPLIT (SPLIT: train, val, test), "
    "synthetic:N or synthetic:N:SCHEME (SCHEME: camvid, cityscapes)"
)


def open_dataset(
    spec: str,
    root: str | os.PathLike | None = None,
    *,
    image_hw: tuple[int, int],
    train: bool = False,
    seed: int = 0,
    crop_margin: float | None = None,
    cache: bool = True,
) -> SceneDataset:
    """The dataset a spec string names. ``root`` overrides where CamVid/Cityscapes are looked for
    (see :func:`qgesco.data.find_root`); ``train`` turns on random crops and flips."""
    name, _, rest = spec.partition(":")
    if name in ("camvid", "cityscapes"):
        if not rest:
            raise ValueError(f"dataset spec {spec!r} lacks a split; write {name}:train or {name}:val")
        kind = CamVid if name == "camvid" else Cityscapes
        return kind(root, rest, image_hw=image_hw, train=train, seed=seed, crop_margin=crop_margin, cache=cache)
    if name == "synthetic":
        count, _, scheme = rest.partition(":")
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"dataset spec {spec!r}: give the number of scenes, e.g. synthetic:100")
        if root is not None:
            raise ValueError("synthetic scenes are generated, not read: drop the root")
        return SyntheticScenes(
            int(count), image_hw=image_hw, scheme=scheme or "camvid", train=train, seed=seed, crop_margin=crop_margin
        )
    raise ValueError(f"unknown dataset spec {spec!r}; use {SPEC_FORMS}")

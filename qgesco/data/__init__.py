"""Street-scene data: Cityscapes and CamVid from disk, procedural synthetic scenes, shared
transforms, batching, and a checker for dataset trees.

Every dataset yields ``Sample(image, label, instance, name)`` — image float32 (3, H, W) in
[-1, 1], label int64 (H, W) in 0..num_classes-1, instance int64 (H, W) or None — and exposes
``num_classes``, ``class_names`` and ``has_instances``. Turning labels into the model's
one-hot + edge input is :mod:`qgesco.channel`'s job, not this package's.

    from qgesco.data import open_dataset, make_loader
    ds = open_dataset("camvid:train", image_hw=(72, 96), train=True)
    for batch in make_loader(ds, batch_size=16, epoch=0, shuffle=True):
        ...
"""

from qgesco.data.check import CheckReport, SplitSummary, check_dataset
from qgesco.data.classes import CAMVID_CLASSES, CITYSCAPES_CLASSES, CITYSCAPES_INSTANCE_CLASSES, scheme_classes
from qgesco.data.datasets import (
    Batch,
    CamVid,
    Cityscapes,
    FolderScenes,
    Sample,
    SceneDataset,
    collate,
    find_root,
    make_loader,
)
from qgesco.data.layouts import Problem
from qgesco.data.spec import open_dataset
from qgesco.data.synthetic import Scene, SyntheticScenes, street_scene
from qgesco.data.transforms import SceneTransform

__all__ = [
    "CAMVID_CLASSES",
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_INSTANCE_CLASSES",
    "Batch",
    "CamVid",
    "CheckReport",
    "Cityscapes",
    "FolderScenes",
    "Problem",
    "Sample",
    "Scene",
    "SceneDataset",
    "SceneTransform",
    "SplitSummary",
    "SyntheticScenes",
    "check_dataset",
    "collate",
    "find_root",
    "make_loader",
    "open_dataset",
    "scheme_classes",
    "street_scene",
]

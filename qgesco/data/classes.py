"""The two class schemes label maps use: CamVid's 11 classes + Unlabelled, and Cityscapes' label ids."""

from __future__ import annotations

#: CamVid (SegNet copy) class indices. Unlabelled stays a class so that every pixel has one.
CAMVID_CLASSES: tuple[str, ...] = (
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
    "Unlabelled",
)

#: Cityscapes label ids 0..33 as classes, as the published GESCO/SDM loader feeds
#: ``*_gtFine_labelIds.png`` to a 35-channel model. Index 34 is the table's 35th entry
#: (license plate, id -1 in the official table); it never occurs in labelIds files.
CITYSCAPES_CLASSES: tuple[str, ...] = (
    "unlabeled",
    "ego vehicle",
    "rectification border",
    "out of roi",
    "static",
    "dynamic",
    "ground",
    "road",
    "sidewalk",
    "parking",
    "rail track",
    "building",
    "wall",
    "fence",
    "guard rail",
    "bridge",
    "tunnel",
    "pole",
    "polegroup",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "caravan",
    "trailer",
    "train",
    "motorcycle",
    "bicycle",
    "license plate",
)

#: Cityscapes classes whose instanceIds pixels read ``label_id * 1000 + k``; every other
#: pixel of an instanceIds file holds its plain label id.
CITYSCAPES_INSTANCE_CLASSES: frozenset[int] = frozenset(range(24, 34))

SCHEMES: dict[str, tuple[str, ...]] = {"camvid": CAMVID_CLASSES, "cityscapes": CITYSCAPES_CLASSES}


def scheme_classes(scheme: str) -> tuple[str, ...]:
    """Class names of ``scheme``; a clear error for an unknown one."""
    try:
        return SCHEMES[scheme]
    except KeyError:
        raise ValueError(f"unknown class scheme {scheme!r}; use one of {', '.join(SCHEMES)}") from None

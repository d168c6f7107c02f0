"""Where each dataset keeps its files, how images pair with labels, and what makes a pair usable.

The datasets and the checker both pair files through :meth:`Layout.scan` and read them
through :func:`read_pair`, so the checker reports exactly the files a dataset would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from qgesco.data.classes import CAMVID_CLASSES, CITYSCAPES_CLASSES


@dataclass(frozen=True)
class ScenePair:
    """The files of one scene; ``name`` identifies it within its split."""

    name: str
    image: Path
    label: Path
    instance: Path | None = None


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset tree, tied to the file (or folder) it concerns."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class Layout:
    """A dataset's folder layout and class scheme; folder names take ``{split}``."""

    format: str
    class_names: tuple[str, ...]
    image_dir: str
    label_dir: str
    #: Glob below the split folder (``*/*`` where files sit in per-city folders).
    glob: str
    image_suffix: str
    label_suffix: str
    instance_suffix: str | None = None
    #: Splits a complete copy has (the checker reports them missing) and ones that may be absent.
    required_splits: tuple[str, ...] = ("train", "val")
    optional_splits: tuple[str, ...] = ("test",)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def has_instances(self) -> bool:
        return self.instance_suffix is not None

    @property
    def splits(self) -> tuple[str, ...]:
        return self.required_splits + self.optional_splits

    @property
    def description(self) -> str:
        """The expected files, for error messages."""
        suffixes = [self.image_suffix, self.label_suffix] + ([self.instance_suffix] if self.instance_suffix else [])
        folders = [self.image_dir] + [self.label_dir] * (len(suffixes) - 1)
        files = ", ".join(f"{d}/{self.glob}{s}".format(split="SPLIT") for d, s in zip(folders, suffixes))
        return f"{files} (SPLIT: {', '.join(self.splits)})"

    def split_dirs(self, root: Path, split: str) -> tuple[Path, Path]:
        """The image folder and label folder of ``split``."""
        return root / self.image_dir.format(split=split), root / self.label_dir.format(split=split)

    def scan(self, root: Path, split: str) -> tuple[list[ScenePair], list[Problem]]:
        """Pairs of ``split`` sorted by name, and every file or folder that has no partner."""
        if split not in self.splits:
            raise ValueError(f"{self.format} has no split {split!r}; use one of {', '.join(self.splits)}")
        image_dir, label_dir = self.split_dirs(root, split)
        problems = [Problem(d, "missing folder") for d in (image_dir, label_dir) if not d.is_dir()]
        if problems:
            return [], problems
        images = _by_name(image_dir, self.glob, self.image_suffix)
        labels = _by_name(label_dir, self.glob, self.label_suffix)
        instances = _by_name(label_dir, self.glob, self.instance_suffix) if self.instance_suffix else {}
        pairs, problems = [], []
        for name in sorted(images.keys() | labels.keys()):
            if name not in labels:
                problems.append(Problem(images[name], "image without label"))
            elif name not in images:
                problems.append(Problem(labels[name], "label without image"))
            elif self.instance_suffix and name not in instances:
                problems.append(Problem(labels[name], f"label without instance map (*{self.instance_suffix})"))
            else:
                pairs.append(ScenePair(name, images[name], labels[name], instances.get(name)))
        return pairs, problems


def _by_name(folder: Path, glob: str, suffix: str) -> dict[str, Path]:
    return {p.name[: -len(suffix)]: p for p in folder.glob(glob + suffix) if p.is_file()}


CAMVID = Layout(
    "camvid",
    CAMVID_CLASSES,
    image_dir="{split}",
    label_dir="{split}annot",
    glob="*",
    image_suffix=".png",
    label_suffix=".png",
)
CITYSCAPES = Layout(
    "cityscapes",
    CITYSCAPES_CLASSES,
    image_dir="leftImg8bit/{split}",
    label_dir="gtFine/{split}",
    glob="*/*",
    image_suffix="_leftImg8bit.png",
    label_suffix="_gtFine_labelIds.png",
    instance_suffix="_gtFine_instanceIds.png",
)
LAYOUTS: dict[str, Layout] = {layout.format: layout for layout in (CAMVID, CITYSCAPES)}


def get_layout(format: str) -> Layout:
    try:
        return LAYOUTS[format]
    except KeyError:
        raise ValueError(f"unknown dataset format {format!r}; use one of {', '.join(LAYOUTS)}") from None


#: PIL modes that hold one integer per pixel (``P``: palette PNGs store class indices too).
_INDEX_MODES = ("L", "P", "I", "I;16")


class DataFileError(ValueError):
    """A dataset file that cannot be used; ``path`` and ``reason`` apart so reports can tabulate them."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def read_image(path: Path) -> Image.Image:
    """A fully decoded picture."""
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataFileError(path, f"unreadable ({e})") from None


def read_label(path: Path) -> np.ndarray:
    """Class indices of a label PNG as (H, W) integers, refusing colour-coded label pictures."""
    return _read_index_map(path, "label")


def read_instance(path: Path) -> np.ndarray:
    """An instance-id PNG (Cityscapes: 16-bit, ``label_id * 1000 + k``) as (H, W) int32."""
    return _read_index_map(path, "instance map").astype(np.int32)


def _read_index_map(path: Path, what: str) -> np.ndarray:
    image = read_image(path)
    if image.mode not in _INDEX_MODES:
        raise DataFileError(
            path, f"{what} has PIL mode {image.mode}; {what}s must hold one integer per pixel, not colours"
        )
    return np.asarray(image)


@dataclass
class PairContents:
    """What :func:`read_pair` could read of a scene (None where unreadable) and what is wrong with it."""

    image: Image.Image | None
    label: np.ndarray | None
    instance: np.ndarray | None
    problems: list[Problem]


def read_pair(pair: ScenePair, num_classes: int) -> PairContents:
    """Read a scene's files and check them against each other and the class count."""
    problems: list[Problem] = []

    def attempt(read, path):
        try:
            return read(path)
        except DataFileError as e:
            problems.append(Problem(e.path, e.reason))
            return None

    image = attempt(read_image, pair.image)
    label = attempt(read_label, pair.label)
    instance = attempt(read_instance, pair.instance) if pair.instance is not None else None
    if label is not None and (label.max() >= num_classes or label.min() < 0):
        bad = (label < 0) | (label >= num_classes)
        values = ", ".join(str(v) for v in np.unique(label[bad])[:8])
        problems.append(
            Problem(pair.label, f"label values {values} outside 0..{num_classes - 1} ({int(bad.sum())} pixels)")
        )
    # Sizes are compared with the image (or, if unreadable, the label), so one odd file is one problem.
    if image is not None:
        reference = ("image", (image.height, image.width))
    else:
        reference = ("label", None if label is None else label.shape)
    for what, path, array in (("label", pair.label, label), ("instance map", pair.instance, instance)):
        if array is not None and reference[1] is not None and what != reference[0] and array.shape != reference[1]:
            problems.append(
                Problem(path, f"{what} is {_hw(array.shape)} but its {reference[0]} is {_hw(reference[1])}")
            )
    return PairContents(image, label, instance, problems)


def _hw(shape: tuple[int, ...]) -> str:
    return f"{shape[0]}x{shape[1]}"

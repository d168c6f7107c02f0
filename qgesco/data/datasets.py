"""Datasets of street scenes as tensors: CamVid and Cityscapes from disk, batching, loaders.

Every dataset yields :class:`Sample` ``(image, label, instance, name)``: the image as float32
(3, H, W) in [-1, 1], the label as int64 (H, W) class indices, the instance ids as int64
(H, W) or None. Training augmentation draws from ``numpy.random.default_rng([seed, epoch,
index])``, so an item depends only on those three numbers — not on worker count, worker
order or any global RNG — and :func:`make_loader` seeds the shuffle the same way.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, NamedTuple

import numpy as np
import torch

from qgesco.data.cache import Decoded, SceneArrays, cached_scene_arrays
from qgesco.data.layouts import CAMVID, CITYSCAPES, Layout, ScenePair, read_pair
from qgesco.data.transforms import SceneTransform

#: The repository root (flat layout): ``../shared`` beside it holds the project's datasets.
_REPO = Path(__file__).resolve().parents[2]


class Sample(NamedTuple):
    """One scene: image float32 (3, H, W) in [-1, 1], label int64 (H, W), instance int64 (H, W) or None."""

    image: torch.Tensor
    label: torch.Tensor
    instance: torch.Tensor | None
    name: str


class Batch(NamedTuple):
    """Stacked samples: (B, 3, H, W), (B, H, W), (B, H, W) or None, and the B names."""

    image: torch.Tensor
    label: torch.Tensor
    instance: torch.Tensor | None
    name: list[str]


def collate(samples: Sequence[Sample]) -> Batch:
    """Stack samples into a :class:`Batch`; instances stay None for datasets without them."""
    with_instances = {s.instance is not None for s in samples}
    if len(with_instances) != 1:
        raise ValueError("cannot batch samples with and without instance maps; use one dataset per loader")
    return Batch(
        torch.stack([s.image for s in samples]),
        torch.stack([s.label for s in samples]),
        torch.stack([s.instance for s in samples]) if with_instances == {True} else None,
        [s.name for s in samples],
    )


class SceneDataset(torch.utils.data.Dataset):
    """Crop/flip and tensor conversion shared by every source; subclasses provide resized arrays."""

    class_names: tuple[str, ...]
    has_instances: bool

    def __init__(self, transform: SceneTransform, seed: int = 0):
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.transform, self.seed, self.epoch = transform, int(seed), 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_hw(self) -> tuple[int, int]:
        return self.transform.image_hw

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's crops and flips; call before creating the epoch's DataLoader iterator."""
        self.epoch = int(epoch)

    def resized(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, str]:
        """Scene ``index`` at ``transform.resize_hw``: uint8 (h, w, 3) RGB, label, instance or None, name."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} scenes")
        index %= len(self)
        image, label, instance, name = self.resized(index)
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.transform.train else None
        image, label, instance = self.transform.crop_flip(image, label, instance, rng)
        image_t = torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32)).div_(127.5).sub_(1.0)
        instance_t = None if instance is None else torch.from_numpy(instance.astype(np.int64))
        return Sample(image_t, torch.from_numpy(label.astype(np.int64)), instance_t, name)


def find_root(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder of dataset ``name``: ``root`` if given, else the first of ``$QGESCO_DATA/<name>``,
    ``../shared/datasets/<name>`` from the current directory, and the same beside the repository."""
    if root is not None:
        root = Path(root).expanduser()
        if root.exists() and not root.is_dir():
            raise NotADirectoryError(f"{root}: is a file; give the folder holding the {name} dataset")
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such folder for the {name} dataset")
        return root
    candidates = []
    if os.environ.get("QGESCO_DATA"):
        candidates.append(Path(os.environ["QGESCO_DATA"]).expanduser() / name)
    candidates += [Path.cwd().parent / "shared" / "datasets" / name, _REPO.parent / "shared" / "datasets" / name]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    tried = ", ".join(dict.fromkeys(str(c) for c in candidates))
    raise FileNotFoundError(
        f"no {name} dataset found (looked in {tried}); pass its folder as --data-root (Python: root=...) "
        f"or set QGESCO_DATA to a folder that holds {name}/"
    )


class FolderScenes(SceneDataset):
    """A split of a dataset stored as PNG files in ``layout``; decoded resized arrays are cached."""

    layout: ClassVar[Layout]

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "train",
        *,
        image_hw: tuple[int, int],
        train: bool = False,
        seed: int = 0,
        crop_margin: float | None = None,
        cache: bool = True,
    ):
        super().__init__(SceneTransform(image_hw, train, crop_margin), seed)
        self.class_names, self.has_instances = self.layout.class_names, self.layout.has_instances
        self.root, self.split = find_root(self.layout.format, root), split
        pairs, problems = self.layout.scan(self.root, split)
        if problems:
            raise FileNotFoundError(
                f"{self.root}: {len(problems)} problem(s) in the {split} split, first: {problems[0]}; "
                f"list them all with: qgesco data check {self.root} --format {self.layout.format}"
            )
        if not pairs:
            raise FileNotFoundError(f"{self.root}: no {split} scenes; expected {self.layout.description}")
        self.pairs = pairs
        self._arrays: SceneArrays | None = (
            cached_scene_arrays(pairs, self.transform.resize_hw, self._decode) if cache else None
        )

    def __len__(self) -> int:
        return len(self.pairs)

    def resized(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, str]:
        if self._arrays is None:
            image, label, instance = self._decode(self.pairs[index])
        else:
            a = self._arrays
            image, label, instance = (
                a.images[index],
                a.labels[index],
                None if a.instances is None else a.instances[index],
            )
        return image, label, instance, self.pairs[index].name

    def _decode(self, pair: ScenePair) -> Decoded:
        """Read, check and resize one scene; a bad file stops with its name and the checker to run."""
        contents = read_pair(pair, self.num_classes)
        if contents.problems:
            first = contents.problems[0]
            command = f"qgesco data check {self.root} --format {self.layout.format}"
            raise ValueError(f"{first}; list every problem with: {command}")
        return self.transform.resize(contents.image, contents.label, contents.instance)


class CamVid(FolderScenes):
    """CamVid in the SegNet layout: 11 classes + Unlabelled (index 11) as a 12th, no instance maps."""

    layout = CAMVID


class Cityscapes(FolderScenes):
    """Cityscapes' official layout: 35 label-id classes and instance ids, as GESCO trains on them
    (at ``image_hw=(256, 512)``)."""

    layout = CITYSCAPES


def make_loader(
    dataset: SceneDataset,
    batch_size: int,
    *,
    epoch: int = 0,
    shuffle: bool = False,
    num_workers: int = 0,
    drop_last: bool = False,
) -> torch.utils.data.DataLoader:
    """A DataLoader for one epoch whose order and augmentation follow ``dataset.seed`` and ``epoch``."""
    dataset.set_epoch(epoch)
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([dataset.seed, epoch]).generate_state(1)[0]))
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        drop_last=drop_last,
        collate_fn=collate,
        generator=generator,
        worker_init_fn=_ignore_stop_signals,
    )


def _ignore_stop_signals(worker_id: int) -> None:
    """Ctrl-C and ``timeout`` signal the whole process group: the workers must not die of it, so the
    training loop, which handles the signal, can finish its step and write its final checkpoint."""
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, signal.SIG_IGN)

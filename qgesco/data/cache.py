"""Decoded, resized arrays of a whole split, kept on disk so that epochs skip PNG decoding.

Decoding a 480x360 PNG pair costs far more than a training step at 72x96, so a split is
decoded and resized once (in threads: PIL releases the GIL while decoding and resizing)
into ``.npy`` files under ``$QGESCO_CACHE/data`` (default ``~/.cache/qgesco/data``) and
memory-mapped afterwards. A memory map is shared by DataLoader workers for free, and a
pickled :class:`SceneArrays` reopens the files instead of copying the arrays, so spawned
workers stay cheap too. The cache key covers every file's size and modification time and
the resize, so editing a dataset or asking for another size builds a fresh entry.

Every array's sha256 is written to ``meta.json`` with it and checked each time the entry is
opened (a pickled copy in a DataLoader worker reopens it without checking again): a cache
modified or damaged on disk is refused with the folder to delete, never read as data. An entry
without digests (written by an older qgesco) is rebuilt, with one warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from qgesco.data.layouts import ScenePair
from qgesco.fileio import atomic_path, cache_dir, sha256_file, write_json

#: Bump when the cached arrays' content or format changes, to orphan old entries.
CACHE_VERSION = 1

Decoded = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


class SceneArrays:
    """``images`` (N, h, w, 3) uint8, ``labels`` (N, h, w) uint8, ``instances`` (N, h, w) int32 or None."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, instances: np.ndarray | None, folder: Path | None = None
    ):
        self.images, self.labels, self.instances, self.folder = images, labels, instances, folder

    @classmethod
    def open(cls, folder: Path) -> SceneArrays:
        """Memory-map the arrays of a finished cache entry."""

        def load(name: str) -> np.ndarray | None:
            path = folder / f"{name}.npy"
            return np.load(path, mmap_mode="r") if path.is_file() else None

        return cls(load("images"), load("labels"), load("instances"), folder)

    def __reduce__(self):
        if self.folder is not None:
            return SceneArrays.open, (self.folder,)
        return SceneArrays, (self.images, self.labels, self.instances)


def cache_key(pairs: Sequence[ScenePair], resize_hw: tuple[int, int]) -> str:
    """A digest of the files (path, size, mtime) and of the size they are resized to."""
    entries = []
    for pair in pairs:
        for path in (pair.image, pair.label, pair.instance):
            if path is not None:
                st = path.stat()
                entries.append((str(path.resolve()), st.st_size, st.st_mtime_ns))
    blob = json.dumps([CACHE_VERSION, list(resize_hw), entries])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cached_scene_arrays(
    pairs: Sequence[ScenePair],
    resize_hw: tuple[int, int],
    decode: Callable[[ScenePair], Decoded],
) -> SceneArrays:
    """The resized arrays of ``pairs``: from the disk cache, else decoded now and stored there.

    Falls back to arrays in memory (with a warning) where the cache folder cannot be written.
    """
    folder = cache_dir("data", cache_key(pairs, resize_hw))
    if (folder / "meta.json").is_file() and _checked(folder):
        return SceneArrays.open(folder)
    names = ("images", "labels", "instances") if pairs[0].instance is not None else ("images", "labels")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        writable = os.access(folder, os.W_OK)
    except OSError:
        writable = False
    if not writable:
        warnings.warn(
            f"cannot write the dataset cache folder {folder}; keeping decoded arrays in memory. "
            "Set QGESCO_CACHE to a writable folder to cache across runs.",
            stacklevel=3,
        )
        arrays = {name: np.empty(_shape(name, len(pairs), resize_hw), _DTYPES[name]) for name in names}
        _fill(arrays, pairs, decode)
        return SceneArrays(arrays["images"], arrays["labels"], arrays.get("instances"))
    with contextlib.ExitStack() as stack:
        tmp = {name: stack.enter_context(atomic_path(folder / f"{name}.npy")) for name in names}
        _fill_files(tmp, pairs, resize_hw, decode)
        digests = {name: sha256_file(path) for name, path in tmp.items()}
    write_json(
        folder / "meta.json",
        {
            "version": CACHE_VERSION,
            "scenes": len(pairs),
            "resize_hw": list(resize_hw),
            "first": str(pairs[0].image),
            "last": str(pairs[-1].image),
            "sha256": digests,
        },
    )
    return SceneArrays.open(folder)


def _checked(folder: Path) -> bool:
    """Whether the finished entry in ``folder`` may be read: True when every array matches its digest,
    False (after one warning) when it has none and is to be rebuilt; a mismatch is an error."""
    try:
        digests = json.loads((folder / "meta.json").read_text()).get("sha256")
    except (OSError, ValueError, AttributeError):
        digests = None
    if not isinstance(digests, dict) or not digests:
        warnings.warn(
            f"dataset cache {folder} has no checksums (an older qgesco wrote it); rebuilding it", stacklevel=4
        )
        return False
    for name, digest in digests.items():
        path = folder / f"{name}.npy"
        if not path.is_file() or sha256_file(path) != digest:
            raise ValueError(
                f"dataset cache {path}: does not match the checksum written with it (modified or damaged since); "
                f"delete {folder} and rerun: it is rebuilt from the dataset"
            )
    return True


_DTYPES = {"images": np.uint8, "labels": np.uint8, "instances": np.int32}


def _shape(name: str, n: int, hw: tuple[int, int]) -> tuple[int, ...]:
    return (n, *hw, 3) if name == "images" else (n, *hw)


def _fill_files(paths: dict[str, Path], pairs: Sequence[ScenePair], hw: tuple[int, int], decode) -> None:
    """Decode into fresh ``.npy`` memory maps; they close when this function returns."""
    arrays = {
        name: np.lib.format.open_memmap(path, "w+", _DTYPES[name], _shape(name, len(pairs), hw))
        for name, path in paths.items()
    }
    _fill(arrays, pairs, decode)
    for array in arrays.values():
        array.flush()


def _fill(arrays: dict[str, np.ndarray], pairs: Sequence[ScenePair], decode: Callable[[ScenePair], Decoded]) -> None:
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for i, decoded in enumerate(pool.map(decode, pairs)):
            for name, value in zip(("images", "labels", "instances"), decoded):
                if name in arrays:
                    arrays[name][i] = value

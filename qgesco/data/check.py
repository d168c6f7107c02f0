"""Validate a dataset tree before training on it: counts, sizes, class histogram, every problem.

:func:`check_dataset` reads every file at full size (in threads) and collects problems rather
than stopping at the first, so one run lists everything to fix; ``str(report)`` is what
``qgesco data check`` prints.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qgesco.data.layouts import Problem, ScenePair, get_layout, read_pair


@dataclass
class SplitSummary:
    """One split: how many pairs, their image sizes (H, W) -> count, label pixels per class."""

    pairs: int
    image_sizes: Counter
    class_pixels: np.ndarray

    @property
    def class_shares(self) -> np.ndarray:
        total = self.class_pixels.sum()
        return self.class_pixels / total if total else np.zeros(len(self.class_pixels))


@dataclass
class CheckReport:
    root: Path
    format: str
    class_names: tuple[str, ...]
    splits: dict[str, SplitSummary] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [f"{self.format} dataset at {self.root}", "", "split    pairs  image sizes (HxW)"]
        for split, summary in self.splits.items():
            sizes = ", ".join(f"{h}x{w} ({n})" for (h, w), n in summary.image_sizes.most_common()) or "-"
            lines.append(f"{split:<7} {summary.pairs:>6}  {sizes}")
        if any(s.class_pixels.any() for s in self.splits.values()):
            lines += ["", "class (share of label pixels)".ljust(30) + "".join(f"{s:>9}" for s in self.splits)]
            for i, name in enumerate(self.class_names):
                shares = "".join(f"{100 * s.class_shares[i]:8.2f}%" for s in self.splits.values())
                lines.append(f"{i:>3} {name:<26}{shares}")
        lines.append("")
        if self.ok:
            lines.append("no problems found")
        else:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  {self._relative(p.path)}: {p.message}" for p in self.problems]
        return "\n".join(lines)

    def _relative(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


def check_dataset(root: str | os.PathLike, format: str, splits: Sequence[str] | None = None) -> CheckReport:
    """Check the ``format`` ("camvid" or "cityscapes") dataset under ``root``.

    Reports missing train/val folders, images or labels without their partner, unreadable
    files, label maps that are colour pictures or hold values outside the class range, and
    images, labels and instance maps whose sizes differ. ``splits`` limits the check (all by
    default, where an absent optional split such as test is skipped silently).
    """
    layout = get_layout(format)
    root = Path(root).expanduser()
    if root.is_file():
        raise ValueError(f"{root}: is a file, not a folder; give the dataset's root folder")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder to check")
    unknown = set(splits or ()) - set(layout.splits)
    if unknown:
        raise ValueError(f"{format} has no split {', '.join(sorted(unknown))}; use {', '.join(layout.splits)}")
    report = CheckReport(root, layout.format, layout.class_names)
    for split in splits or layout.splits:
        absent = not any(d.exists() for d in layout.split_dirs(root, split))
        if absent and splits is None and split in layout.optional_splits:
            continue
        pairs, unpaired = layout.scan(root, split)
        report.problems += unpaired
        if not pairs and not unpaired:
            image_dir = layout.split_dirs(root, split)[0]
            report.problems.append(Problem(image_dir, f"no scenes found; expected {layout.description}"))
        report.splits[split] = _check_split(pairs, layout.num_classes, report.problems)
    return report


def _check_split(pairs: list[ScenePair], num_classes: int, problems: list[Problem]) -> SplitSummary:
    summary = SplitSummary(len(pairs), Counter(), np.zeros(num_classes, np.int64))

    def inspect(pair: ScenePair):
        contents = read_pair(pair, num_classes)
        size = None if contents.image is None else (contents.image.height, contents.image.width)
        counts = None
        if contents.label is not None:
            valid = contents.label[(contents.label >= 0) & (contents.label < num_classes)]
            counts = np.bincount(valid, minlength=num_classes)
        return size, counts, contents.problems

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for size, counts, found in pool.map(inspect, pairs):
            if size is not None:
                summary.image_sizes[size] += 1
            if counts is not None:
                summary.class_pixels += counts
            problems += found
    return summary

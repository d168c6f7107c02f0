"""What an evaluation (:mod:`qgesco.evaluate`) and a comparison (:mod:`qgesco.semcom`) share: the random
streams of each image and the scores of each image.

- **One seeding scheme.** Every random draw of a run comes from ``np.random.SeedSequence([seed, stream,
  *keys])``: the run's seed, the stream (what is drawn: channel noise, x_T, sampler steps, fades) and
  the keys (a scene's index, a PSNR level, a chunk's start). A draw then depends on nothing else: not on
  the batch, the rank, the model or the order of the work, and no two streams or keys share draws.
- **One scorer.** :func:`score_images` gives every image its record: LPIPS, PSNR (capped), SSIM, MS-SSIM
  against the reference photo and the confusion matrix of its segmentation against the scene's labels,
  over the dataset's classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .metrics import ConfusionMatrix, lpips, ms_ssim, psnr, segment, ssim

#: Identical images have infinite PSNR; they count as this many dB so that means stay finite.
PSNR_CAP_DB = 100.0
#: Images scored at once (a batch's size never changes a score).
SCORE_BATCH = 16
#: What :func:`score_images` can compute per image.
SCORES = ("lpips", "psnr", "ssim", "ms_ssim", "confusion")


def seed_sequence(seed: int, *keys: int) -> np.random.SeedSequence:
    """The entropy of one random stream: ``seed`` and the integer ``keys`` naming the stream."""
    return np.random.SeedSequence([seed, *keys])


def stream_seed(seed: int, stream: int, *keys: int) -> int:
    """A 64-bit seed for one random stream of one image (or chunk), for a ``torch.Generator``."""
    return int(seed_sequence(seed, stream, *keys).generate_state(1, np.uint64)[0])


def generator(seed: int, stream: int, *keys: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded by :func:`stream_seed`."""
    return torch.Generator(device).manual_seed(stream_seed(seed, stream, *keys))


def psnr_key(psnr_db: float) -> int:
    """A PSNR level as an integer key (its float64 bits: every level its own stream)."""
    return int(np.float64(psnr_db).view(np.uint64))


def psnr_label(psnr_db: float) -> str:
    """A PSNR level as results files and folder names spell it."""
    return f"{psnr_db:g}"


def score_images(
    images: torch.Tensor,
    references: torch.Tensor,
    labels: torch.Tensor | None,
    num_classes: int,
    scores: Sequence[str] = SCORES,
) -> list[dict[str, Any]]:
    """One record per image of ``images`` against ``references`` (both (N, 3, H, W) in [0, 1]): the
    ``scores`` asked for; ``confusion`` is the (C, C) count matrix of the image's segmentation against
    its ``labels`` (N, H, W) over the dataset's ``num_classes`` classes."""
    unknown = [s for s in scores if s not in SCORES]
    if unknown:
        raise ValueError(f"unknown scores {unknown}; choose from {', '.join(SCORES)}")
    columns: dict[str, list] = {}
    with torch.no_grad():
        if "lpips" in scores:
            columns["lpips"] = lpips(images, references).tolist()
        if "psnr" in scores:
            columns["psnr"] = psnr(images, references).clamp(max=PSNR_CAP_DB).tolist()
        if "ssim" in scores:
            columns["ssim"] = ssim(images, references).tolist()
        if "ms_ssim" in scores:
            columns["ms_ssim"] = ms_ssim(images, references).tolist()
        if "confusion" in scores:
            predicted = segment(images)
            columns["confusion"] = [
                ConfusionMatrix(num_classes).update(p, t).matrix for p, t in zip(predicted, labels, strict=True)
            ]
    return [{k: v[j] for k, v in columns.items()} for j in range(len(images))]

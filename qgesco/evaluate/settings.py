"""The settings of an evaluation run, checked in one place when they are made."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .. import validate
from ..channel import CHANNELS, CLEANUPS, NOISE_TABLES, make_channel
from ..diffusion import PAPER_SAMPLER, create_diffusion, make_sampler
from ..fileio import Settings

#: Settings that change the regenerated images; a run folder keeps them fixed.
IMAGE_SETTINGS = (
    "data",
    "images",
    "image_hw",
    "batch_size",
    "sampler",
    "guidance",
    "guidance_window",
    "seed",
    "channel",
    "noise_table",
    "cleanup",
    "compress",
)
#: Metric groups: lpips; fid (FID and KID); miou (mIoU and pixel accuracy of the segmented image
#: against the sent map); pixel (PSNR and SSIM against the original).
METRICS = ("lpips", "fid", "miou", "pixel")


@dataclass(frozen=True)
class EvalSettings(Settings):
    """What shapes an evaluation (as ``run.json`` and ``metrics.json`` record it). Defaults are the
    paper's: PSNR 100/20/10 over AWGN, DDPM 1000 steps, guidance 2 at every step
    (``guidance_window`` (t_lo, t_hi) limits it, as the receiver's default does). ``metrics``: a
    subset of :data:`METRICS` (None: every one that applies); ``reference``: the row others are
    compared with (None: the first full-precision model). Construction normalises and checks
    everything that needs no model or data; ``images``, ``image_hw``, ``metrics`` and ``reference``
    are resolved against the models by :func:`qgesco.evaluate.runner.prepare`."""

    data: str
    data_root: str | None = None
    psnrs: tuple[float, ...] = (100.0, 20.0, 10.0)
    channel: str = "awgn"
    noise_table: str = "exact"
    cleanup: str = "avgmax"
    compress: bool = True
    sampler: str = PAPER_SAMPLER
    guidance: float = 2.0
    guidance_window: tuple[int, int] | None = None
    images: int | None = None
    batch_size: int = 8
    seed: int = 0
    metrics: tuple[str, ...] | None = None
    reference: str | None = None
    grid_psnr: float | None = None
    grid_images: int = 4
    image_hw: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if isinstance(self.data_root, os.PathLike):
            put("data_root", str(self.data_root))
        put("psnrs", tuple(float(validate.finite_number("psnrs", p)) for p in self.psnrs))
        if not self.psnrs:
            raise ValueError("give at least one channel PSNR, e.g. psnrs=(100, 20, 10)")
        put("guidance", float(validate.guidance("guidance", self.guidance)))
        validate.seed("seed", self.seed)
        put("compress", bool(self.compress))
        for name in ("guidance_window", "image_hw"):
            if getattr(self, name) is not None:
                put(name, tuple(int(v) for v in getattr(self, name)))
        if self.metrics is not None:
            put("metrics", _metric_groups(self.metrics))
        self._check_link()
        make_sampler(create_diffusion(), self.sampler).num_evaluations(
            self.guidance, self.guidance_window
        )  # checks the window
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.grid_psnr is None:
            put("grid_psnr", 10.0 if 10.0 in self.psnrs else min(self.psnrs))
        if isinstance(self.grid_images, bool) or not isinstance(self.grid_images, int) or self.grid_images < 1:
            raise ValueError(f"grid_images must be a positive number of rows, got {self.grid_images!r}")
        if self.grid_psnr not in self.psnrs:
            raise ValueError(f"grid PSNR {self.grid_psnr:g} dB is not among the evaluated PSNRs {list(self.psnrs)}")

    def _check_link(self) -> None:
        if self.channel not in CHANNELS:
            raise ValueError(f"unknown channel {self.channel!r}; choose one of {', '.join(CHANNELS)}")
        if self.noise_table not in NOISE_TABLES or self.cleanup not in CLEANUPS:
            raise ValueError(
                f"noise table {self.noise_table!r} / cleanup {self.cleanup!r}: choose from {NOISE_TABLES} / {CLEANUPS}"
            )
        for p in self.psnrs:
            make_channel(self.channel, p, table=self.noise_table)  # an unknown gesco-table level fails here


def _metric_groups(metrics) -> tuple[str, ...]:
    metrics = tuple(dict.fromkeys((metrics,) if isinstance(metrics, str) else metrics))
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"unknown metrics {unknown}; choose from {', '.join(METRICS)}")
    return metrics

"""The settings of an evaluation run, checked in one place when they are made."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from .. import validate
from ..channel import CHANNELS, CLEANUPS, NOISE_TABLES, make_channel
from ..diffusion import create_diffusion, make_sampler

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


@dataclass
class EvalSettings:
    """What shapes an evaluation (as ``run.json`` and ``metrics.json`` record it). Construction
    normalises and checks everything that needs no model or data; ``images``, ``image_hw`` and
    ``reference`` are resolved against the models by :func:`qgesco.evaluate.runner.prepare`."""

    data: str
    data_root: str | None = None
    psnrs: list[float] = field(default_factory=lambda: [100.0, 20.0, 10.0])
    channel: str = "awgn"
    noise_table: str = "exact"
    cleanup: str = "avgmax"
    compress: bool = True
    sampler: str = "ddpm1000"
    guidance: float = 2.0
    guidance_window: list[int] | None = None
    images: int | None = None
    batch_size: int = 8
    seed: int = 0
    reference: str | None = None
    grid_psnr: float | None = None
    grid_images: int = 4
    image_hw: list[int] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.data_root, os.PathLike):
            self.data_root = str(self.data_root)
        for p in self.psnrs:
            validate.finite_number("psnrs", p)
        validate.guidance("guidance", self.guidance)
        validate.seed("seed", self.seed)
        self.psnrs = [float(p) for p in self.psnrs]
        self.compress = bool(self.compress)
        self.guidance = float(self.guidance)
        if self.guidance_window is not None:
            self.guidance_window = [int(v) for v in self.guidance_window]
        if not self.psnrs:
            raise ValueError("give at least one channel PSNR, e.g. psnrs=(100, 20, 10)")
        if self.channel not in CHANNELS:
            raise ValueError(f"unknown channel {self.channel!r}; choose one of {', '.join(CHANNELS)}")
        if self.noise_table not in NOISE_TABLES or self.cleanup not in CLEANUPS:
            raise ValueError(
                f"noise table {self.noise_table!r} / cleanup {self.cleanup!r}: choose from {NOISE_TABLES} / {CLEANUPS}"
            )
        for p in self.psnrs:
            make_channel(
                self.channel, p, table=self.noise_table
            )  # an unknown gesco-table level fails here, not hours later
        make_sampler(create_diffusion(), self.sampler).num_evaluations(
            self.guidance, self.guidance_window
        )  # checks the window
        if not self.guidance >= 0:
            raise ValueError(f"guidance must be >= 0 (1 = conditional only, the paper's 2), got {self.guidance}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.grid_psnr is None:
            self.grid_psnr = 10.0 if 10.0 in self.psnrs else min(self.psnrs)
        if isinstance(self.grid_images, bool) or not isinstance(self.grid_images, int) or self.grid_images < 1:
            raise ValueError(f"grid_images must be a positive number of rows, got {self.grid_images!r}")
        if self.grid_psnr not in self.psnrs:
            raise ValueError(f"grid PSNR {self.grid_psnr:g} dB is not among the evaluated PSNRs {self.psnrs}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

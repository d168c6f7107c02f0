"""The settings of a comparison run (:func:`~qgesco.semcom.runner.compare`), checked in one place when
they are made: a setting that cannot make a comparison is refused before anything loads."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .. import validate
from ..diffusion import create_diffusion, make_sampler
from ..fileio import Settings
from ..receiver import DEFAULT_SAMPLER
from .codec import CODECS
from .link import ADAPTIVE, LINK_MODES, check_channel, check_mcs
from .schemes import MAP_CLEANUPS, POWERS, SCHEMES
from .stats import FADES


@dataclass(frozen=True)
class CompareSettings(Settings):
    """Which scenes of ``data`` (``images`` evenly spaced over the split, default all) go with which
    ``schemes`` at which ``budgets`` (real channel uses per pixel) and ``snrs`` over ``channel``, how the
    links code (``mcs``, ``link_mode``, ``bler_target``, ``power``, ``codecs``, the analog map's
    ``cleanup``), the receiver's ``sampler``, Rayleigh's expected quality from ``fades`` draws (AWGN
    only), FID/KID (``fid_kid``), where regenerated images are kept (``cache``, default
    ``out/images/regen``) and how many processes regenerate (``workers``). ``view_snr`` (default: the
    SNR nearest 10 dB) is the budget view's."""

    data: str = "camvid:val"
    data_root: str | None = None
    snrs: tuple[float, ...] = (0.0, 5.0, 10.0, 20.0)
    budgets: tuple[float, ...] = (10.0, 1.0)
    schemes: tuple[str, ...] = SCHEMES
    mcs: str = ADAPTIVE
    channel: str = "awgn"
    codecs: tuple[str, ...] = ("jpeg",)
    images: int | None = None
    view_snr: float | None = None
    cleanup: str = "auto"
    power: str = "unit"
    link_mode: str = "ldpc"
    bler_target: float = 0.1
    sampler: str = DEFAULT_SAMPLER
    fades: int = FADES
    fid_kid: bool = False
    cache: str | None = None
    workers: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        for name in ("data_root", "cache"):
            if isinstance(getattr(self, name), os.PathLike):
                put(name, str(getattr(self, name)))
        for name in ("schemes", "codecs"):
            if isinstance(getattr(self, name), str):
                put(name, (getattr(self, name),))
            put(name, tuple(getattr(self, name)))
        self._check_link()
        for name, values in (("SNR", self.snrs), ("budget", self.budgets)):
            if not values:
                raise ValueError(f"give at least one {name}")
            for v in values:
                validate.finite_number(f"{name} {v!r}", v)
        if any(b <= 0 for b in self.budgets):
            raise ValueError(f"budgets are real channel uses per pixel and must be > 0, got {list(self.budgets)}")
        unknown = [s for s in self.schemes if s not in SCHEMES]
        if unknown or not self.schemes:
            raise ValueError(f"unknown scheme(s) {unknown or list(self.schemes)}; choose from {', '.join(SCHEMES)}")
        images = self.images
        if images is not None and (isinstance(images, bool) or not isinstance(images, int) or images < 2):
            raise ValueError(f"images={images!r}: compare at least 2 images (intervals need two)")
        if self.view_snr is not None and self.view_snr not in self.snrs:
            raise ValueError(f"the budget view's SNR {self.view_snr:g} dB is not among the SNRs {list(self.snrs)}")
        validate.finite_number("bler_target", self.bler_target, low=0.0)
        validate.finite_number("fades", self.fades, low=0, integer=True)
        validate.finite_number("workers", self.workers, low=1, integer=True)
        validate.seed("seed", self.seed)
        make_sampler(create_diffusion(), self.sampler)  # refuses a bad spec before any loading
        put("snrs", tuple(sorted(float(p) for p in self.snrs)))
        put("budgets", tuple(float(b) for b in self.budgets))
        put("view_snr", min(self.snrs, key=lambda p: abs(p - 10)) if self.view_snr is None else float(self.view_snr))

    def _check_link(self) -> None:
        check_mcs(self.mcs)
        check_channel(self.channel)
        if not self.codecs or any(c not in CODECS for c in self.codecs):
            raise ValueError(f"unknown image codec(s) in {list(self.codecs)}; choose from {', '.join(CODECS)}")
        if self.cleanup not in MAP_CLEANUPS:
            raise ValueError(f"unknown cleanup {self.cleanup!r}; choose one of {', '.join(MAP_CLEANUPS)}")
        if self.power not in POWERS:
            raise ValueError(f"unknown power convention {self.power!r}; choose one of {', '.join(POWERS)}")
        if self.link_mode not in LINK_MODES:
            raise ValueError(f"unknown link mode {self.link_mode!r}; choose one of {', '.join(LINK_MODES)}")
        if self.link_mode == "table" and self.mcs != ADAPTIVE and not self.mcs.startswith("mcs"):
            raise ValueError(f"--link table has BLER curves for mcs0..mcs27 only, not {self.mcs!r}; use --link ldpc")

"""The calibration set: inputs ``(x_t, t, y)`` the full-precision receiver really sees.

Q-GESCO's recipe (paper II-C, III-A): run the float model with DDIM (100 steps, the
sampling guidance) from maps of the dataset, each map first sent through the channel at one
of 8 PSNR levels spread uniformly over 1..100 dB, and keep the sample every 25 steps. The
activations of a diffusion UNet drift with the timestep and, for a semantic receiver, with
the channel noise on ``y``; a set covering both lets the quantizer fit the ranges the
deployed model meets. The maps' recording phases within the 25-step period are spread
evenly and assigned at random, so with at least 25 maps every timestep is represented.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .. import validate
from ..channel import AWGN, CLEANUPS, NOISE_TABLES, encode, transmit
from ..diffusion import DDIMSampler, create_diffusion
from ..fileio import Settings, load_tensors, read_kind, save_tensors, tensors_sha256
from ..models.config import UNetConfig
from ..models.unet import UNetModel
from .digest import fingerprint

#: The paper's channel noise: 8 PSNR levels spread uniformly over 1..100 dB.
PAPER_PSNRS = tuple(round(1 + 99 * i / 7, 2) for i in range(8))
KIND = "calibration-set"
FORMAT_VERSION = 1
#: Largest magnitude a recorded x_t or received map can plausibly reach (they are O(1)).
PLAUSIBLE = 1e3
#: The receiver's diffusion length: recorded timesteps lie in [0, TIMESTEPS).
TIMESTEPS = create_diffusion().num_timesteps


@dataclass
class CalibrationSet:
    """Recorded model inputs: sample ``i`` is ``(x[i], t[i], maps[map_index[i]])``.

    ``maps`` are the maps as received (after channel and cleanup), stored once per map
    rather than once per sample; ``psnr_db`` is each map's channel PSNR (``None`` for a
    timestep-only set); ``info`` holds the model config, the recipe and provenance.
    """

    x: torch.Tensor
    t: torch.Tensor
    map_index: torch.Tensor
    maps: torch.Tensor
    psnr_db: torch.Tensor | None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n, m = self.x.shape[0], self.maps.shape[0]
        problems = []
        if self.x.dim() != 4 or self.x.shape[1] != 3:
            problems.append(f"x must be (N, 3, H, W), got {tuple(self.x.shape)}")
        if self.maps.dim() != 4 or self.maps.shape[2:] != self.x.shape[2:]:
            problems.append(
                f"maps {tuple(self.maps.shape)} must be (M, C, H, W) at the size of x {tuple(self.x.shape)}"
            )
        if n == 0:
            problems.append("it holds no samples")
        if self.t.shape != (n,) or self.map_index.shape != (n,):
            problems.append(f"t {tuple(self.t.shape)} and map_index {tuple(self.map_index.shape)} must both be ({n},)")
        elif n and not (0 <= int(self.map_index.min()) and int(self.map_index.max()) < m):
            problems.append(f"map_index must lie in 0..{m - 1}")
        elif n and not (0 <= float(self.t.min()) and float(self.t.max()) < TIMESTEPS):
            problems.append(
                f"timesteps t must lie in [0, {TIMESTEPS}), the diffusion's, got {float(self.t.min()):g}.."
                f"{float(self.t.max()):g}"
            )
        if self.psnr_db is not None and self.psnr_db.shape != (m,):
            problems.append(f"psnr_db {tuple(self.psnr_db.shape)} must give one PSNR per map, ({m},)")
        if problems:
            raise ValueError("inconsistent calibration set: " + "; ".join(problems))

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def label_channels(self) -> int:
        return self.maps.shape[1]

    @property
    def image_hw(self) -> tuple[int, int]:
        return tuple(self.x.shape[2:])

    def batch(self, index: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x_t, t, y)`` of the samples ``index``, ready for ``model(x, t, y)``."""
        return self.x[index], self.t[index], self.maps[self.map_index[index]]

    def check_model(self, config: UNetConfig) -> None:
        """Refuse a model whose input shape differs from the one the set was recorded for."""
        if self.label_channels != config.label_channels or self.image_hw != tuple(config.image_hw):
            h, w = self.image_hw
            raise ValueError(
                f"this calibration set was recorded for a model taking {self.label_channels}-channel maps at {h}x{w}, "
                f"but the model takes {config.label_channels}-channel maps at "
                f"{config.image_hw[0]}x{config.image_hw[1]}: "
                "record a set with this model (qgesco calibrate --model ...)"
            )

    def digest(self) -> str:
        return tensors_sha256(self._tensors())

    def summary(self) -> dict[str, Any]:
        """What a quantized checkpoint records about the set it was calibrated on."""
        settings = self.info.get("settings", {})
        return {
            "samples": len(self),
            "maps": self.maps.shape[0],
            "psnr_db": sorted(set(self.psnr_db.tolist())) if self.psnr_db is not None else None,
            "timestep_only": self.psnr_db is None,
            "timesteps": sorted(set(self.t.tolist())),
            **{k: settings[k] for k in ("steps", "every", "guidance", "noise_table", "cleanup") if k in settings},
            "sha256": self.digest(),
        }

    def _tensors(self) -> dict[str, torch.Tensor]:
        tensors = {"x": self.x, "t": self.t, "map_index": self.map_index, "maps": self.maps}
        if self.psnr_db is not None:
            tensors["psnr_db"] = self.psnr_db
        return tensors

    def save(self, path: str | os.PathLike) -> None:
        save_tensors(path, self._tensors(), {"kind": KIND, "format_version": FORMAT_VERSION, **self.info})

    @classmethod
    def load(cls, path: str | os.PathLike) -> CalibrationSet:
        meta = read_kind(path, (KIND,), "a calibration set", "make one with qgesco calibrate")
        if meta.get("format_version") != FORMAT_VERSION:
            found = "no format_version" if meta.get("format_version") is None else f"format {meta['format_version']!r}"
            raise ValueError(
                f"{path}: calibration set with {found}, this qgesco reads {FORMAT_VERSION}; re-create it with "
                "qgesco calibrate"
            )
        tensors, _ = load_tensors(path)
        missing = sorted({"x", "t", "map_index", "maps"} - set(tensors))
        if missing:
            raise ValueError(f"{path}: calibration set lacks tensor(s) {missing}; re-create it")
        for name in ("x", "maps"):
            t = tensors[name]
            if not bool(torch.isfinite(t).all()) or (t.numel() and float(t.abs().max()) > PLAUSIBLE):
                raise ValueError(
                    f"{path}: calibration tensor {name!r} holds NaN/inf or values beyond +-{PLAUSIBLE:g} "
                    "that no sampling trajectory produces; re-create it with qgesco calibrate"
                )
        if tensors["map_index"].numel() and not 0 <= int(tensors["map_index"].min()) <= int(
            tensors["map_index"].max()
        ) < len(tensors["maps"]):
            raise ValueError(
                f"{path}: calibration map_index points outside its maps; re-create it with qgesco calibrate"
            )
        info = {k: v for k, v in meta.items() if k not in ("kind", "format_version", "sha256")}
        try:
            return cls(tensors["x"], tensors["t"], tensors["map_index"], tensors["maps"], tensors.get("psnr_db"), info)
        except ValueError as e:
            raise ValueError(f"{path}: {e}; re-create it with qgesco calibrate") from None


def _clean_maps(model: UNetModel, maps, num_maps: int, generator: torch.Generator) -> tuple[torch.Tensor, list[str]]:
    """``num_maps`` one-hot maps drawn at random from a dataset or an (M, C, H, W) tensor, and their names."""
    cfg = model.config
    available = maps.shape[0] if isinstance(maps, torch.Tensor) else len(maps)
    if not 0 < num_maps <= available:
        raise ValueError(f"num_maps={num_maps}: the data hold {available} maps; ask for 1..{available}")
    chosen = torch.randperm(available, generator=generator)[:num_maps].tolist()
    if isinstance(maps, torch.Tensor):
        y, names = maps[chosen].float(), [f"map_{i}" for i in chosen]
    else:
        if maps.num_classes != cfg.num_classes:
            raise ValueError(
                f"the dataset has {maps.num_classes} classes but the model {cfg.num_classes}; calibrate on the "
                "model's dataset"
            )
        if not cfg.no_instance and not maps.has_instances:
            raise ValueError("the model expects an instance-edge channel but the dataset has no instance maps")
        samples = [maps[i] for i in chosen]
        labels = torch.stack([s.label for s in samples])
        instance = None if cfg.no_instance else torch.stack([s.instance for s in samples])
        y, names = encode(labels, cfg.num_classes, instance), [s.name for s in samples]
    validate.finite_tensor("maps", y)
    if y.dim() != 4 or y.shape[1] != cfg.label_channels or tuple(y.shape[2:]) != tuple(cfg.image_hw):
        raise ValueError(
            f"maps of shape {tuple(y.shape[1:])} do not fit the model, which takes "
            f"({cfg.label_channels}, {cfg.image_hw[0]}, {cfg.image_hw[1]}): open the data at image_hw={cfg.image_hw}"
        )
    return y, names


@dataclass(frozen=True)
class CalibrationRecipe(Settings):
    """How a calibration set is recorded; the defaults are the paper's (module docstring). Map ``j``
    crosses an AWGN channel at ``psnrs[j * len(psnrs) // num_maps]`` dB (``timestep_only``: a noiseless
    channel, the ablation of the paper's Table II, and no ``psnrs``); its DDIM trajectory of ``steps``
    steps is recorded every ``every`` steps."""

    num_maps: int = 64
    psnrs: tuple[float, ...] | None = PAPER_PSNRS
    timestep_only: bool = False
    steps: int = 100
    every: int = 25
    guidance: float = 2.0
    eta: float = 0.0
    noise_table: str = "exact"
    cleanup: str = "avgmax"
    compress: bool = True
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_maps", "steps", "every", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.every > self.steps:
            raise ValueError(
                f"every={self.every} exceeds steps={self.steps}: no sample would be recorded from some maps"
            )
        if self.timestep_only:
            object.__setattr__(self, "psnrs", None)
        elif self.psnrs is None or len(self.psnrs) == 0:
            raise ValueError("psnrs is empty: give at least one channel PSNR, or timestep_only=True for clean maps")
        else:
            object.__setattr__(self, "psnrs", tuple(float(validate.finite_number("psnrs", p)) for p in self.psnrs))
        object.__setattr__(self, "guidance", float(validate.guidance("guidance", self.guidance)))
        object.__setattr__(self, "eta", float(validate.finite_number("eta", self.eta, low=0)))
        validate.seed("seed", self.seed)
        if self.noise_table not in NOISE_TABLES or self.cleanup not in CLEANUPS:
            raise ValueError(
                f"noise table {self.noise_table!r} / cleanup {self.cleanup!r}: choose from {NOISE_TABLES} / {CLEANUPS}"
            )


def build_calibration_set(
    model: UNetModel,
    maps,
    recipe: CalibrationRecipe | None = None,
    resume: str | os.PathLike | None = None,
) -> CalibrationSet:
    """Record ``(x_t, t, y)`` from ``model``'s DDIM trajectories on ``recipe.num_maps`` maps
    (:class:`CalibrationRecipe`, default the paper's).

    ``maps`` is a dataset (:mod:`qgesco.data`) or a tensor of clean one-hot maps. Each map crosses the
    channel at its share of the PSNR levels (fewer maps than levels take levels spread over the list)
    and its trajectory is recorded every ``every`` steps, the phases spread evenly over the maps in
    random order. Deterministic for a given ``seed``; with ``resume`` (a file) the work is saved after
    every batch of maps and an interrupted run continues. ``info["provenance"]`` starts with the map
    names and the wall time; add what the set was made from before saving it.
    """
    if not isinstance(model, UNetModel):
        raise ValueError(
            f"build_calibration_set takes a qgesco UNetModel, got {type(model).__name__}; "
            "load one with qgesco.load_model"
        )
    recipe = CalibrationRecipe() if recipe is None else recipe
    if not isinstance(recipe, CalibrationRecipe):
        raise ValueError(f"recipe must be a CalibrationRecipe, got {type(recipe).__name__}")
    validate.finite_weights("the model", model)
    if not isinstance(maps, torch.Tensor) and not hasattr(maps, "num_classes"):
        raise ValueError(
            f"maps must be a dataset (qgesco.data.open_dataset) or an (M, C, H, W) tensor of one-hot maps, "
            f"got {type(maps).__name__}"
        )
    r, num_maps, steps, every, batch_size = recipe, recipe.num_maps, recipe.steps, recipe.every, recipe.batch_size
    progress = sys.stderr.isatty()  # bars for a person watching, none in logs and tests
    started = time.perf_counter()
    cfg = model.config
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(r.seed)
    clean, names = _clean_maps(model, maps, num_maps, g)
    phase = (torch.arange(num_maps) % every)[torch.randperm(num_maps, generator=g)]
    psnrs = r.psnrs
    psnr = (
        None
        if r.timestep_only
        else torch.tensor([psnrs[j * len(psnrs) // num_maps] for j in range(num_maps)], dtype=torch.float64)
    )
    sampler = DDIMSampler(create_diffusion(learn_sigma=cfg.learn_sigma), steps, eta=r.eta)
    settings = recipe.to_dict()
    run_id = fingerprint(
        {"settings": settings, "model": tensors_sha256(model.state_dict()), "maps": tensors_sha256({"y": clean})}
    )
    parts, done = _resume_partial(resume, run_id)
    batches = range(0, num_maps, batch_size)
    was_training = model.training
    model.eval()
    bar = tqdm(
        total=len(batches) * steps,
        initial=done * steps,
        desc=f"calibration set, threads={torch.get_num_threads()}",
        unit="step",
        disable=not progress,
    )
    try:
        for b, start in enumerate(batches):
            if b < done:
                continue
            rows = torch.arange(start, min(start + batch_size, num_maps))
            gb = torch.Generator(device=device).manual_seed(r.seed * 1_000_003 + b + 1)
            channel = AWGN(100, table="gesco") if r.timestep_only else AWGN(psnr[rows], table=r.noise_table)
            y = transmit(
                clean[rows].to(device), channel, cfg.num_classes, cleanup=r.cleanup, compress=r.compress, generator=gb
            )
            noise = torch.randn((len(rows), 3, *cfg.image_hw), generator=gb, device=device)
            recorded = []

            def record(i: int, t: torch.Tensor, x: torch.Tensor) -> None:
                keep = ((steps - 1 - i) % every == phase[rows]).nonzero().flatten()
                if len(keep):
                    recorded.append((x[keep].cpu(), t[keep].cpu(), rows[keep]))
                bar.update(1)

            sampler.sample(model, y, guidance=r.guidance, noise=noise, generator=gb, callback=record, batch_cfg=True)
            parts["x"].append(torch.cat([r[0] for r in recorded]))
            parts["t"].append(torch.cat([r[1] for r in recorded]))
            parts["map_index"].append(torch.cat([r[2] for r in recorded]))
            parts["maps"].append(y.cpu())
            if resume is not None:
                save_tensors(
                    resume,
                    {k: torch.cat(v) for k, v in parts.items()},
                    {"kind": "calibration-partial", "run": run_id, "batches_done": b + 1},
                )
    finally:
        bar.close()
        model.train(was_training)
    tensors = {k: torch.cat(v) for k, v in parts.items()}
    info = {
        "config": cfg.to_dict(),
        "settings": settings,
        "provenance": {"map_names": names, "seconds": round(time.perf_counter() - started, 1)},
    }
    info = json.loads(json.dumps(info))  # the form it has after save/load
    return CalibrationSet(tensors["x"], tensors["t"], tensors["map_index"], tensors["maps"], psnr, info)


def _resume_partial(resume: str | os.PathLike | None, run_id: str) -> tuple[dict[str, list[torch.Tensor]], int]:
    """Recorded tensors and the number of finished batches of an interrupted run (none: empty)."""
    parts: dict[str, list[torch.Tensor]] = {"x": [], "t": [], "map_index": [], "maps": []}
    if resume is None or not Path(resume).exists():
        return parts, 0
    tensors, meta = load_tensors(resume)
    if meta.get("kind") != "calibration-partial" or meta.get("run") != run_id:
        raise ValueError(
            f"{resume}: holds the partial state of another calibration run (other model, maps or settings); "
            "delete it to start afresh"
        )
    for key in parts:
        parts[key].append(tensors[key])
    return parts, int(meta["batches_done"])

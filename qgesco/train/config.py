"""Training configuration: one flat dataclass, loaded from YAML, every field overridable.

Everything that can be wrong with a configuration (unknown field, wrong type, missing data,
an image size the UNet cannot take, a map with the wrong number of classes) is reported by
:func:`validate` before a single training step runs.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .. import validate
from ..channel import GESCO_TRAINING_PSNRS
from ..diffusion import create_diffusion, make_sampler


@dataclass
class TrainConfig:
    #: Model preset name (``camvid-demo``) or one of our ``.safetensors`` files to start from.
    model: str = "camvid-demo"
    #: Dataset spec (``camvid:train``, ``cityscapes:train``, ``synthetic:64``) and optional root folder.
    data: str = "camvid:train"
    data_root: str | None = None
    #: Training resolution; default: the model preset's ``image_hw``.
    image_hw: tuple[int, int] | None = None
    #: GroupNorm groups; default: the model's. A model file with another count keeps its
    #: weights (same shapes) and is fine-tuned with the new grouping (docs/demo_model.md).
    norm_groups: int | None = None
    out: str = "runs/train"
    steps: int = 10_000
    #: Per process: under torchrun the global batch is ``batch_size * world_size``.
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float = 1.0
    ema_rate: float = 0.9999
    #: Probability that a map is replaced by zeros (classifier-free guidance training).
    cfg_drop: float = 0.2
    #: Noise-aware conditioning: ``levels`` draws a PSNR per sample from ``noise_levels``
    #: (default: the published σ list {0.6, 0.36, 0.22, 0.13, 0.08, 0.05, 0, 0, 0} as gesco
    #: table levels), ``range`` draws uniformly from ``psnr_range`` (exact σ), ``none`` sends clean maps.
    noise: str = "levels"
    noise_levels: tuple[float, ...] = tuple(float(p) for p in GESCO_TRAINING_PSNRS)
    noise_table: str = "gesco"
    psnr_range: tuple[float, float] = (1.0, 100.0)
    cleanup: str = "avgmax"
    compress: bool = True
    #: ``uniform`` or ``loss-second-moment`` (importance sampling of timesteps, Improved DDPM).
    schedule_sampler: str = "uniform"
    diffusion_steps: int = 1000
    noise_schedule: str = "linear"
    seed: int = 0
    num_workers: int = 0
    #: CPU threads for torch (0 = torch's default).
    threads: int = 0
    channels_last: bool = False
    #: bf16 autocast; used on CUDA only (CPU trains in fp32).
    bf16: bool = True
    device: str = "auto"
    log_every: int = 25
    save_every: int = 500
    keep_checkpoints: int = 2
    #: Every N steps (0 = never) sample the fixed validation batch with the EMA model into samples/.
    sample_every: int = 2000
    sample_data: str | None = None
    sample_batch: int = 4
    #: The sample grid's sampler spec (``ddim25``, ``dpm++20``; see qgesco.diffusion.make_sampler).
    sample_respacing: str = "ddim25"
    sample_guidance: float = 2.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)


def _coerce(name: str, value: Any) -> Any:
    """Check ``value`` against the field's type; accept lists for tuples and ints for floats."""
    hint = _HINTS[name]
    args = typing.get_args(hint)
    if value is None:
        if type(None) in args:
            return None
        raise ValueError(f"config field {name}: must not be empty")
    if type(None) in args:
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config field {name}: expected a list, got {value!r}")
        item = args[0]
        if len(args) == 2 and args[1] is Ellipsis:
            items = [item] * len(value)
        else:
            items = list(args)
            if len(items) != len(value):
                raise ValueError(f"config field {name}: expected {len(items)} values, got {len(value)}")
        return tuple(_scalar(name, v, t) for v, t in zip(value, items))
    return _scalar(name, value, hint)


def _number(value: Any) -> Any:
    """``2e-4`` and ``1e8`` as numbers: YAML 1.1 reads exponents without a dot as strings."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
    return value


def _scalar(name: str, value: Any, kind: type) -> Any:
    if kind in (int, float):
        value = _number(value)
    if kind is int and isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        value = int(value)
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    raise ValueError(f"config field {name}: expected {kind.__name__}, got {value!r} ({type(value).__name__})")


def make_config(values: dict[str, Any]) -> TrainConfig:
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}; known fields: {', '.join(FIELDS)}")
    return TrainConfig(**{k: _coerce(k, v) for k, v in values.items()})


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A YAML file (flat mapping of fields) with ``overrides`` applied on top."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise ValueError(f"config file {path}: is a folder; give a YAML file")
        if not path.is_file():
            raise FileNotFoundError(f"config file {path}: no such file")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ValueError(
                f"{path}{where}: not valid YAML ({getattr(e, 'problem', None) or e}); "
                "a training config is lines of `field: value`"
            ) from None
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(
                f"{path}: cannot be read as a text file ({type(e).__name__}); give a YAML config"
            ) from None
        if loaded is None:  # an empty file is a mistake, not a request for every default
            raise ValueError(f"{path}: is empty; a training config is lines of `field: value` (or omit --config)")
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a training config is a mapping of field: value")
        values.update(loaded)
    values.update(overrides or {})
    return make_config(values)


def parse_override(name: str, text: str) -> Any:
    """A command-line value, read as YAML so that ``1e-4``, ``true`` and ``[48, 64]`` work."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise ValueError(f"--{name.replace('_', '-')} {text!r}: not a valid value") from None


CHOICES = {
    "noise": ("levels", "range", "none"),
    "noise_table": ("exact", "gesco"),
    "schedule_sampler": ("uniform", "loss-second-moment"),
    "noise_schedule": ("linear", "cosine"),
}


POSITIVE = ("steps", "batch_size", "diffusion_steps", "log_every", "save_every", "keep_checkpoints", "sample_batch")
NON_NEGATIVE = ("weight_decay", "grad_clip", "warmup_steps", "sample_every", "num_workers", "threads", "seed")


def _check_numbers(train_config: TrainConfig) -> None:
    """Every number finite; counts, sizes and rates in their ranges."""
    for name, value in train_config.to_dict().items():
        for v in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"config field {name}: must be a finite number, got {v}")
    for name in POSITIVE:
        if getattr(train_config, name) <= 0:
            raise ValueError(f"config field {name}: must be > 0, got {getattr(train_config, name)}")
    for name in NON_NEGATIVE:
        if getattr(train_config, name) < 0:
            raise ValueError(f"config field {name}: must be >= 0, got {getattr(train_config, name)}")
    if not train_config.lr > 0:
        raise ValueError(f"config field lr: must be > 0, got {train_config.lr}")
    for name in ("ema_rate", "cfg_drop"):
        if not 0 <= getattr(train_config, name) < 1:
            raise ValueError(f"config field {name}: must be in [0, 1), got {getattr(train_config, name)}")
    if train_config.image_hw is not None and min(train_config.image_hw) <= 0:
        raise ValueError(f"config field image_hw: must be positive, got {train_config.image_hw}")


def _check_noise(train_config: TrainConfig) -> None:
    """The training noise: levels to draw from, or a range the noise table can give."""
    if train_config.noise == "levels" and not train_config.noise_levels:
        raise ValueError("config field noise_levels: give at least one PSNR level")
    if train_config.noise == "range" and not train_config.psnr_range[0] <= train_config.psnr_range[1]:
        raise ValueError(f"config field psnr_range: low > high in {train_config.psnr_range}")
    if train_config.noise == "range" and train_config.noise_table == "gesco":
        raise ValueError(
            "noise=range draws arbitrary PSNRs: use noise_table=exact (the gesco table only knows its nominal levels)"
        )


def check_values(train_config: TrainConfig) -> None:
    """Range checks of single fields (no files touched)."""
    _check_numbers(train_config)
    validate.device("config field device:", train_config.device)
    for name, allowed in CHOICES.items():
        if getattr(train_config, name) not in allowed:
            raise ValueError(f"config field {name}: {getattr(train_config, name)!r} is not one of {', '.join(allowed)}")
    validate.guidance("config field sample_guidance:", train_config.sample_guidance)
    validate.seed("config field seed:", train_config.seed)
    _check_noise(train_config)
    try:
        make_sampler(
            create_diffusion(train_config.diffusion_steps, train_config.noise_schedule), train_config.sample_respacing
        )
    except ValueError as e:
        raise ValueError(f"config field sample_respacing: {e}") from None

"""Model configuration: the published GESCO/SDM script flags, validated, as one dataclass.

``UNetConfig`` is what our checkpoints store in their metadata. It is built either from
the flag names of the published ``image_train.py``/``image_sample.py`` scripts
(:func:`config_from_official_flags`, so users port their commands unchanged) or from a
named preset (:mod:`qgesco.models.presets`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

#: ``channel_mult=""`` in the published scripts means this per-resolution default.
DEFAULT_CHANNEL_MULT = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
}

#: Model flags of the published scripts, with their types and defaults
#: (``guided_diffusion/script_util.py::create_model``).
MODEL_FLAGS: dict[str, tuple[type, Any]] = {
    "image_size": (int, 64),
    "num_classes": (int, 151),
    "num_channels": (int, 128),
    "num_res_blocks": (int, 2),
    "channel_mult": (str, ""),
    "attention_resolutions": (str, "16"),
    "num_heads": (int, 1),
    "num_head_channels": (int, -1),
    "num_heads_upsample": (int, -1),
    "use_scale_shift_norm": (bool, False),
    "resblock_updown": (bool, False),
    "learn_sigma": (bool, False),
    "class_cond": (bool, False),
    "no_instance": (bool, False),
    "dropout": (float, 0.0),
    "use_fp16": (bool, False),
    "use_new_attention_order": (bool, False),
    "one_hot_label": (bool, True),
}

#: Flags of the published scripts that configure diffusion, data or training rather than
#: the network. ``from_official_flags`` accepts them so a whole flag set can be passed.
NON_MODEL_FLAGS = frozenset(
    {
        "diffusion_steps",
        "noise_schedule",
        "timestep_respacing",
        "use_kl",
        "predict_xstart",
        "rescale_timesteps",
        "rescale_learned_sigmas",
        "data_dir",
        "dataset_mode",
        "batch_size",
        "lr",
        "weight_decay",
        "lr_anneal_steps",
        "microbatch",
        "ema_rate",
        "drop_rate",
        "log_interval",
        "save_interval",
        "resume_checkpoint",
        "fp16_scale_growth",
        "schedule_sampler",
        "is_train",
        "clip_denoised",
        "num_samples",
        "use_ddim",
        "model_path",
        "results_path",
        "s",
        "use_checkpoint",
    }
)


_TRUE, _FALSE = {"true", "t", "yes", "y", "1"}, {"false", "f", "no", "n", "0"}


def _plain_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _to_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    return None


def _to_int(value: Any) -> Any:
    if _plain_int(value):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _to_float(value: Any) -> Any:
    if _plain_int(value) or isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return None


def _to_str(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value) if _plain_int(value) else None


#: One converter per flag type: the value, or None where it cannot stand for one.
_CONVERTERS = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}


def _coerce(name: str, value: Any, kind: type) -> Any:
    """Accept Python values or the strings a shell command line would give."""
    converted = _CONVERTERS[kind](value) if kind in _CONVERTERS else None
    if converted is None:
        raise ValueError(f"flag {name}={value!r}: expected {kind.__name__}")
    return converted


@dataclass(frozen=True)
class UNetConfig:
    """Everything needed to rebuild a GESCO/SDM UNet; stored in every checkpoint."""

    image_size: int = 64
    num_classes: int = 35
    num_channels: int = 128
    num_res_blocks: int = 2
    channel_mult: tuple[float, ...] = (1, 2, 3, 4)
    attention_ds: tuple[int, ...] = (4,)
    num_heads: int = 1
    num_head_channels: int = -1
    num_heads_upsample: int = -1
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True
    learn_sigma: bool = True
    no_instance: bool = False
    dropout: float = 0.0
    use_fp16: bool = False
    use_new_attention_order: bool = False
    #: Hidden width of the SPADE modulation convs (128 in the published model).
    spade_hidden: int = 128
    #: Groups of every GroupNorm (32 in the published model). A narrow model needs fewer: with
    #: one channel per group the norm removes each channel's spatial mean, and the output head
    #: then cannot predict the mean of the noise, which sampling turns into colour casts.
    norm_groups: int = 32
    #: Training/inference resolution (H, W); the network is convolutional, this is for
    #: analytic figures, data loading and shape checks of calibration sets.
    image_hw: tuple[int, int] = field(default=(64, 64))

    def __post_init__(self) -> None:
        self.validate()

    # --- derived sizes -------------------------------------------------------------------
    @property
    def label_channels(self) -> int:
        """Channels of ``y``: one-hot classes plus the instance-edge channel."""
        return self.num_classes + (0 if self.no_instance else 1)

    @property
    def out_channels(self) -> int:
        return 6 if self.learn_sigma else 3

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)

    def validate(self) -> None:
        """Refuse, naming the flag, a configuration no network can be built from."""
        for check in (self._check_counts, self._check_widths, self._check_heads, self._check_image):
            why = check()
            if why:
                raise ValueError(f"invalid model flag {why[0]}: {why[1]}")

    def _check_counts(self) -> tuple[str, str] | None:
        for flag in ("num_classes", "num_channels", "num_res_blocks", "norm_groups", "spade_hidden"):
            if getattr(self, flag) <= 0:
                return flag, f"must be > 0, got {getattr(self, flag)}"
        if not self.channel_mult or any(m <= 0 for m in self.channel_mult):
            return "channel_mult", f"needs positive multipliers, got {self.channel_mult}"
        if not 0.0 <= self.dropout < 1.0:
            return "dropout", f"must be in [0, 1), got {self.dropout}"
        return None

    def _check_widths(self) -> tuple[str, str] | None:
        for m in self.channel_mult:
            ch = m * self.num_channels
            if ch != int(ch):
                return "channel_mult", f"num_channels*{m} = {ch} must be a whole number of channels"
            if int(ch) % self.norm_groups:
                return "norm_groups", (
                    f"{self.norm_groups} groups do not divide the width num_channels*{m} = {int(ch)}; "
                    "choose num_channels and channel_mult whose widths norm_groups divides (or another norm_groups)"
                )
        return None

    def _check_heads(self) -> tuple[str, str] | None:
        if self.num_head_channels > 0:
            for w in sorted({int(m * self.num_channels) for m in self.channel_mult}):
                if w % self.num_head_channels:
                    return "num_head_channels", f"{self.num_head_channels} does not divide the attention width {w}"
        elif self.num_heads <= 0:
            return "num_heads", f"must be > 0 when num_head_channels=-1, got {self.num_heads}"
        return None

    def _check_image(self) -> tuple[str, str] | None:
        h, w = self.image_hw
        f = self.downsample_factor
        if h <= 0 or w <= 0 or h % f or w % f:
            return "image_hw", (
                f"{h}x{w} must be positive multiples of {f} (the UNet downsamples {len(self.channel_mult) - 1} times)"
            )
        return None

    # --- (de)serialisation --------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UNetConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config field(s) {unknown}; known fields: {sorted(known)}")
        d = dict(d)
        for key in ("channel_mult", "attention_ds", "image_hw"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    def replace(self, **changes: Any) -> UNetConfig:
        return dataclasses.replace(self, **changes)


def config_from_official_flags(
    *, spade_hidden: int = 128, image_hw: tuple[int, int] | None = None, **flags: Any
) -> UNetConfig:
    """Translate the published scripts' flags into a :class:`UNetConfig`.

    Unknown flag names raise ``ValueError`` naming them; diffusion/training flags of the
    same scripts are accepted and ignored here (see :data:`NON_MODEL_FLAGS`).
    """
    unknown = sorted(k for k in flags if k not in MODEL_FLAGS and k not in NON_MODEL_FLAGS)
    if unknown:
        raise ValueError(f"unknown flag(s) {unknown}; model flags are: {sorted(MODEL_FLAGS)}")
    v = {
        name: _coerce(name, flags[name], kind) if name in flags else default
        for name, (kind, default) in MODEL_FLAGS.items()
    }
    if not v["class_cond"]:
        raise ValueError(
            "flag class_cond=False: the semantic diffusion model is always conditioned on the map; pass class_cond=True"
        )
    if not v["one_hot_label"]:
        raise ValueError("flag one_hot_label=False is not supported: the map is sent one-hot; pass one_hot_label=True")
    size = v["image_size"]
    if size <= 0:
        raise ValueError(f"invalid model flag image_size: must be > 0, got {size}")
    if v["channel_mult"] == "":
        if size not in DEFAULT_CHANNEL_MULT:
            raise ValueError(
                f"invalid model flag channel_mult: empty means the published default, which exists only for "
                f"image_size in {sorted(DEFAULT_CHANNEL_MULT)}; got image_size={size}, so pass e.g. "
                "channel_mult='1,2,4'"
            )
        mult = DEFAULT_CHANNEL_MULT[size]
    else:
        try:
            mult = tuple(int(m) for m in v["channel_mult"].split(","))
        except ValueError:
            raise ValueError(
                f"invalid model flag channel_mult={v['channel_mult']!r}: expected comma-separated integers like "
                "'1,1,2,2,4,4'"
            ) from None
    attention_ds = []
    for res in filter(None, (r.strip() for r in v["attention_resolutions"].split(","))):
        if not res.isdigit() or int(res) <= 0 or size % int(res):
            raise ValueError(f"invalid model flag attention_resolutions: {res!r} does not divide image_size={size}")
        attention_ds.append(size // int(res))
    return UNetConfig(
        image_size=size,
        num_classes=v["num_classes"],
        num_channels=v["num_channels"],
        num_res_blocks=v["num_res_blocks"],
        channel_mult=tuple(mult),
        attention_ds=tuple(attention_ds),
        num_heads=v["num_heads"],
        num_head_channels=v["num_head_channels"],
        num_heads_upsample=v["num_heads_upsample"],
        use_scale_shift_norm=v["use_scale_shift_norm"],
        resblock_updown=v["resblock_updown"],
        learn_sigma=v["learn_sigma"],
        no_instance=v["no_instance"],
        dropout=v["dropout"],
        use_fp16=v["use_fp16"],
        use_new_attention_order=v["use_new_attention_order"],
        spade_hidden=spade_hidden,
        image_hw=tuple(image_hw) if image_hw else (size, size),
    )

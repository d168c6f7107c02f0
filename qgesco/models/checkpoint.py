"""Model checkpoints: the published GESCO ``.pt`` files and our own safetensors files.

Ours hold the weights plus the :class:`UNetConfig` (and any provenance) as JSON metadata,
so ``load_float_model(path)`` needs no flags. Loading the published file goes through
``torch.load(weights_only=True)`` (no pickled code runs) and ``strict=True``; a mismatch is
explained by comparing the checkpoint's shapes with the flags given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..fileio import (
    MODEL_KINDS,
    QUANTIZED_KIND,
    UNET_KIND,
    load_tensors,
    read_kind,
    require_finite,
    save_tensors,
    unchecked,
)
from .config import UNetConfig, config_from_official_flags
from .presets import PRESETS, get_preset
from .unet import UNetModel

ASSETS = Path(__file__).resolve().parents[1] / "assets"
#: Presets whose trained weights ship with the package.
BUNDLED = {"camvid-demo": ASSETS / "camvid_demo.safetensors", "camvid-demo-w8": ASSETS / "camvid_demo_w8.safetensors"}


def _suspect_flags(sd: dict[str, torch.Tensor], own: dict[str, torch.Tensor], cfg: UNetConfig) -> list[str]:
    """Flags whose value disagrees with what the checkpoint's tensor shapes imply."""
    hints = []

    def shape(key: str) -> tuple[int, ...] | None:
        return tuple(sd[key].shape) if key in sd else None

    first = shape("input_blocks.0.0.weight")
    if first and first[0] != int(cfg.channel_mult[0] * cfg.num_channels):
        hints.append(f"num_channels/channel_mult (checkpoint's first conv has {first[0]} channels)")
    spade = shape("middle_block.0.in_norm.mlp_shared.0.weight")
    if spade and spade[1] != cfg.label_channels:
        hints.append(
            f"num_classes/no_instance (checkpoint's map has {spade[1]} channels; "
            f"num_classes + 1 edge channel unless no_instance=True)"
        )
    if spade and spade[0] != cfg.spade_hidden:
        hints.append(f"spade_hidden (checkpoint uses {spade[0]})")
    out = shape("out.2.weight")
    if out and out[0] != cfg.out_channels:
        hints.append(f"learn_sigma (checkpoint outputs {out[0]} channels: 6 = learn_sigma=True)")
    n_in = len({k.split(".")[1] for k in sd if k.startswith("input_blocks.")})
    expected_in = 1 + len(cfg.channel_mult) * (cfg.num_res_blocks + 1) - 1
    if n_in and n_in != expected_in:
        hints.append(
            f"num_res_blocks/channel_mult (checkpoint has {n_in} input blocks, these flags give {expected_in})"
        )

    def attention_blocks(keys) -> list[str]:
        return sorted(k.rsplit(".", 3)[0] for k in keys if k.endswith(".qkv.weight"))

    if attention_blocks(sd) != attention_blocks(own):
        hints.append(f"attention_resolutions (checkpoint has attention in {attention_blocks(sd)[:4]}...)")
    if any(k.endswith(".op.weight") for k in sd) == cfg.resblock_updown:
        hints.append("resblock_updown")
    emb = shape("input_blocks.1.0.emb_layers.1.weight")
    if emb and first and (emb[0] == 2 * first[0]) != cfg.use_scale_shift_norm and emb[0] in (first[0], 2 * first[0]):
        hints.append(f"use_scale_shift_norm (checkpoint's embedding projection has {emb[0]} outputs)")
    return hints


def load_state_dict_strict(model: UNetModel, sd: dict[str, torch.Tensor], source: str, assign: bool = False) -> None:
    """``load_state_dict(strict=True)`` with one readable error naming keys and likely flags;
    ``assign``: the model (a meta-device skeleton) takes ``sd``'s tensors as they are, no copy."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    misshaped = [
        f"{k} {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and sd[k].shape != own[k].shape
    ]
    if missing or unexpected or misshaped:
        parts = [f"{source} does not fit the model built from these flags:"]
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if keys:
                parts.append(f"  {len(keys)} {label}, first: {', '.join(keys[:3])}")
        hints = _suspect_flags(sd, own, model.config)
        parts.append(
            "  probably wrong flag(s): "
            + ("; ".join(hints) if hints else "check every architecture flag against the training command")
        )
        raise ValueError("\n".join(parts))
    model.load_state_dict(sd, strict=True, assign=assign)


def skeleton(cfg: UNetConfig) -> UNetModel:
    """The network without weights (meta device): loaders fill it with ``assign=True``, so the
    file's tensors become the parameters and the weights are in memory once, not twice."""
    with torch.device("meta"):
        return UNetModel(cfg)


def load_official_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", **flags: Any
) -> UNetModel:
    """Load a published GESCO/SDM ``.pt`` checkpoint given the flags it was trained with."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    model = skeleton(config_from_official_flags(**flags))
    unchecked(path, "this PyTorch checkpoint")
    try:  # memory-mapped: the pages are the parameters' storage (assign=True below)
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # torch raises several types for corrupt or non-tensor pickles
        raise ValueError(
            f"{path}: cannot be read as a weights-only PyTorch checkpoint ({type(e).__name__}: {e})"
        ) from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path}: expected a state_dict (a dict of tensors)")
    sd = {k[len("model.") :] if k.startswith("model.") else k: v for k, v in sd.items()}
    load_state_dict_strict(model, sd, str(path), assign=True)
    del sd
    return model.to(map_location)


def save_model(model: UNetModel, path: str | os.PathLike, **provenance: Any) -> None:
    """Save weights + config (+ provenance such as training steps) as one safetensors file;
    NaN/inf weights are refused (a diverged model must never look like a result)."""
    require_finite(model.state_dict(), str(path))
    save_tensors(path, model.state_dict(), {"kind": UNET_KIND, "config": model.config.to_dict(), **provenance})


def bundled_path(name: str) -> Path:
    """The file of a bundled model (``camvid-demo``, ``camvid-demo-w8``), checked to exist."""
    if name not in BUNDLED:
        raise ValueError(f"{name!r} is not a bundled model; bundled: {', '.join(BUNDLED)}")
    if not BUNDLED[name].is_file():
        raise FileNotFoundError(
            f"bundled weights for {name!r} are missing at {BUNDLED[name]}; reinstall qgesco from a full checkout"
        )
    return BUNDLED[name]


def source_path(name_or_path: str | os.PathLike) -> Path:
    """The file a model argument names, unchecked: a bundled model's file, else the path itself."""
    return BUNDLED[str(name_or_path)] if str(name_or_path) in BUNDLED else Path(name_or_path)


def resolve_source(name_or_path: str | os.PathLike) -> Path:
    """The file of a bundled model name or a model path, checked to exist: the one way every loader,
    verb and script turns a model argument into a file."""
    name = str(name_or_path)
    if name in BUNDLED:
        return bundled_path(name)
    path = Path(name_or_path)
    if path.exists():
        return path
    if name in PRESETS:
        raise ValueError(
            f"preset {name!r} has no bundled weights; build it untrained with create_model({name!r}), "
            "or load the published checkpoint with load_official_checkpoint(path, **flags)"
        )
    raise FileNotFoundError(f"{name}: no such file, and not a bundled model (bundled: {', '.join(BUNDLED)})")


def read_model_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a model file of either kind (full precision or quantized); any other file is refused."""
    return read_kind(
        path, MODEL_KINDS, "a model", "give a model file (qgesco train, qgesco quantize) or a bundled name"
    )


@dataclass(frozen=True)
class ModelSource:
    """What a model argument names: a model file (bundled or a path) with its metadata, or a preset
    (``path`` None: a configuration without weights)."""

    name: str
    config: UNetConfig
    path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def quantized(self) -> bool:
        return self.meta.get("kind") == QUANTIZED_KIND


def open_source(name_or_path: str | os.PathLike) -> ModelSource:
    """A model file, bundled model name or preset name, and its configuration, without loading weights.

    A file (or bundled name) wins over a preset of the same name: its configuration is what was trained."""
    name = str(name_or_path)
    if name in BUNDLED or Path(name).exists():
        path = resolve_source(name)
        meta = read_model_meta(path)
        return ModelSource(name, file_config(path, meta), path, meta)
    if name in PRESETS:
        return ModelSource(name, get_preset(name))
    raise FileNotFoundError(
        f"{name}: no such file, bundled model ({', '.join(BUNDLED)}) or preset ({', '.join(PRESETS)})"
    )


def file_config(path: str | os.PathLike, meta: dict[str, Any]) -> UNetConfig:
    """The model configuration stored in a model file's metadata, with one line when it is missing or damaged."""
    try:
        return UNetConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(
            f"{path}: model file without a readable config in its metadata ({type(e).__name__}: {e}); "
            "it was not written by qgesco or was edited: re-create it"
        ) from None


def load_model_meta(path_or_name: str | os.PathLike) -> dict[str, Any]:
    """The metadata of one of our model files (config, provenance), without loading weights."""
    path = resolve_source(path_or_name)
    meta = read_model_meta(path)
    if meta["kind"] == QUANTIZED_KIND:
        raise ValueError(
            f"{path}: holds a quantized model, not a full-precision one; give the float model it was made "
            "from (quantized checkpoints load with qgesco.load_model / qgesco.quant.load_quantized)"
        )
    return meta


def load_float_model(
    path_or_name: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    channels_last: bool = True,
) -> UNetModel:
    """Load one of our safetensors models (a path, or the name of a bundled model), in eval mode.

    ``channels_last`` is the default inference layout: the CPU convolution kernels' own (docs/results.md
    compares the layouts); it changes outputs by float rounding only.
    """
    meta = load_model_meta(path_or_name)
    path = resolve_source(path_or_name)
    model = skeleton(file_config(path, meta))
    tensors, _ = load_tensors(path)
    load_state_dict_strict(model, tensors, str(path), assign=True)
    del tensors  # the model holds them: each conversion below frees the tensor it replaces
    model = model.to(device=device, dtype=dtype).eval()
    return model.to(memory_format=torch.channels_last) if channels_last else model


def create_model(preset_or_config: str | UNetConfig, seed: int | None = None) -> UNetModel:
    """An untrained model of a preset (initialised as the published code: zeroed output convs)."""
    cfg = get_preset(preset_or_config) if isinstance(preset_or_config, str) else preset_or_config
    if seed is None:
        return UNetModel(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNetModel(cfg)

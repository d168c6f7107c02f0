"""Noise-aware training of the GESCO UNet: config, loop (single process or torchrun/DDP), checkpoints, reports."""

from .config import TrainConfig, load_config, make_config
from .loop import Trainer, train

__all__ = ["TrainConfig", "Trainer", "load_config", "make_config", "train"]

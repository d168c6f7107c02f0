"""The GESCO/SDM semantic diffusion UNet: configuration, presets, checkpoints, costs."""

from .config import UNetConfig, config_from_official_flags
from .unet import UNetModel


def from_official_flags(**flags) -> UNetModel:
    """Build the UNet from the published scripts' flags (``image_size=256, num_channels=256, ...``)."""
    return UNetModel(config_from_official_flags(**flags))


__all__ = ["UNetConfig", "UNetModel", "config_from_official_flags", "from_official_flags"]

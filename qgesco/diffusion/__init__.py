"""Diffusion processes and samplers for any ``model(x, t, y)``; never imports the network."""

from .gaussian import GaussianDiffusion, create_diffusion, get_named_beta_schedule
from .respace import respace, space_timesteps

__all__ = ["GaussianDiffusion", "create_diffusion", "get_named_beta_schedule", "respace", "space_timesteps"]

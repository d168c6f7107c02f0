"""Diffusion processes and samplers for any ``model(x, t, y)``; never imports the network."""

from .create import create_diffusion
from .gaussian import GaussianDiffusion, get_named_beta_schedule
from .samplers import (
    PAPER_SAMPLER,
    DDIMSampler,
    DDPMSampler,
    DPMSolverPPSampler,
    Sampler,
    make_sampler,
    parse_guidance_window,
    sampler_spec,
    select_steps,
    subsample,
)

__all__ = [
    "PAPER_SAMPLER",
    "DDIMSampler",
    "DDPMSampler",
    "DPMSolverPPSampler",
    "GaussianDiffusion",
    "Sampler",
    "create_diffusion",
    "get_named_beta_schedule",
    "make_sampler",
    "parse_guidance_window",
    "sampler_spec",
    "select_steps",
    "subsample",
]

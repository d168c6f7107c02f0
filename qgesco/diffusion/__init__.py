"""Diffusion processes and samplers for any ``model(x, t, y)``; never imports the network."""

from .gaussian import GaussianDiffusion, create_diffusion, get_named_beta_schedule
from .respace import respace, space_timesteps, subsample
from .samplers import DDIMSampler, DDPMSampler, DPMSolverPPSampler, Sampler, make_sampler, parse_guidance_window, sampler_spec, select_steps

__all__ = ["DDIMSampler", "DDPMSampler", "DPMSolverPPSampler", "GaussianDiffusion", "Sampler", "create_diffusion",
           "get_named_beta_schedule", "make_sampler", "parse_guidance_window", "respace", "sampler_spec", "select_steps",
           "space_timesteps", "subsample"]

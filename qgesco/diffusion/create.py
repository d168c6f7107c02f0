"""``create_diffusion``: the published process, built from its settings."""

from __future__ import annotations

from .gaussian import GaussianDiffusion, get_named_beta_schedule


def create_diffusion(steps: int = 1000, noise_schedule: str = "linear", learn_sigma: bool = True) -> GaussianDiffusion:
    """The published diffusion settings: 1000 linear steps, learned-range variance. Samplers pick
    the timesteps they visit (:func:`qgesco.diffusion.select_steps`)."""
    return GaussianDiffusion(
        get_named_beta_schedule(noise_schedule, steps), "learned_range" if learn_sigma else "fixed_large"
    )

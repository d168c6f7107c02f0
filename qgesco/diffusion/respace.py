"""Timestep respacing: run a 1000-step model on a subset of its timesteps.

Spec strings as in guided-diffusion: ``"ddim25"`` (25 evenly strided steps starting at 0),
``"250"`` (250 steps spread evenly) or ``"10,15,20"`` (sections of the range with their own
counts). The respaced process recomputes its betas from the kept ``alphas_cumprod`` so its
posteriors are exact for the subset.
"""

from __future__ import annotations

import numpy as np

from .gaussian import GaussianDiffusion


def space_timesteps(num_timesteps: int, spec: str | int | list[int]) -> list[int]:
    """The sorted timesteps of the base process kept by a respacing ``spec``."""
    if isinstance(spec, str) and spec.startswith("ddim"):
        rest = spec[len("ddim"):]
        if not rest.isdigit() or int(rest) <= 0:
            raise ValueError(f"respacing {spec!r}: expected 'ddimN' with N a positive integer")
        desired = int(rest)
        for stride in range(1, num_timesteps):
            if len(range(0, num_timesteps, stride)) == desired:
                return list(range(0, num_timesteps, stride))
        if desired == num_timesteps:
            return list(range(num_timesteps))
        raise ValueError(f"respacing {spec!r}: {num_timesteps} steps cannot be strided evenly into exactly {desired}; "
                         f"use a plain count like '{desired}' instead")
    if isinstance(spec, int):
        counts = [spec]
    elif isinstance(spec, str):
        try:
            counts = [int(x) for x in spec.split(",")]
        except ValueError:
            raise ValueError(f"respacing {spec!r}: expected 'ddimN', 'N' or comma-separated section counts") from None
    else:
        counts = list(spec)
    if not counts or any(c <= 0 for c in counts):
        raise ValueError(f"respacing {spec!r}: section counts must be positive")
    size_per, extra = divmod(num_timesteps, len(counts))
    steps: list[int] = []
    start = 0
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise ValueError(f"respacing {spec!r}: cannot take {count} steps from a section of {size}")
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        steps += [start + round(stride * k) for k in range(count)]
        start += size
    return sorted(set(steps))


def respace(diffusion: GaussianDiffusion, spec: str | int | list[int]) -> GaussianDiffusion:
    """A process over the timesteps kept by ``spec`` that calls the model with the original timesteps."""
    if diffusion.num_timesteps != len(diffusion.timestep_map) or not bool((diffusion.timestep_map == np.arange(diffusion.num_timesteps)).all()):
        raise ValueError("respace a full (not already respaced) diffusion process")
    return subsample(diffusion, space_timesteps(diffusion.num_timesteps, spec))


def subsample(diffusion: GaussianDiffusion, keep: list[int]) -> GaussianDiffusion:
    """The process over step indices ``keep`` (ascending) of ``diffusion``: betas recomputed from
    the kept ``alphas_cumprod`` so its posteriors are exact; model timesteps carried over."""
    alphas_cumprod = diffusion.alphas_cumprod.numpy()[keep]
    betas = 1 - alphas_cumprod / np.append(1.0, alphas_cumprod[:-1])
    return GaussianDiffusion(betas, diffusion.variance, timestep_map=diffusion.timestep_map[keep].tolist())

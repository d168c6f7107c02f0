"""The receiver: received semantic maps -> regenerated images, with any model.

The demo, evaluation, benchmarks and Python users must regenerate images the same way (same
sampler defaults, same guidance, same seeding), so they all call :func:`regenerate`. The model
is any callable ``model(x, t, y)``: the fp32 UNet, the fake-quantized one, or a low-bit runtime
model; like :mod:`qgesco.diffusion`, this module never imports the network.
"""

from __future__ import annotations

import torch

from . import validate
from .diffusion import GaussianDiffusion, Sampler, create_diffusion, make_sampler, parse_guidance_window
from .diffusion.gaussian import Denoiser, StepCallback

#: The receiver's defaults: the cheapest setting near the paper's DDPM-1000 quality (measured in docs/samplers.md).
DEFAULT_SAMPLER = "ddpm30"
DEFAULT_GUIDANCE = 2.0
DEFAULT_GUIDANCE_WINDOW = (500, 999)


def regenerate(
    model: Denoiser,
    y: torch.Tensor,
    *,
    sampler: str | Sampler = DEFAULT_SAMPLER,
    guidance: float = DEFAULT_GUIDANCE,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
    guidance_window: tuple[int, int] | None = DEFAULT_GUIDANCE_WINDOW,
    batch_cfg: bool = True,
    diffusion: GaussianDiffusion | None = None,
    progress: bool = False,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Images in [-1, 1], (N, 3, H, W), for received maps ``y`` (N, C, H, W) on ``y``'s device.

    ``sampler`` is a spec such as ``"ddpm30"``, ``"dpm++20"`` or ``"ddpm1000"`` (the paper's), built
    over ``diffusion`` (default: the published 1000 linear steps), or a ready :class:`Sampler`.
    ``guidance`` is the classifier-free scale s (1 = conditional pass only), applied at the model
    timesteps ``guidance_window`` (t_lo, t_hi) and the conditional pass alone elsewhere; None guides
    every step, as the paper does. ``batch_cfg`` runs the conditional and unconditional passes as
    one forward. Seed ``generator`` for reproducible images.
    """
    validate.model("regenerate: model", model)
    validate.maps("received maps", y, getattr(getattr(model, "config", None), "label_channels", None))
    validate.guidance("guidance", guidance)
    if noise is not None:
        validate.finite_tensor("noise", noise)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if not isinstance(sampler, Sampler):
        sampler = make_sampler(diffusion or create_diffusion(), sampler)

    def check(i: int, t: torch.Tensor, x: torch.Tensor) -> None:
        _finite_or_stop(x, i)
        if callback is not None:
            callback(i, t, x)

    images = sampler.sample(
        model,
        y,
        guidance=guidance,
        noise=noise,
        generator=generator,
        progress=progress,
        callback=check,
        guidance_window=guidance_window,
        batch_cfg=batch_cfg,
    )
    return _finite_or_stop(images, -1)


def _finite_or_stop(x: torch.Tensor, step: int) -> torch.Tensor:
    """Stop at the first sampling step whose image holds NaN/inf instead of saving black images."""
    if not bool(torch.isfinite(x).all()):
        where = "in the last step" if step < 0 else f"before step {step}"
        raise RuntimeError(
            f"sampling produced NaN/inf {where}: the model's weights are damaged or diverged, or "
            "the guidance scale is extreme; check the model with `qgesco info` and the guidance value"
        )
    return x


def receiver_window(text: str | None) -> tuple[int, int] | None:
    """A command line's ``--guidance-window``: unset -> the receiver's default, ``"all"`` -> None
    (guide every step), ``"T_LO,T_HI"`` -> that window."""
    return DEFAULT_GUIDANCE_WINDOW if text is None else parse_guidance_window(text)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """Model images in [-1, 1] as the metrics' [0, 1]."""
    return ((images + 1) / 2).clamp(0, 1)

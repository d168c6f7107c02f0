"""Samplers behind one interface: DDPM, DDIM and DPM-Solver++, with three timestep spacings.

Every sampler is built from a :class:`GaussianDiffusion` and a step count, visits ``steps``
model timesteps from the noisiest down to 0 with one (guided) network output each, and ends
on the clean image: the last step, at timestep 0, returns the predicted x_0 (clipped to
[-1, 1] with ``clip_denoised``, as the published sampler). ``make_sampler(diffusion, spec)``
parses the short names the CLI and the receiver use:

============  ==================================================================
``ddpm1000``  ancestral sampling with the learned-range variance (the paper's)
``ddim25``    DDIM, eta = 0, 25 steps
``dpm++20``   DPM-Solver++(2M), 20 steps
``...q``      quadratic instead of uniform spacing (``ddim25q``, ``dpm++20q``)
``...l``      logSNR-uniform spacing (``dpm++20l``)
============  ==================================================================

Timestep spacing (:func:`select_steps`), over the T = 1000 training steps:
``uniform`` visits ``floor(k T / N)`` for k = 0..N-1 (the DDIM paper's; equal to
guided-diffusion's ``ddimN`` respacing whenever N divides T, e.g. 0, 40, ..., 960 for 25;
it is the only timestep selector, for the receiver, calibration and training's sample grids);
``quadratic`` visits ``floor((T-1) (k / (N-1))^2)`` (the DDIM paper's quadratic rule, ending
at T-1 so sampling starts from pure noise); ``logsnr`` takes the timesteps nearest to N
log-SNR values evenly spaced between t = T-1 and t = 0 (DPM-Solver's choice for pixel-space
models). Rounded timesteps are kept at least one apart, so no evaluation repeats a timestep.

Guidance options (both cut the cost of classifier-free guidance, neither changes the maths
where guidance runs): ``guidance_window=(t_lo, t_hi)`` applies guidance (conditional +
unconditional pass) only at model timesteps t_lo <= t <= t_hi and runs the single
conditional pass (guidance 1) elsewhere; ``batch_cfg`` runs both passes as one forward of
twice the batch. ``num_evaluations`` counts network evaluations per image, a batched pair as 2.

DPM-Solver++ (Lu et al., 2022) integrates the probability-flow ODE in log-SNR
lambda = log(alpha / sigma) with the data prediction x_0 = (x - sigma eps) / alpha, from the
guided eps channels (the variance channels are ignored: the ODE has no variance). On the
same grid its first-order variant *is* DDIM with eta = 0; the second-order multistep (2M)
corrects each step with the previous x_0 prediction. The last step goes to sigma = 0
(lambda = inf), where the second-order correction is undefined; it is first order there,
i.e. x_0 itself, as DDIM's last step.

Written here over the fixture-proven :class:`GaussianDiffusion` (float64 tables) rather than taken
from diffusers, whose schedulers cannot run these spacings and seed differently (docs/samplers.md).
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod

import numpy as np
import torch
from tqdm.auto import tqdm

from .gaussian import Denoiser, GaussianDiffusion, StepCallback

#: The paper's sampler: 1000 ancestral DDPM steps with the learned-range variance.
PAPER_SAMPLER = "ddpm1000"
SPACINGS = ("uniform", "quadratic", "logsnr")
SPEC_FORMS = (
    "ddpmN, ddimN or dpm++N (N steps), with a trailing 'q' for quadratic or 'l' for logSNR spacing, "
    "e.g. ddpm1000, ddim25, ddim25q, dpm++20, dpm++20l"
)


def select_steps(diffusion: GaussianDiffusion, steps: int, spacing: str = "uniform") -> list[int]:
    """The ``steps`` step indices (ascending) of ``diffusion`` that a sampler visits."""
    if spacing not in SPACINGS:
        raise ValueError(f"unknown timestep spacing {spacing!r}; use one of {', '.join(SPACINGS)}")
    length = diffusion.num_timesteps
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 2 <= steps <= length:
        raise ValueError(
            f"steps must be an integer in 2..{length} (the process's length; one step would start from t=0, "
            f"not from noise), got {steps!r}"
        )
    if spacing == "uniform":
        return [k * length // steps for k in range(steps)]
    if spacing == "quadratic":
        return _distinct([int((length - 1) * frac**2) for frac in np.linspace(0.0, 1.0, steps)], length)
    log_snr = np.log(diffusion.alphas_cumprod.numpy()) - np.log1p(-diffusion.alphas_cumprod.numpy())
    targets = np.linspace(log_snr[0], log_snr[-1], steps)
    return _distinct([int(np.abs(log_snr - target).argmin()) for target in targets], length)


def subsample(diffusion: GaussianDiffusion, keep: list[int]) -> GaussianDiffusion:
    """The process over step indices ``keep`` (ascending) of ``diffusion``: betas recomputed from
    the kept ``alphas_cumprod`` so its posteriors are exact; model timesteps carried over."""
    alphas_cumprod = diffusion.alphas_cumprod.numpy()[keep]
    betas = 1 - alphas_cumprod / np.append(1.0, alphas_cumprod[:-1])
    return GaussianDiffusion(betas, diffusion.variance, timestep_map=diffusion.timestep_map[keep].tolist())


def _distinct(ascending: list[int], length: int) -> list[int]:
    """Push rounded timesteps at least one apart, within 0..length-1, so no evaluation repeats a timestep."""
    out = list(ascending)
    for k in range(1, len(out)):
        out[k] = max(out[k], out[k - 1] + 1)
    out[-1] = min(out[-1], length - 1)
    for k in range(len(out) - 2, -1, -1):
        out[k] = min(out[k], out[k + 1] - 1)
    return out


class Sampler(ABC):
    """The shared loop; subclasses define one step. Built from the full process (or any
    process: the steps are chosen among its own) and a step count."""

    def __init__(
        self, diffusion: GaussianDiffusion, steps: int, *, spacing: str = "uniform", clip_denoised: bool = True
    ):
        keep = select_steps(diffusion, steps, spacing)
        # All steps: reuse the process itself, so the guided-diffusion loops stay bit-exact.
        self.diffusion = diffusion if len(keep) == diffusion.num_timesteps else subsample(diffusion, keep)
        self.spacing = spacing
        self.clip_denoised = clip_denoised
        self.max_model_timestep = int(diffusion.timestep_map.max())

    @property
    def timesteps(self) -> list[int]:
        """The model timesteps visited, in sampling order (noisiest first)."""
        return self.diffusion.timestep_map.flip(0).tolist()

    def _window(self, guidance_window: tuple[int, int] | None) -> tuple[int, int]:
        if guidance_window is None:
            return 0, self.max_model_timestep
        try:
            lo, hi = (int(v) for v in guidance_window)
        except (TypeError, ValueError):
            raise ValueError(
                f"guidance_window must be a pair (t_lo, t_hi) of model timesteps, got {guidance_window!r}"
            ) from None
        if not 0 <= lo <= hi <= self.max_model_timestep:
            raise ValueError(
                f"guidance_window {guidance_window!r} must satisfy 0 <= t_lo <= t_hi <= {self.max_model_timestep} "
                "(model timesteps); use None to guide every step"
            )
        return lo, hi

    def num_evaluations(self, guidance: float = 2.0, guidance_window: tuple[int, int] | None = None) -> int:
        """Network evaluations per image: 2 at guided steps (batched or not), 1 elsewhere."""
        lo, hi = self._window(guidance_window)
        return sum(2 if guidance > 1.0 and lo <= t <= hi else 1 for t in self.timesteps)

    def sample(
        self,
        model: Denoiser,
        y: torch.Tensor,
        *,
        guidance: float = 2.0,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        progress: bool = False,
        callback: StepCallback | None = None,
        guidance_window: tuple[int, int] | None = None,
        batch_cfg: bool = False,
    ) -> torch.Tensor:
        """Images x_0 in [-1, 1] for maps ``y`` (N, C, H, W).

        ``noise`` is x_T (default: standard normal (N, 3, H, W) from ``generator``);
        ``callback(i, t, x_t)`` runs before each step with the step index (steps-1 .. 0), the
        model timesteps (N,) and the current sample.
        """
        lo, hi = self._window(guidance_window)
        x = (
            noise
            if noise is not None
            else torch.randn((y.shape[0], 3, *y.shape[2:]), generator=generator, device=y.device)
        )
        if x.shape[0] != y.shape[0] or x.shape[2:] != y.shape[2:]:
            raise ValueError(f"noise/shape {tuple(x.shape)} does not match the map batch and size {tuple(y.shape)}")
        timestep_map = self.diffusion.timestep_map.to(x.device)
        state: dict = {}
        n = self.diffusion.num_timesteps
        for i in tqdm(
            range(n - 1, -1, -1),
            desc=f"{type(self).__name__} {n}, threads={torch.get_num_threads()}",
            disable=not progress,
            leave=False,
        ):
            t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
            if callback is not None:
                callback(i, timestep_map[t], x)
            step_guidance = guidance if lo <= int(timestep_map[i]) <= hi else 1.0
            with torch.no_grad():
                x = self._step(model, x, t, y, step_guidance, generator, batch_cfg, state)
        return x

    @abstractmethod
    def _step(
        self,
        model: Denoiser,
        x: torch.Tensor,
        t: torch.Tensor,
        y: torch.Tensor,
        guidance: float,
        generator: torch.Generator | None,
        batch_cfg: bool,
        state: dict,
    ) -> torch.Tensor:
        """x at the next (less noisy) step; ``state`` persists across the steps of one run."""


class DDPMSampler(Sampler):
    """Ancestral sampling with the model's learned-range variance; 1000 steps is the paper's setting."""

    def _step(self, model, x, t, y, guidance, generator, batch_cfg, state):
        return self.diffusion.p_sample(model, x, t, y, guidance, self.clip_denoised, generator, batch_cfg)["sample"]


class DDIMSampler(Sampler):
    """DDIM (Song et al.): ``eta=0`` is deterministic, ``eta=1`` over all steps is DDPM with the
    posterior variance (the learned variance channels are not used)."""

    def __init__(
        self,
        diffusion: GaussianDiffusion,
        steps: int,
        *,
        eta: float = 0.0,
        spacing: str = "uniform",
        clip_denoised: bool = True,
    ):
        if not eta >= 0:
            raise ValueError(f"DDIM eta must be >= 0 (0 deterministic, 1 DDPM-like), got {eta!r}")
        super().__init__(diffusion, steps, spacing=spacing, clip_denoised=clip_denoised)
        self.eta = eta

    def _step(self, model, x, t, y, guidance, generator, batch_cfg, state):
        return self.diffusion.ddim_sample(model, x, t, y, guidance, self.eta, self.clip_denoised, generator, batch_cfg)[
            "sample"
        ]


class DPMSolverPPSampler(Sampler):
    """DPM-Solver++ multistep with data prediction: ``order=2`` is 2M, ``order=1`` equals DDIM (eta=0)."""

    def __init__(
        self,
        diffusion: GaussianDiffusion,
        steps: int,
        *,
        order: int = 2,
        spacing: str = "uniform",
        clip_denoised: bool = True,
    ):
        if order not in (1, 2):
            raise ValueError(f"DPM-Solver++ order must be 1 or 2, got {order!r}")
        super().__init__(diffusion, steps, spacing=spacing, clip_denoised=clip_denoised)
        self.order = order
        alphas_cumprod = self.diffusion.alphas_cumprod.numpy()
        self._alpha = np.sqrt(alphas_cumprod)
        self._sigma = np.sqrt(1.0 - alphas_cumprod)
        self._lambda = np.log(self._alpha) - np.log(self._sigma)

    def _step(self, model, x, t, y, guidance, generator, batch_cfg, state):
        i = int(t[0])
        eps = self.diffusion.model_output(model, x, t, y, guidance, batch_cfg)[:, : x.shape[1]]
        x0 = self.diffusion.predict_xstart_from_eps(x, t, eps)
        if self.clip_denoised:
            x0 = x0.clamp(-1, 1)
        if i == 0:
            return x0
        h = self._lambda[i - 1] - self._lambda[i]
        data = x0
        if self.order == 2 and "x0" in state:
            half_inv_ratio = h / (2 * (self._lambda[i] - state["lambda"]))
            data = (1 + half_inv_ratio) * x0 - half_inv_ratio * state["x0"]
        state["x0"], state["lambda"] = x0, self._lambda[i]
        return float(self._sigma[i - 1] / self._sigma[i]) * x - float(self._alpha[i - 1] * math.expm1(-h)) * data


_SPEC = re.compile(r"(ddpm|ddim|dpm\+\+)(\d*)([ql]?)")


def sampler_spec(sampler: str | None, steps: int | None, default: str) -> str:
    """A full spec from a family or spec plus a step count, each falling back to ``default``'s:
    ``("dpm++", 20, ..)`` -> ``dpm++20``, ``("ddimq", None, "ddim25")`` -> ``ddim25q``,
    ``(None, 50, "ddim25")`` -> ``ddim50``."""

    def parts(spec: str) -> tuple[str, str, str]:
        match = _SPEC.fullmatch(spec.strip().lower()) if isinstance(spec, str) else None
        if match is None:
            raise ValueError(f"unknown sampler {spec!r}; use a family (ddpm, ddim, dpm++) or {SPEC_FORMS}")
        return match.groups()

    d_family, d_steps, d_suffix = parts(default)
    family, own_steps, suffix = parts(sampler) if sampler is not None else (d_family, "", d_suffix)
    if own_steps and steps is not None and int(own_steps) != steps:
        raise ValueError(f"sampler {sampler!r} already names {own_steps} steps but steps={steps}; give one of them")
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be a positive number of denoising steps, got {steps}")
    return f"{family}{steps if steps is not None else own_steps or d_steps}{suffix}"


def parse_guidance_window(text: str) -> tuple[int, int] | None:
    """A command line's ``"500,999"`` -> (500, 999), model timesteps to guide; ``"all"`` -> None,
    guidance at every step (the paper's)."""
    if text.strip().lower() == "all":
        return None
    try:
        lo, hi = (int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(
            f"guidance window {text!r}: give T_LO,T_HI in model timesteps (e.g. 500,999) or 'all'"
        ) from None
    if not 0 <= lo <= hi:
        raise ValueError(f"guidance window {text!r}: need 0 <= T_LO <= T_HI, e.g. 500,999; or 'all'")
    return lo, hi


def make_sampler(diffusion: GaussianDiffusion, spec: str) -> Sampler:
    """The sampler a short spec names (see the module docstring), over ``diffusion``'s timesteps."""
    match = _SPEC.fullmatch(spec.strip().lower()) if isinstance(spec, str) else None
    if match is None or not match.group(2):
        raise ValueError(f"unknown sampler spec {spec!r}; use {SPEC_FORMS}")
    family, steps, suffix = match.groups()
    kind = {"ddpm": DDPMSampler, "ddim": DDIMSampler, "dpm++": DPMSolverPPSampler}[family]
    return kind(diffusion, int(steps), spacing={"": "uniform", "q": "quadratic", "l": "logsnr"}[suffix])

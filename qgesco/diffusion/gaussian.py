"""Gaussian diffusion in the guided-diffusion vocabulary: schedules, ``q_sample``, the
posterior, ``p_mean_variance`` with learned-range variance and classifier-free guidance,
the hybrid training loss, and the single DDPM / DDIM steps that the samplers
(:mod:`qgesco.diffusion.samplers`) loop over.

Written here rather than taken from diffusers because GESCO's checkpoints need the exact
published numerics (float64 coefficients, learned-range variance interpolation, guidance on
the eps channels only, the VLB term in bits/dim); ``tests/test_diffusion.py`` proves them
equal to the published code on the reference fixtures. The model is any callable
``model(x, t, y)``; this module never imports the network.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch


class Denoiser(Protocol):
    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...


#: ``callback(i, t, x_t)`` is called before each sampling step with the step index, the
#: model timesteps (N,) and the current sample; calibration records its inputs from it.
StepCallback = Callable[[int, torch.Tensor, torch.Tensor], None]


def get_named_beta_schedule(name: str, num_timesteps: int) -> np.ndarray:
    """``linear`` (Ho et al., rescaled to any length) or ``cosine`` (Nichol & Dhariwal)."""
    if name == "linear":
        scale = 1000 / num_timesteps
        return np.linspace(scale * 0.0001, scale * 0.02, num_timesteps, dtype=np.float64)
    if name == "cosine":
        return betas_for_alpha_bar(num_timesteps, lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2)
    raise ValueError(f"unknown noise schedule {name!r}; use 'linear' or 'cosine'")


def betas_for_alpha_bar(num_timesteps: int, alpha_bar: Callable[[float], float], max_beta: float = 0.999) -> np.ndarray:
    return np.array(
        [
            min(1 - alpha_bar((i + 1) / num_timesteps) / alpha_bar(i / num_timesteps), max_beta)
            for i in range(num_timesteps)
        ]
    )


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


def discretized_gaussian_log_likelihood(x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor) -> torch.Tensor:
    """Log-likelihood of 8-bit images in [-1, 1] under a Gaussian discretised to 256 bins."""
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = _approx_standard_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = _approx_standard_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_cdf_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_cdf_delta))


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=tuple(range(1, x.dim())))


def _extract(arr: torch.Tensor, t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``arr[t]`` (float64 table) as float32, broadcastable to ``shape``."""
    out = arr.to(t.device)[t].float()
    return out.reshape(-1, *([1] * (len(shape) - 1)))


class GaussianDiffusion:
    """Diffusion over ``len(betas)`` steps for an eps-predicting model.

    ``timestep_map`` maps this process's step indices to the model's timesteps; it is the
    identity for the full process and a subset in a sampler (:func:`qgesco.diffusion.subsample`).
    ``variance`` is ``"learned_range"`` (6-channel models, the published setting),
    ``"fixed_large"`` or ``"fixed_small"``.
    """

    def __init__(self, betas: np.ndarray, variance: str = "learned_range", timestep_map: list[int] | None = None):
        if variance not in ("learned_range", "fixed_large", "fixed_small"):
            raise ValueError(f"unknown variance {variance!r}; use learned_range, fixed_large or fixed_small")
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or not ((betas > 0).all() and (betas <= 1).all()):
            raise ValueError("betas must be a 1-D array in (0, 1]")
        self.variance = variance
        self.num_timesteps = len(betas)
        self.timestep_map = torch.tensor(timestep_map if timestep_map is not None else range(self.num_timesteps))

        alphas = 1.0 - betas
        ac = np.cumprod(alphas)
        ac_prev = np.append(1.0, ac[:-1])
        post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
        tables = {
            "betas": betas,
            "alphas_cumprod": ac,
            "alphas_cumprod_prev": ac_prev,
            "sqrt_alphas_cumprod": np.sqrt(ac),
            "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - ac),
            "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / ac),
            "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / ac - 1),
            "posterior_variance": post_var,
            # log clipped: the posterior variance is 0 at the start of the chain.
            "posterior_log_variance_clipped": np.log(np.append(post_var[1], post_var[1:])),
            "posterior_mean_coef1": betas * np.sqrt(ac_prev) / (1.0 - ac),
            "posterior_mean_coef2": (1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac),
            "log_betas": np.log(betas),
            # fixed_large: betas, with the first set to give a better decoder likelihood.
            "log_fixed_large_variance": np.log(np.append(post_var[1], betas[1:])),
        }
        for name, arr in tables.items():
            setattr(self, name, torch.from_numpy(arr))

    # --- forward process ----------------------------------------------------------------
    def q_sample(self, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Sample x_t ~ q(x_t | x_0)."""
        if noise is None:
            noise = torch.randn_like(x_start)
        return (
            _extract(self.sqrt_alphas_cumprod, t, x_start.shape) * x_start
            + _extract(self.sqrt_one_minus_alphas_cumprod, t, x_start.shape) * noise
        )

    def q_posterior_mean_variance(self, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0)."""
        mean = (
            _extract(self.posterior_mean_coef1, t, x_t.shape) * x_start
            + _extract(self.posterior_mean_coef2, t, x_t.shape) * x_t
        )
        return (
            mean,
            _extract(self.posterior_variance, t, x_t.shape),
            _extract(self.posterior_log_variance_clipped, t, x_t.shape),
        )

    def predict_xstart_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return (
            _extract(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t
            - _extract(self.sqrt_recipm1_alphas_cumprod, t, x_t.shape) * eps
        )

    def predict_eps_from_xstart(self, x_t: torch.Tensor, t: torch.Tensor, pred_xstart: torch.Tensor) -> torch.Tensor:
        return (_extract(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t - pred_xstart) / _extract(
            self.sqrt_recipm1_alphas_cumprod, t, x_t.shape
        )

    # --- reverse process ----------------------------------------------------------------
    def model_output(
        self,
        model: Denoiser,
        x: torch.Tensor,
        t: torch.Tensor,
        y: torch.Tensor,
        guidance: float = 1.0,
        batch_cfg: bool = False,
    ) -> torch.Tensor:
        """The network output at step indices ``t``, with classifier-free guidance.

        ``eps = eps(x, t, 0) + s * (eps(x, t, y) - eps(x, t, 0))`` on the 3 eps channels;
        the variance channels come from the conditional pass. ``guidance <= 1`` runs one
        conditional forward only, as the published sampler. ``batch_cfg`` runs both passes
        as one forward of twice the batch (faster on most hardware, same numbers).
        """
        tm = self.timestep_map.to(x.device)[t]
        if guidance <= 1.0:
            return model(x, tm, y)
        if batch_cfg:
            out, out_zero = model(torch.cat([x, x]), torch.cat([tm, tm]), torch.cat([y, torch.zeros_like(y)])).chunk(2)
        else:
            out, out_zero = model(x, tm, y), model(x, tm, torch.zeros_like(y))
        eps = out_zero[:, :3] + guidance * (out[:, :3] - out_zero[:, :3])
        return torch.cat([eps, out[:, 3:]], dim=1)

    def p_mean_variance_from_output(
        self, output: torch.Tensor, x: torch.Tensor, t: torch.Tensor, clip_denoised: bool = True
    ) -> dict[str, torch.Tensor]:
        """Mean, (log-)variance and predicted x_0 of p(x_{t-1} | x_t) from a network output."""
        channels = x.shape[1]
        if self.variance == "learned_range":
            if output.shape[1] != 2 * channels:
                raise ValueError(
                    f"learned_range variance needs a {2 * channels}-channel model output, got {output.shape[1]}; "
                    "use variance='fixed_large' for models without learn_sigma"
                )
            eps, var_values = output.split(channels, dim=1)
            min_log = _extract(self.posterior_log_variance_clipped, t, x.shape)
            max_log = _extract(self.log_betas, t, x.shape)
            frac = (var_values + 1) / 2  # [-1, 1] -> [min_var, max_var]
            log_variance = frac * max_log + (1 - frac) * min_log
        else:
            eps = output[:, :channels]
            table = (
                self.log_fixed_large_variance if self.variance == "fixed_large" else self.posterior_log_variance_clipped
            )
            log_variance = _extract(table, t, x.shape).expand_as(x)
        pred_xstart = self.predict_xstart_from_eps(x, t, eps)
        if clip_denoised:
            pred_xstart = pred_xstart.clamp(-1, 1)
        mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)
        return {
            "mean": mean,
            "variance": torch.exp(log_variance),
            "log_variance": log_variance,
            "pred_xstart": pred_xstart,
        }

    def p_mean_variance(
        self,
        model: Denoiser,
        x: torch.Tensor,
        t: torch.Tensor,
        y: torch.Tensor,
        guidance: float = 1.0,
        clip_denoised: bool = True,
        batch_cfg: bool = False,
    ) -> dict[str, torch.Tensor]:
        """p(x_{t-1} | x_t, y) for step indices ``t`` of this process."""
        output = self.model_output(model, x, t, y, guidance, batch_cfg)
        return self.p_mean_variance_from_output(output, x, t, clip_denoised)

    def p_sample(
        self,
        model: Denoiser,
        x: torch.Tensor,
        t: torch.Tensor,
        y: torch.Tensor,
        guidance: float = 1.0,
        clip_denoised: bool = True,
        generator: torch.Generator | None = None,
        batch_cfg: bool = False,
    ) -> dict[str, torch.Tensor]:
        """One ancestral (DDPM) step: x_{t-1} ~ p(x_{t-1} | x_t, y)."""
        out = self.p_mean_variance(model, x, t, y, guidance, clip_denoised, batch_cfg)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        nonzero = (t != 0).float().reshape(-1, *([1] * (x.dim() - 1)))
        return {
            "sample": out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * noise,
            "pred_xstart": out["pred_xstart"],
        }

    def ddim_sample(
        self,
        model: Denoiser,
        x: torch.Tensor,
        t: torch.Tensor,
        y: torch.Tensor,
        guidance: float = 1.0,
        eta: float = 0.0,
        clip_denoised: bool = True,
        generator: torch.Generator | None = None,
        batch_cfg: bool = False,
    ) -> dict[str, torch.Tensor]:
        """One DDIM step (Song et al.); ``eta=0`` is deterministic, ``eta=1`` matches DDPM's variance."""
        out = self.p_mean_variance(model, x, t, y, guidance, clip_denoised, batch_cfg)
        eps = self.predict_eps_from_xstart(x, t, out["pred_xstart"])
        a_bar = _extract(self.alphas_cumprod, t, x.shape)
        a_bar_prev = _extract(self.alphas_cumprod_prev, t, x.shape)
        sigma = eta * torch.sqrt((1 - a_bar_prev) / (1 - a_bar)) * torch.sqrt(1 - a_bar / a_bar_prev)
        mean = out["pred_xstart"] * torch.sqrt(a_bar_prev) + torch.sqrt(1 - a_bar_prev - sigma**2) * eps
        if eta > 0:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            nonzero = (t != 0).float().reshape(-1, *([1] * (x.dim() - 1)))
            mean = mean + nonzero * sigma * noise
        return {"sample": mean, "pred_xstart": out["pred_xstart"]}

    # --- training -----------------------------------------------------------------------
    def vb_terms_bpd(
        self, output: torch.Tensor, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """Per-sample VLB term in bits/dim: KL to the posterior, or the decoder NLL at t=0."""
        true_mean, _, true_log_var = self.q_posterior_mean_variance(x_start, x_t, t)
        out = self.p_mean_variance_from_output(output, x_t, t, clip_denoised=False)
        kl = mean_flat(normal_kl(true_mean, true_log_var, out["mean"], out["log_variance"])) / math.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x_start, out["mean"], 0.5 * out["log_variance"])
        return torch.where(t == 0, mean_flat(nll) / math.log(2.0), kl)

    def training_losses(
        self,
        model: Denoiser,
        x_start: torch.Tensor,
        t: torch.Tensor,
        y: torch.Tensor,
        noise: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The hybrid loss of Improved DDPM: eps MSE + (for learned variance) the VLB term,
        whose gradient reaches only the variance channels. Returns per-sample terms."""
        if noise is None:
            noise = torch.randn_like(x_start)
        x_t = self.q_sample(x_start, t, noise)
        output = model(x_t, self.timestep_map.to(t.device)[t], y)
        eps = output[:, : x_start.shape[1]]
        terms = {"mse": mean_flat((noise - eps) ** 2)}
        if self.variance == "learned_range":
            frozen = torch.cat([eps.detach(), output[:, x_start.shape[1] :]], dim=1)
            terms["vb"] = self.vb_terms_bpd(frozen, x_start, x_t, t)
            terms["loss"] = terms["mse"] + terms["vb"]
        else:
            terms["loss"] = terms["mse"]
        return terms

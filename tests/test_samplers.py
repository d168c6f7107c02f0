"""Samplers reproduce known fixed points: DDIM(eta=1, all steps) is DDPM, DPM-Solver++(1) is
DDIM, DPM-Solver++(2M) is second order on a problem with an exact answer; guidance options
save exactly the passes they claim."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qgesco.diffusion import (
    DDIMSampler,
    DDPMSampler,
    DPMSolverPPSampler,
    create_diffusion,
    make_sampler,
    parse_guidance_window,
    select_steps,
    subsample,
)

BASE = create_diffusion()


class GaussianData:
    """The exact denoiser for data x_0 ~ N(mu * y, sd^2) per pixel, with y the map's channel mean
    (so the unconditional pass, y = 0, has mean 0). Variance channels are -1: the posterior variance."""

    def __init__(self, mu: float = 0.2, sd: float = 0.3):
        self.mu, self.sd, self.calls = mu, sd, []

    def x0(self, x, t, y):
        a2 = BASE.alphas_cumprod[t].to(x.dtype).view(-1, 1, 1, 1)
        mean = self.mu * y.mean(1, keepdim=True)
        return mean + a2.sqrt() * self.sd**2 / (a2 * self.sd**2 + 1 - a2) * (x - a2.sqrt() * mean)

    def __call__(self, x, t, y):
        self.calls.append((t.tolist(), y.flatten(1).abs().sum(1).gt(0).tolist()))
        a2 = BASE.alphas_cumprod[t].to(x.dtype).view(-1, 1, 1, 1)
        eps = (x - a2.sqrt() * self.x0(x, t, y)) / (1 - a2).sqrt()
        return torch.cat([eps, -torch.ones_like(eps)], dim=1)

    def ode_solution(self, x_start, t_start, y):
        """The probability-flow ODE from ``x_start`` at model timestep ``t_start`` to t = 0,
        then denoised at t = 0 (what every sampler's last step does). For Gaussian data the
        flow keeps (x_t - mean_t) / std_t constant."""
        mean = self.mu * y.mean(1, keepdim=True)

        def moments(t):
            a2 = BASE.alphas_cumprod[t].item()
            return math.sqrt(a2) * mean, math.sqrt(a2 * self.sd**2 + 1 - a2)

        (m_start, s_start), (m_0, s_0) = moments(t_start), moments(0)
        x_at_0 = m_0 + s_0 * (x_start - m_start) / s_start
        return self.x0(x_at_0, torch.zeros(x_start.shape[0], dtype=torch.long), y)


def maps(n=2, hw=(4, 4), dtype=torch.float32):
    return torch.ones(n, 1, *hw, dtype=dtype)


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


# --- timestep selection and specs -------------------------------------------------------
def test_uniform_spacing_is_the_published_ddim_respacing():
    for n in (10, 20, 25, 50, 100, 250, 1000):
        assert select_steps(BASE, n, "uniform") == list(range(0, 1000, 1000 // n))
    assert select_steps(BASE, 30, "uniform")[:4] == [0, 33, 66, 100] and select_steps(BASE, 30)[-1] == 966


def test_quadratic_spacing():
    assert select_steps(BASE, 10, "quadratic") == [0, 12, 49, 111, 197, 308, 444, 604, 789, 999]
    steps = select_steps(BASE, 250, "quadratic")
    gaps = np.diff(steps)
    assert len(steps) == 250 and steps[0] == 0 and steps[-1] == 999
    assert gaps.min() >= 1 and (np.diff(gaps) >= -1).all(), "gaps grow (up to rounding): quadratic"
    assert steps[-1] - steps[-2] == 999 - int(999 * (248 / 249) ** 2)
    assert select_steps(BASE, 1000, "quadratic") == list(range(1000))
    assert make_sampler(BASE, "ddim10q").timesteps == [999, 789, 604, 444, 308, 197, 111, 49, 12, 0]


def test_logsnr_spacing_has_even_log_snr_steps():
    steps = select_steps(BASE, 20, "logsnr")
    log_snr = np.log(BASE.alphas_cumprod.numpy() / (1 - BASE.alphas_cumprod.numpy()))[steps]
    assert steps[0] == 0 and steps[-1] == 999 and len(set(steps)) == 20
    step_sizes = -np.diff(log_snr)
    assert step_sizes.max() / step_sizes.min() < 1.5, "rounding to integer timesteps aside, logSNR steps are equal"


def test_specs():
    cases = {
        "ddpm1000": (DDPMSampler, 1000, "uniform"),
        "ddim25": (DDIMSampler, 25, "uniform"),
        "ddim25q": (DDIMSampler, 25, "quadratic"),
        "dpm++20": (DPMSolverPPSampler, 20, "uniform"),
        " DPM++20L ": (DPMSolverPPSampler, 20, "logsnr"),
    }
    for spec, (kind, steps, spacing) in cases.items():
        sampler = make_sampler(BASE, spec)
        assert type(sampler) is kind and len(sampler.timesteps) == steps and sampler.spacing == spacing, spec
    assert make_sampler(BASE, "dpm++20").order == 2 and make_sampler(BASE, "ddim25").eta == 0


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda: make_sampler(BASE, "euler20"), "unknown sampler spec.*ddim25q"),
        (lambda: make_sampler(BASE, "ddim"), "unknown sampler spec"),
        (lambda: make_sampler(BASE, "ddim0"), r"steps must be an integer in 2\.\.1000"),
        (lambda: make_sampler(BASE, "ddim1"), r"steps must be an integer in 2\.\.1000.*not from noise"),
        (lambda: make_sampler(BASE, "ddpm1001"), r"steps must be an integer in 2\.\.1000"),
        (lambda: DDIMSampler(BASE, 10, spacing="cosine"), "unknown timestep spacing"),
        (lambda: DDIMSampler(BASE, 10, eta=-1), "eta must be >= 0"),
        (lambda: DPMSolverPPSampler(BASE, 10, order=3), "order must be 1 or 2"),
        (lambda: make_sampler(BASE, "ddim10").num_evaluations(2.0, (500, 1000)), r"0 <= t_lo <= t_hi <= 999"),
        (lambda: make_sampler(BASE, "ddim10").num_evaluations(2.0, (600, 500)), "guidance_window"),
        (
            lambda: make_sampler(BASE, "ddim10").sample(GaussianData(), maps(), guidance_window=(-1, 10)),
            "guidance_window",
        ),
        (
            lambda: make_sampler(BASE, "ddim10").sample(GaussianData(), maps(), noise=torch.randn(3, 3, 4, 4)),
            "does not match",
        ),
        (lambda: parse_guidance_window("500"), "give T_LO,T_HI"),
        (lambda: parse_guidance_window("999,500"), "0 <= T_LO <= T_HI"),
    ],
)
def test_bad_input_is_one_clear_value_error(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


def test_guidance_window_text_round_trips_to_what_samplers_count():
    """``all`` guides every step like None; a window guides exactly the visited timesteps inside it."""
    sampler = make_sampler(BASE, "ddpm30")
    assert parse_guidance_window(" ALL ") is None
    assert (
        sampler.num_evaluations(2.0, parse_guidance_window("500,999"))
        == 30 + sum(t >= 500 for t in sampler.timesteps)
        == 45
    )


# --- fixed points ----------------------------------------------------------------------
def test_ddim_eta1_step_is_the_ddpm_posterior_at_every_timestep():
    """Same noise draw -> same sample, for two draws: equal means and equal standard deviations."""
    model, y, t, g = GaussianData(), maps(1000), torch.arange(1000), torch.Generator().manual_seed(0)
    x = BASE.q_sample(0.2 + 0.3 * torch.randn(1000, 3, 4, 4, generator=g), t, torch.randn(1000, 3, 4, 4, generator=g))
    for seed in (1, 2):
        ddpm = BASE.p_sample(model, x, t, y, guidance=2.0, generator=torch.Generator().manual_seed(seed))["sample"]
        ddim = BASE.ddim_sample(model, x, t, y, guidance=2.0, eta=1.0, generator=torch.Generator().manual_seed(seed))[
            "sample"
        ]
        torch.testing.assert_close(ddim, ddpm, rtol=0, atol=1e-4)  # float32 at t = 1; a wrong variance is off by 4e-3


def test_ddim_eta1_over_all_1000_steps_is_ddpm():
    y, runs = maps(), []
    for sampler in (DDIMSampler(BASE, 1000, eta=1.0), DDPMSampler(BASE, 1000)):
        runs.append(sampler.sample(GaussianData(), y, generator=torch.Generator().manual_seed(5)))
    assert rel_err(runs[0], runs[1]) < 1e-4
    other_seed = DDPMSampler(BASE, 1000).sample(GaussianData(), y, generator=torch.Generator().manual_seed(6))
    assert rel_err(other_seed, runs[1]) > 0.1, "the comparison is sensitive to the noise"


def test_dpm_solver_first_order_is_ddim_with_clipping():
    model, y = GaussianData(mu=0.8, sd=0.6), maps()  # data often beyond [-1, 1]: clipping acts
    noise = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    ddim = DDIMSampler(BASE, 10).sample(model, y, noise=noise)
    assert rel_err(DPMSolverPPSampler(BASE, 10, order=1).sample(model, y, noise=noise), ddim) < 1e-5
    assert ddim.abs().max() == 1, "the last step returns the clipped x_0"
    unclipped = DDIMSampler(BASE, 10, clip_denoised=False).sample(model, y, noise=noise)
    assert rel_err(unclipped, ddim) > 0.01, "clipping acted, so the equality covers it"


@pytest.mark.parametrize("order, slope", [(1, 1.0), (2, 2.0)])
def test_dpm_solver_order_on_gaussian_data(order, slope):
    """Error against the exact ODE solution falls as steps^-order."""
    model, y = GaussianData(), maps(dtype=torch.float64)
    noise = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    steps, errors = (20, 40, 80, 160), []
    for n in steps:
        sampler = DPMSolverPPSampler(BASE, n, order=order, spacing="quadratic", clip_denoised=False)
        exact = model.ode_solution(noise, sampler.timesteps[0], y)
        errors.append((sampler.sample(model, y, guidance=1.0, noise=noise) - exact).abs().max().item())
    fitted = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(fitted - slope) < 0.25, (fitted, errors)


def test_second_order_beats_first_order_at_equal_steps():
    model, y = GaussianData(), maps(dtype=torch.float64)
    noise = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exact = model.ode_solution(noise, 999, y)
    err = {
        order: (
            DPMSolverPPSampler(BASE, 40, order=order, spacing="quadratic", clip_denoised=False).sample(
                model, y, guidance=1.0, noise=noise
            )
            - exact
        )
        .abs()
        .max()
        .item()
        for order in (1, 2)
    }
    assert err[2] < err[1] / 5, err


# --- guidance options ------------------------------------------------------------------
def test_guidance_window_skips_the_unconditional_pass_outside_it():
    sampler, window = make_sampler(BASE, "ddim20"), (200, 600)
    model, seen, noise = GaussianData(), [], torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    guided = sampler.sample(
        model, maps(), noise=noise, guidance_window=window, callback=lambda i, t, x: seen.append((i, int(t[0])))
    )
    inside = [t for t in sampler.timesteps if window[0] <= t <= window[1]]
    unconditional = [t[0] for t, has_map in model.calls if not has_map[0]]
    assert unconditional == inside == [600, 550, 500, 450, 400, 350, 300, 250, 200]
    assert len(model.calls) == sampler.num_evaluations(2.0, window) == 20 + len(inside)
    assert seen == list(zip(range(19, -1, -1), sampler.timesteps)), "callback(i, t, x_t) before each step"
    assert sampler.num_evaluations(2.0) == 40 and sampler.num_evaluations(1.0, window) == 20

    everywhere = sampler.sample(GaussianData(), maps(), noise=noise, guidance_window=(0, 999))
    assert torch.equal(everywhere, sampler.sample(GaussianData(), maps(), noise=noise))
    assert rel_err(guided, everywhere) > 1e-3, "guidance outside the window did change the result"


def test_batched_guidance_equals_two_passes():
    sampler, y = make_sampler(BASE, "dpm++3"), maps(1)
    noise = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    two, batched = GaussianData(), GaussianData()
    two_passes = sampler.sample(two, y, noise=noise)
    assert [has_map for _, has_map in two.calls] == [[True], [False]] * 3
    result = sampler.sample(batched, y, noise=noise, batch_cfg=True)
    assert [has_map for _, has_map in batched.calls] == [[True, False]] * 3, (
        "one forward: conditional, then unconditional"
    )
    assert sampler.num_evaluations(2.0) == 6
    assert (
        rel_err(result, two_passes) < 1e-6
        and rel_err(result, sampler.sample(GaussianData(), y, noise=noise, guidance=1.0)) > 1e-3
    )


@pytest.mark.parametrize("spec", ["ddpm10", "ddim10", "dpm++10"])
def test_seeded_runs_are_identical_and_seeds_differ(spec):
    sampler, y = make_sampler(BASE, spec), maps()
    run = [sampler.sample(GaussianData(), y, generator=torch.Generator().manual_seed(seed)) for seed in (3, 3, 4)]
    assert torch.equal(run[0], run[1]) and not torch.allclose(run[0], run[2])


def test_samplers_compose_with_a_respaced_process():
    """25 uniform steps of the 50-step process are the base's ddim25, with the base's alphas_cumprod."""
    sampler = DDIMSampler(subsample(BASE, select_steps(BASE, 50)), 25)
    assert sampler.timesteps == make_sampler(BASE, "ddim25").timesteps == list(range(960, -1, -40))
    np.testing.assert_allclose(
        sampler.diffusion.alphas_cumprod.numpy(), BASE.alphas_cumprod.numpy()[0:1000:40], rtol=1e-12
    )

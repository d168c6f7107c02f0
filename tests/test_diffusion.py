"""Diffusion math equals the published code on the reference fixtures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from qgesco.diffusion import (
    DDIMSampler,
    DDPMSampler,
    GaussianDiffusion,
    create_diffusion,
    get_named_beta_schedule,
    select_steps,
    subsample,
)
from qgesco.models import from_official_flags
from qgesco.models.checkpoint import create_model


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def ref(reference_dir):
    flags = json.loads((reference_dir / "tiny_unet_config.json").read_text())["builder_config"]
    model = from_official_flags(**flags).eval()
    model.load_state_dict(load_file(reference_dir / "tiny_unet_weights.safetensors"), strict=True)
    return model, load_file(reference_dir / "tiny_unet_io.safetensors")


def test_p_mean_variance_with_guidance(ref):
    model, io = ref
    with torch.no_grad():
        out = create_diffusion().p_mean_variance(model, io["x"], io["t"], io["y"], guidance=2.0)
    for key in ("mean", "log_variance", "pred_xstart"):
        assert rel_err(out[key], io[f"pmv_{key}"]) <= 1e-5, key


def test_guidance_on_variance_channels_would_fail(ref):
    """Guiding all 6 channels (a plausible bug) moves the variance far beyond tolerance."""
    model, io = ref
    diffusion = create_diffusion()
    with torch.no_grad():
        cond, uncond = model(io["x"], io["t"], io["y"]), model(io["x"], io["t"], torch.zeros_like(io["y"]))
        wrong = diffusion.p_mean_variance_from_output(uncond + 2.0 * (cond - uncond), io["x"], io["t"])
    assert rel_err(wrong["log_variance"], io["pmv_log_variance"]) > 1e-4


def test_guidance_at_most_one_is_a_single_conditional_pass(ref):
    model, io = ref
    calls = []

    def counting(x, t, y):
        calls.append(y.abs().sum().item())
        return model(x, t, y)

    with torch.no_grad():
        create_diffusion().p_mean_variance(counting, io["x"], io["t"], io["y"], guidance=1.0)
    assert len(calls) == 1 and calls[0] > 0


def test_batched_guidance_equals_two_passes(ref):
    model, io = ref
    d = create_diffusion()
    with torch.no_grad():
        a = d.p_mean_variance(model, io["x"], io["t"], io["y"], guidance=2.0)
        b = d.p_mean_variance(model, io["x"], io["t"], io["y"], guidance=2.0, batch_cfg=True)
    assert rel_err(b["mean"], a["mean"]) < 1e-6


def test_ddim25_step_and_loop_with_callback(ref):
    model, io = ref
    sampler = DDIMSampler(create_diffusion(), 25)
    seen = []
    with torch.no_grad():
        step = sampler.diffusion.ddim_sample(model, io["x"], io["ddim25_step_index"], io["y"], guidance=2.0)
        loop = sampler.sample(
            model,
            io["y"],
            guidance=2.0,
            noise=io["ddim25_xT"],
            batch_cfg=True,
            callback=lambda i, t, x: seen.append((i, int(t[0]), x.clone())),
        )
    assert rel_err(step["sample"], io["ddim25_step_sample"]) <= 1e-5
    assert rel_err(loop, io["ddim25_loop_sample"]) <= 1e-4
    assert [s[1] for s in seen] == list(range(960, -1, -40)) and [s[0] for s in seen] == list(range(24, -1, -1))
    assert torch.equal(seen[0][2], io["ddim25_xT"])


def test_hybrid_loss_terms(ref):
    model, io = ref
    assert 0 in io["loss_t"].tolist(), "fixture covers the t=0 decoder NLL"
    with torch.no_grad():
        terms = create_diffusion().training_losses(model, io["loss_x0"], io["loss_t"], io["y"], noise=io["loss_noise"])
    for ours, theirs in (("mse", "mse"), ("vb", "vb"), ("loss", "total")):
        assert rel_err(terms[ours], io[f"loss_{theirs}"]) <= 1e-5, ours


def test_vb_gradient_does_not_reach_the_eps_channels(ref):
    model, io = ref
    d = create_diffusion()
    x_t = d.q_sample(io["loss_x0"], io["loss_t"], io["loss_noise"])
    output = model(x_t, io["loss_t"], io["y"]).detach().requires_grad_(True)
    terms = d.training_losses(lambda *_: output, io["loss_x0"], io["loss_t"], io["y"], noise=io["loss_noise"])
    (grad,) = torch.autograd.grad(terms["vb"].sum(), output)
    assert grad[:, :3].abs().max() == 0 and grad[:, 3:].abs().max() > 0


def test_respaced_process_keeps_alphas_cumprod():
    base = create_diffusion()
    spaced = subsample(base, select_steps(base, 50))
    np.testing.assert_allclose(
        spaced.alphas_cumprod.numpy(), base.alphas_cumprod.numpy()[spaced.timestep_map.numpy()], rtol=1e-12
    )


def test_ddpm_seeded_runs_are_bit_identical():
    model = create_model("cpu-test", seed=0).eval()
    torch.nn.init.normal_(model.out[2].weight, std=0.1)
    sampler = DDPMSampler(create_diffusion(), 10)
    y = torch.zeros(2, 12, 16, 16)
    y[:, 3] = 1
    runs = []
    for _ in range(2):
        g = torch.Generator().manual_seed(3)
        with torch.no_grad():
            runs.append(sampler.sample(model, y, guidance=2.0, generator=g))
    assert torch.equal(*runs) and runs[0].abs().max() <= 1.5 and not torch.equal(runs[0][0], runs[0][1])


def test_schedules():
    lin = get_named_beta_schedule("linear", 1000)
    assert lin[0] == pytest.approx(1e-4) and lin[-1] == pytest.approx(0.02)
    cos = get_named_beta_schedule("cosine", 1000)
    assert (cos > 0).all() and (cos <= 0.999).all()
    with pytest.raises(ValueError, match="noise schedule"):
        get_named_beta_schedule("sigmoid", 10)
    with pytest.raises(ValueError, match="betas"):
        GaussianDiffusion(np.array([0.0, 0.1]))

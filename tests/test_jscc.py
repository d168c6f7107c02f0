"""DeepJSCC (qgesco/semcom/jscc.py) as a scheme: unit power per real channel use, channel uses equal to the budget,
seeded and finite output, the same fade as every scheme, quality that rises with SNR, and training that resumes
bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qgesco.cli import main
from qgesco.data import open_dataset
from qgesco.semcom.jscc import DeepJSCC, add_noise, bundled_models, load_jscc
from qgesco.semcom.jscc_train import train_jscc
from qgesco.semcom.link import rayleigh_gain
from qgesco.semcom.schemes import DeepJSCCScheme, smallest_budget

pytestmark = pytest.mark.usefixtures("one_thread")

HW = (48, 64)
CELLS = (HW[0] // 4) * (HW[1] // 4)


@pytest.fixture(scope="module")
def photo(camvid_dir) -> torch.Tensor:
    image = open_dataset("camvid:val", camvid_dir, image_hw=HW)[0].image
    return ((image + 1) * 127.5).round().to(torch.uint8)


@pytest.fixture(scope="module")
def scheme() -> DeepJSCCScheme:
    return DeepJSCCScheme(12)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(255**2 / (a.float() - b.float()).square().mean().item())


def test_bundled_models_cover_the_papers_ratios_and_the_analog_maps_budget():
    channels = sorted(load_jscc(p)[0].channels for p in bundled_models())
    # k/n = 1/12 and 1/6 (k complex uses for n = 3HW reals: channels / 96) and 12.5 real uses per pixel
    assert {8, 16, 200} <= set(channels)


def test_power_is_one_per_real_use(photo, scheme):
    untrained = DeepJSCC(5).encode(torch.rand(3, 3, *HW))
    assert untrained.square().flatten(1).mean(1).sub(1).abs().max() < 0.01
    for cpp in (0.4, 1.0, 12.5):
        plan = scheme.plan(None, photo, math.floor(cpp * HW[0] * HW[1]), 10.0)
        assert abs(plan.symbols.square().mean().item() - 1) < 0.01, cpp


def test_channel_uses_equal_the_budget(photo, scheme):
    for model, _ in scheme.models:
        budget = model.channels * CELLS
        for room in (budget, budget + CELLS - 1):  # the model of the most uses that fit is taken
            plan = scheme.plan(None, photo, room, 10.0)
            assert plan.uses == budget == plan.symbols.numel() and plan.detail["channels"] == model.channels
    smallest = min(model.channels for model, _ in scheme.models) * CELLS
    assert scheme.plan(None, photo, smallest - 1, 10.0) is None
    assert smallest_budget(scheme, None, photo, 10.0) == smallest


def test_noise_per_real_use_is_the_psnrs_sigma():
    z = torch.zeros(1, 8, 120, 160)
    for snr in (0.0, 10.0, 20.0):
        noise = add_noise(z, snr, generator=torch.Generator().manual_seed(0))
        assert noise.std().item() == pytest.approx(10 ** (-snr / 20), rel=0.01)


def test_output_is_finite_and_deterministic_with_a_seed(photo, scheme):
    plan = scheme.plan(None, photo, HW[0] * HW[1], 5.0)
    a, b, c = (scheme.receive(plan, None, 5.0, torch.Generator().manual_seed(s)) for s in (3, 3, 4))
    assert torch.equal(a.image, b.image) and not torch.equal(a.image, c.image)
    assert a.image.shape == (3, *HW) and a.image.dtype == torch.uint8
    model = load_jscc(bundled_models()[0])[0]
    decoded = model(photo[None].float() / 255, torch.tensor([-20.0]), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(decoded).all()


def test_rayleigh_is_the_fade_every_scheme_sees(photo):
    """The fade comes first from the generator, as for the analog map and the digital link; the receiver
    zero-forces it and tells the decoder the effective SNR."""
    rayleigh = DeepJSCCScheme(12, channel="rayleigh")
    plan = rayleigh.plan(None, photo, HW[0] * HW[1], 10.0)
    got = rayleigh.receive(plan, None, 10.0, torch.Generator().manual_seed(5)).image
    g = torch.Generator().manual_seed(5)
    gain = abs(rayleigh_gain(g))
    model = next(m for m, meta in rayleigh.models if meta["sha256"] == plan.detail["model_sha256"])
    with torch.no_grad():
        decoded = model.decode(add_noise(plan.symbols, 10.0, gain, g), torch.tensor(10 + 20 * math.log10(gain)))
    assert torch.equal(got, (decoded[0] * 255).round().clamp(0, 255).to(torch.uint8))


def test_quality_rises_with_snr_without_a_cliff(photo, scheme):
    plan = scheme.plan(None, photo, HW[0] * HW[1], 0.0)
    psnrs = [
        np.mean([_psnr(scheme.receive(plan, None, s, torch.Generator().manual_seed(k)).image, photo) for k in range(3)])
        for s in (-5.0, 0.0, 10.0, 20.0)
    ]
    assert psnrs == sorted(psnrs) and psnrs[-1] > psnrs[0] + 2, psnrs
    assert psnrs[0] > 15  # at -5 dB the photo is blurred, not lost


def test_training_resumes_bit_for_bit(tmp_path, monkeypatch):
    settings = dict(channels=2, data="synthetic:6", val_data="synthetic:2", steps=4, batch=2, save_every=2)
    train_jscc(tmp_path / "whole", progress=False, **settings)
    steps = {"n": 0}
    original = torch.optim.Adam.step

    def interrupted(self, *args, **kwargs):
        steps["n"] += 1
        if steps["n"] == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(torch.optim.Adam, "step", interrupted)
        with pytest.raises(KeyboardInterrupt):
            train_jscc(tmp_path / "cut", progress=False, **settings)
    with pytest.raises(ValueError, match="--resume"):
        train_jscc(tmp_path / "cut", progress=False, **settings)
    meta = train_jscc(tmp_path / "cut", progress=False, resume=True, **settings)
    whole, cut = (load_jscc(tmp_path / d / "deepjscc.safetensors")[0].state_dict() for d in ("whole", "cut"))
    assert meta["step"] == 4 and all(torch.equal(whole[k], cut[k]) for k in whole)


def test_cli_refuses_in_one_line(tmp_path, capsys):
    assert main(["train-jscc", "--channels", "0", "--out", str(tmp_path / "a")]) == 2
    assert main(["train-jscc", "--channels", "4", "--snr-range", "10,0", "--out", str(tmp_path / "b")]) == 2
    assert main(["train-jscc", "--channels", "4", "--resume", "--out", str(tmp_path / "c")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("qgesco train-jscc: error:") for line in lines)
    assert not any((tmp_path / d).exists() for d in "abc")

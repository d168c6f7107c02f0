"""Semantic vs digital transmission (qgesco.semcom): channel-use accounting, the digital chain's
threshold, seeding, and the refusals of `qgesco compare`."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from qgesco.cli import main
from qgesco.semcom import DigitalLink, capacity, make_schemes
from qgesco.semcom.codec import _jpeg, _resize, decode_image, decode_map, image_payload, map_payload
from qgesco.semcom.runner import check_settings

pytest.importorskip("sionna.phy", reason="the digital schemes need sionna-no-rt (pip install 'qgesco[semcom]')")

HW = (48, 64)
C = 12


def _scene(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A street-like label map (horizontal bands with a few boxes) and a smooth photo of it."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(HW, dtype=torch.int64)
    for row, cls in zip((0, 14, 26, 36), (1, 3, 5, 7)):
        labels[row:] = cls
    for _ in range(6):
        y, x = torch.randint(0, 40, (1,), generator=g).item(), torch.randint(0, 56, (1,), generator=g).item()
        labels[y : y + 8, x : x + 8] = torch.randint(0, C, (1,), generator=g).item()
    palette = torch.randint(0, 256, (C, 3), generator=g, dtype=torch.uint8)
    photo = palette[labels].permute(2, 0, 1).contiguous()
    photo = (photo.float() + torch.randn(photo.shape, generator=g) * 6).clamp(0, 255).to(torch.uint8)
    return labels, photo


@pytest.fixture(scope="module")
def schemes():
    return make_schemes(["analog-map", "digital-map", "digital-image", "ideal-map", "ideal-image"], C, "qpsk-1/2")


@pytest.mark.parametrize("cpp", [12.5, 3.2, 1.0, 0.8])
def test_every_scheme_fits_the_budget_and_digital_ones_fill_it_within_a_codeword(schemes, cpp):
    labels, photo = _scene()
    budget = math.floor(cpp * HW[0] * HW[1])
    codeword = schemes["digital-map"].link.uses_per_codeword
    for name, scheme in schemes.items():
        plan = scheme.plan(labels, photo, budget, 10.0)
        assert plan is not None and plan.budget == budget and 0 < plan.uses <= budget, name
        if name in ("digital-map", "digital-image"):
            assert plan.uses % codeword == 0
            bits = 8 * (len(plan.payload) + 1)
            assert plan.uses == math.ceil(bits / scheme.link.k) * codeword
    image_plan = schemes["digital-image"].plan(labels, photo, budget, 10.0)
    if image_plan.quality < 95:  # the photo has room to grow: the JPEG takes all but less than a codeword
        assert budget - image_plan.uses < codeword
    analog = schemes["analog-map"].plan(labels, photo, budget, 10.0)
    present = len(labels[analog.factor // 2 :: analog.factor, analog.factor // 2 :: analog.factor].unique())
    assert analog.uses == present * (HW[0] // analog.factor) * (HW[1] // analog.factor) + C + 2


def test_ideal_code_carries_capacity_bits():
    assert capacity(0.0) == pytest.approx(0.5)
    assert capacity(20.0) == pytest.approx(0.5 * math.log2(101))


def test_digital_chain_error_free_at_high_snr_and_fails_below_threshold():
    link = DigitalLink("qpsk-1/2")
    payload = bytes(range(256)) * 3
    g = torch.Generator().manual_seed(0)
    clean = link.send(payload, 10.0, g)
    assert clean.ok and clean.data == payload and clean.codeword_errors == 0
    assert clean.codewords == math.ceil(8 * len(payload) / link.k)
    # rate 1/2 on QPSK needs Eb/N0 of about 1-2 dB, here Eb/N0 = PSNR: -3 dB is well below
    noisy = link.send(payload, -3.0, torch.Generator().manual_seed(0))
    assert not noisy.ok and noisy.codeword_errors == noisy.codewords and noisy.data != payload


def test_codecs_round_trip():
    labels, photo = _scene(1)
    assert torch.equal(decode_map(map_payload(labels, 1), HW, 1), labels)
    coarse = decode_map(map_payload(labels, 4), HW, 4)
    assert coarse.shape == labels.shape and (coarse == labels).float().mean() > 0.8
    for factor, quality in ((1, 90), (2, 30)):
        # the header-less scan decodes to exactly what the whole JPEG file decodes to
        small = photo if factor == 1 else _resize(photo, (HW[0] // factor, HW[1] // factor))
        with Image.open(io.BytesIO(_jpeg(small, quality))) as im:
            full = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)
        expected = full if factor == 1 else _resize(full, HW)
        assert torch.equal(decode_image(image_payload(photo, factor, quality), HW, factor, quality), expected)


def test_seeded_transmissions_are_identical(schemes):
    labels, photo = _scene(2)
    budget = 3 * HW[0] * HW[1]
    for name in ("analog-map", "digital-map", "digital-image"):
        scheme = schemes[name]
        plan = scheme.plan(labels, photo, budget, 1.0)
        a, b = (scheme.receive(plan, labels, 1.0, torch.Generator().manual_seed(7)) for _ in range(2))
        assert a.failed == b.failed, name
        for x, y in ((a.y, b.y), (a.image, b.image)):
            assert (x is None and y is None) or torch.equal(x, y), name
    analog = schemes["analog-map"]
    plan = analog.plan(labels, photo, budget, 10.0)
    other = analog.receive(plan, labels, 10.0, torch.Generator().manual_seed(8)).y
    assert not torch.equal(analog.receive(plan, labels, 10.0, torch.Generator().manual_seed(7)).y, other)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(snrs=[float("nan")]), "finite"),
        (dict(budgets=[0.0]), "> 0"),
        (dict(schemes=["carrier-pigeon"]), "unknown scheme"),
        (dict(view_snr=3.0), "not among"),
        (dict(mcs="qpsk-7/8"), "unknown code"),
        (dict(batch_size=0), "batch_size"),
    ],
)
def test_bad_settings_refused(kwargs, message):
    settings = dict(snrs=[0.0, 10.0], budgets=[1.0], schemes=["analog-map"], images=4, view_snr=None) | kwargs
    with pytest.raises(ValueError, match=message):
        check_settings(**settings)


def test_cli_refuses_in_one_line_before_work(camvid_dir, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["compare", "--data", "camvid:val", "--data-root", str(camvid_dir), "--images", "2", "--out", str(out)]
    assert main(common + ["--snr", "0,nan"]) == 2
    assert main(common + ["--budget", "0.05"]) == 2
    assert main(common + ["--schemes", "analog-map,smoke-signal"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("qgesco compare: error:") for line in lines)
    assert "too small" in lines[1] and "needs at least" in lines[1]
    assert not (out / "images").exists()

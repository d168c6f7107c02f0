"""Semantic vs digital transmission (qgesco.semcom): channel-use accounting, the digital chain's
threshold, seeding, and the refusals of `qgesco compare`."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from qgesco.channel import Rayleigh, encode, noise_sigma
from qgesco.cli import main
from qgesco.semcom import DigitalLink, capacity, make_schemes
from qgesco.semcom.codec import CODECS, _resize, _save, best_fit, decode_image, decode_map, image_payload, map_payload
from qgesco.semcom.link import rayleigh_gain
from qgesco.semcom.runner import _map_cost, check_settings

pytest.importorskip("sionna.phy", reason="the digital schemes need sionna-no-rt (pip install 'qgesco[semcom]')")
pytestmark = pytest.mark.usefixtures("one_thread")  # Sionna's many small ops: one thread is much faster on 2 cores

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
    return make_schemes(
        ["analog-map", "digital-map", "digital-image", "ideal-map", "ideal-image"], C, "qpsk-1/2", codecs=CODECS
    )


@pytest.mark.parametrize("cpp", [12.5, 3.2, 1.0, 0.8])
def test_every_scheme_fits_the_budget_and_digital_ones_fill_it_within_a_codeword(schemes, cpp):
    labels, photo = _scene()
    budget = math.floor(cpp * HW[0] * HW[1])
    codeword = schemes["digital-map"].link.uses_per_codeword
    for name, scheme in schemes.items():
        plan = scheme.plan(labels, photo, budget, 10.0)
        assert plan is not None and plan.budget == budget and 0 < plan.uses <= budget, name
        if name.startswith("digital-"):
            assert plan.uses % codeword == 0
            bits = 8 * (len(plan.payload) + 1)
            assert plan.uses == math.ceil(bits / scheme.link.k) * codeword
    for codec, top in (("jpeg", 95), ("webp", 100), ("jp2", 100)):
        image_plan = schemes["digital-image" + ("" if codec == "jpeg" else f"-{codec}")].plan(
            labels, photo, budget, 10.0
        )
        if image_plan.quality < top:  # the photo has room to grow: it takes all but less than a codeword
            assert budget - image_plan.uses < codeword, codec
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
    assert clean.ok and clean.data[: len(payload)] == payload and clean.codeword_errors == 0
    assert clean.data[len(payload) :] == bytes(len(clean.data) - len(payload))  # padding, no length
    assert clean.codewords == math.ceil(8 * len(payload) / link.k)
    # rate 1/2 on QPSK needs Eb/N0 of about 1-2 dB, here Eb/N0 = PSNR: -3 dB is well below
    noisy = link.send(payload, -3.0, torch.Generator().manual_seed(0))
    assert not noisy.ok and noisy.codeword_errors == noisy.codewords and noisy.data[: len(payload)] != payload


@pytest.mark.parametrize("codec", CODECS)
def test_codecs_round_trip(codec):
    labels, photo = _scene(1)
    assert torch.equal(decode_map(map_payload(labels, 1) + bytes(70), HW, 1), labels)
    coarse = decode_map(map_payload(labels, 4), HW, 4)
    assert coarse.shape == labels.shape and (coarse == labels).float().mean() > 0.8
    for factor, quality in ((1, 90), (2, 30)):
        # what is sent decodes to exactly what the whole file decodes to, and is smaller by the known header
        small = photo if factor == 1 else _resize(photo, (HW[0] // factor, HW[1] // factor))
        file = _save(small, codec, quality)
        with Image.open(io.BytesIO(file)) as im:
            full = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)
        expected = full if factor == 1 else _resize(full, HW)
        payload = image_payload(photo, factor, quality, codec)
        assert torch.equal(decode_image(payload, HW, factor, quality, codec), expected)
        # self-delimiting: the link's zero padding to a whole codeword changes nothing
        assert torch.equal(decode_image(payload + bytes(70), HW, factor, quality, codec), expected)
        # not sent: JPEG's tables and JPEG 2000's main header (at 48x64) with their end markers; WebP's
        # 20-byte RIFF container, for which 2 bytes of length are sent; the HEIF containers (with HEVC's parameter
        # sets) and AVIF's sequence header
        unsent = {"jpeg": 625, "webp": 18, "jp2": 125, "hevc": 417, "avif": 288}
        assert factor > 1 or len(file) - len(payload) == unsent[codec]


@pytest.mark.parametrize("codec", CODECS)
def test_codec_quality_grows_with_the_budget(codec):
    """More bytes never give a worse photo: PSNR to the original is non-decreasing in the room."""
    _, photo = _scene(3)
    psnrs, sizes = [], []
    for room in (150, 250, 400, 700, 1200, 2500):
        factor, quality, payload = best_fit(photo, room, codec)
        decoded = decode_image(payload, HW, factor, quality, codec).float()
        psnrs.append(float(10 * torch.log10(255**2 / (decoded - photo.float()).square().mean())))
        sizes.append(len(payload))
        assert len(payload) <= room
    assert sizes == sorted(sizes) and psnrs == sorted(psnrs), (sizes, psnrs)
    # HEVC and AVIF are within 3 dB of their 4:2:0 ceiling on this photo (~30 dB) already at 150 bytes
    assert psnrs[-1] > psnrs[0] + (1.5 if codec in ("hevc", "avif") else 3)


def test_every_digital_scheme_delivers_its_payload_exactly_on_a_clean_channel(schemes):
    """Through the whole chain, padding included: what the receiver shows is what the payload decodes to."""
    labels, photo = _scene(4)
    budget = 3 * HW[0] * HW[1]
    for name, scheme in schemes.items():
        if name.startswith("digital-image"):
            plan = scheme.plan(labels, photo, budget, 20.0)
            outcome = scheme.receive(plan, labels, 20.0, torch.Generator().manual_seed(0))
            expected = decode_image(plan.payload, HW, plan.factor, plan.quality, scheme.codec)
            assert not outcome.failed and torch.equal(outcome.image, expected), name
    plan = schemes["digital-map"].plan(labels, photo, budget, 20.0)
    outcome = schemes["digital-map"].receive(plan, labels, 20.0, torch.Generator().manual_seed(0))
    assert plan.factor == 1 and torch.equal(outcome.y, encode(labels[None], C))


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


def test_rayleigh_fade_is_the_analog_maps_and_the_chain_fails_in_deep_fades_or_low_snr():
    # the digital link's fade is the analog map's: qgesco.channel.Rayleigh draws |h| then the noise
    zeros = torch.zeros(5, 10)
    analog = Rayleigh(0.0)(zeros, torch.Generator().manual_seed(3), image_index=torch.zeros(5, dtype=torch.long))
    g = torch.Generator().manual_seed(3)
    h = rayleigh_gain(g)
    assert torch.allclose(analog, noise_sigma(0.0) * torch.randn(5, 10, generator=g) / abs(h))
    link = DigitalLink("qpsk-1/2", "rayleigh")
    payload = bytes(range(256)) * 2
    seeds = {s: abs(rayleigh_gain(torch.Generator().manual_seed(s))) for s in range(4)}  # 1.11 0.50 0.32 0.58
    clean = link.send(payload, 30.0, torch.Generator().manual_seed(2))  # |h|^2 / sigma^2 = 20 dB
    assert seeds[2] < 0.35 and clean.ok and clean.data.startswith(payload)
    lost = link.send(payload, -2.0, torch.Generator().manual_seed(0))  # even |h| = 1.11 leaves -1 dB
    assert seeds[0] > 1 and not lost.ok and lost.codeword_errors == lost.codewords
    # the same PSNR decodes in a mild fade and is lost in a deep one: the outage AWGN does not have
    assert link.send(payload, 4.0, torch.Generator().manual_seed(0)).ok
    assert not link.send(payload, 4.0, torch.Generator().manual_seed(2)).ok
    assert DigitalLink("qpsk-1/2").send(payload, 4.0, torch.Generator().manual_seed(2)).ok


def test_ideal_bound_under_fading_uses_the_fade_and_has_outages():
    labels, photo = _scene()
    ideal = make_schemes(["ideal-map"], C, "qpsk-1/2", channel="rayleigh")["ideal-map"]
    budget = HW[0] * HW[1]
    strong, weak = ideal.plan(labels, photo, budget, 10.0, 1.5), ideal.plan(labels, photo, budget, 10.0, 0.5)
    assert strong.uses < weak.uses and strong.factor <= weak.factor
    assert capacity(10.0, 0.5) == pytest.approx(capacity(10.0 + 20 * math.log10(0.5)))
    assert ideal.plan(labels, photo, budget, 0.0, 1e-3) is None


def test_an_image_regenerates_the_same_alone_or_among_others(tmp_path, monkeypatch):
    """Per-image x_T and step noise: image 1 in a run of one image equals image 1 in a run of three."""
    import qgesco.semcom.runner as runner
    from qgesco.api import load_model

    monkeypatch.setattr(runner, "DEFAULT_SAMPLER", "ddpm4")
    model = load_model("camvid-demo")
    maps = {i: encode(_scene(i)[0][None], C) for i in range(3)}
    s = {"seed": 0, "image_hw": list(HW)}
    key = ("map", 1)
    runner._regenerate(model, {key: {1: maps[1]}}, tmp_path / "one", s, "cpu", False)
    runner._regenerate(model, {key: maps}, tmp_path / "three", s, "cpu", False)
    alone, among = (np.asarray(Image.open(runner._key_path(tmp_path / d, key, 1))) for d in ("one", "three"))
    assert np.array_equal(alone, among)
    other = np.asarray(Image.open(runner._key_path(tmp_path / "three", key, 0)))
    assert np.abs(other.astype(int) - among.astype(int)).mean() > 5  # and images do differ


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(snrs=[float("nan")]), "finite"),
        (dict(budgets=[0.0]), "> 0"),
        (dict(schemes=["carrier-pigeon"]), "unknown scheme"),
        (dict(view_snr=3.0), "not among"),
        (dict(mcs="qpsk-7/8"), "unknown code"),
        (dict(channel="fog"), "unknown channel"),
        (dict(codecs=["bpg"]), "unknown image codec"),
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
    assert main(common + ["--codec", "jpeg,bpg"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("qgesco compare: error:") for line in lines)
    assert "unknown image codec" in lines[3]
    assert "too small" in lines[1] and "needs at least" in lines[1]
    assert not (out / "images").exists()


def test_the_map_cost_table_only_uses_resolutions_every_image_was_regenerated_at(tmp_path):
    """Under fading, one image's ideal map can shrink to a factor no other image got; the table of what a
    cheaper map costs must not average (or look for) images that were never regenerated."""
    regen = {("map", 1): {0: None, 1: None}, ("map", 8): {1: None}, ("analog", 2, 10.0): {0: None, 1: None}}
    assert sorted(_map_cost(regen, [0, 1], tmp_path)) == [(1, 0), (1, 1)]

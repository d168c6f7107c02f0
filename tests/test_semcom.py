"""Semantic vs digital transmission (qgesco.semcom): channel-use accounting, one SNR (unit power), the map
cleanup, link adaptation, the digital chain's threshold, seeding and common random numbers, the statistics,
and the refusals of `qgesco compare`."""

from __future__ import annotations

import io
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from qgesco.channel import Rayleigh, encode, noise_sigma
from qgesco.cli import main
from qgesco.semcom import CompareSettings, DigitalLink, capacity, make_schemes, stats
from qgesco.semcom import mcs as link_adaptation
from qgesco.semcom.codec import CODECS, _resize, _save, best_fit, decode_image, decode_map, image_payload, map_payload
from qgesco.semcom.link import MCS_TABLE, rayleigh_gain

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
    codeword = schemes["digital-map"].link(budget, 10.0).uses_per_codeword
    for name, scheme in schemes.items():
        plan = scheme.plan(labels, photo, budget, 10.0)
        assert plan is not None and plan.budget == budget and 0 < plan.uses <= budget, name
        if name.startswith("digital-"):
            assert plan.uses % codeword == 0
            bits = 8 * (len(plan.payload) + 1)
            assert plan.uses == math.ceil(bits / (scheme.link(budget, 10.0).k - 24)) * codeword
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
    assert clean.codewords == math.ceil(8 * len(payload) / (link.k - 24))  # a CRC-24 in every codeword
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
    plan = analog.plan(labels, photo, budget, -5.0)  # low enough for the hard decision to err somewhere
    other = analog.receive(plan, labels, -5.0, torch.Generator().manual_seed(8)).y
    assert not torch.equal(analog.receive(plan, labels, -5.0, torch.Generator().manual_seed(7)).y, other)


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


def _regen_settings(tmp_path, scenes) -> dict:
    return {"seed": 0, "image_hw": list(HW), "sampler": "ddpm4", "dataset_indices": scenes, "regen_dir": str(tmp_path)}


def test_an_image_regenerates_the_same_alone_or_among_others(tmp_path):
    """Per-scene x_T and step noise: scene 1 in a run of one image equals scene 1 in a run of three."""
    import qgesco.semcom.runner as runner
    from qgesco.api import load_model

    model = load_model("camvid-demo")
    maps = {i: encode(_scene(i)[0][None], C) for i in range(3)}
    key = runner.map_key(maps[1])
    one, three = _regen_settings(tmp_path / "one", [1]), _regen_settings(tmp_path / "three", [0, 1, 2])
    runner._regenerate(model, {(0, key): maps[1]}, one, "cpu", False)
    runner._regenerate(model, {(i, runner.map_key(y)): y for i, y in maps.items()}, three, "cpu", False)
    alone = np.asarray(Image.open(runner._regen_path(one, 0, key)))
    among = np.asarray(Image.open(runner._regen_path(three, 1, key)))
    assert np.array_equal(alone, among)
    other = np.asarray(Image.open(runner._regen_path(three, 0, runner.map_key(maps[0]))))
    assert np.abs(other.astype(int) - among.astype(int)).mean() > 5  # and images do differ


def test_an_images_regenerations_share_their_noise_across_schemes(tmp_path, monkeypatch):
    """Common random numbers: every map of a scene (an analog map, an exact map) starts from the same x_T and
    draws the same sampler noise; another scene draws other noise."""
    import qgesco.semcom.runner as runner

    calls = []

    def record(model, y, *, sampler, generator, noise):
        calls.append((runner.map_key(y), noise.clone(), torch.randn(8, generator=generator)))
        return torch.zeros(1, 3, *HW)

    monkeypatch.setattr(runner, "regenerate", record)
    labels, photo = _scene(5)
    analog = make_schemes(["analog-map"], C)["analog-map"]
    plan = analog.plan(labels, photo, 13 * HW[0] * HW[1], 0.0)
    noisy = analog.receive(plan, labels, 0.0, torch.Generator().manual_seed(1)).y
    exact = encode(labels[None], C)
    other = encode(_scene(6)[0][None], C)
    regen = {(0, runner.map_key(noisy)): noisy, (0, runner.map_key(exact)): exact, (1, runner.map_key(other)): other}
    model = SimpleNamespace(config=SimpleNamespace(learn_sigma=True))
    runner._regenerate(model, regen, _regen_settings(tmp_path, [40, 41]) | {"sampler": "ddpm4"}, "cpu", False)
    by_key = {k: (n, g) for k, n, g in calls}
    assert len(by_key) == 3  # two different maps of scene 40 and one of scene 41 ...
    (n0, g0), (n1, g1) = (by_key[runner.map_key(y)] for y in (noisy, exact))
    assert torch.equal(n0, n1) and torch.equal(g0, g1)  # ... the two of scene 40 with the same noise
    n2, g2 = by_key[runner.map_key(other)]
    assert not torch.equal(n0, n2) and not torch.equal(g0, g2)


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
        CompareSettings("camvid:val", **settings)


def test_compare_settings_are_normalised_and_round_trip_through_a_dict():
    s = CompareSettings(snrs=[20, 0, 10], budgets=[1], schemes=["analog-map"], codecs="webp")
    assert s.snrs == (0.0, 10.0, 20.0) and s.view_snr == 10.0 and s.codecs == ("webp",)
    assert CompareSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    with pytest.raises(ValueError, match="workers must be in"):
        CompareSettings(workers=0)


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


# ---------------------------------------------------------------- one SNR: unit average power per real use


@pytest.mark.parametrize("seed", [0, 3])
def test_every_scheme_sends_unit_average_power_per_real_channel_use(seed):
    """The analog map scaled by sqrt(K) and every QAM order: mean square per real use 1 +- 1 %, so one SNR
    means the same power for every scheme; the paper's convention ("peak") is 1/K on the map's planes."""
    labels, _ = _scene(seed)
    for factor in (1, 2, 4, 8):
        analog = make_schemes(["analog-map"], C)["analog-map"]
        assert float(analog.symbols(labels, factor).square().mean()) == pytest.approx(1.0, rel=0.01)
        planes = analog.planes(labels, factor)
        peak = make_schemes(["analog-map"], C, power="peak")["analog-map"]
        sent = peak.symbols(labels, factor)[: -C - 2]  # without the +-1 mask and header bits
        assert float(sent.square().mean()) == pytest.approx(1 / planes, rel=1e-6)
        assert analog.gain_db(labels, factor) == pytest.approx(10 * math.log10(planes))
    payload = np.random.default_rng(seed).integers(0, 256, 20_000, np.uint8).tobytes()
    for mcs in ("mcs0", "mcs4", "mcs9", "mcs15", "mcs27", "qpsk-1/2"):
        symbols = DigitalLink(mcs).real_symbols(payload)
        assert float(symbols.square().mean()) == pytest.approx(1.0, rel=0.01), mcs


def test_analog_map_noise_is_scaled_by_its_power_gain():
    """At unit power the one-hot map sees sigma / sqrt(K): received - sent has that spread on the planes."""
    labels, photo = _scene(1)
    analog = make_schemes(["analog-map"], C, cleanup="none")["analog-map"]
    plan = analog.plan(labels, photo, 13 * HW[0] * HW[1], 0.0)
    y = analog.receive(plan, labels, 0.0, torch.Generator().manual_seed(0)).y
    sent = encode(labels[None], C)
    present = sent.flatten(2).ne(0).any(-1)[0]
    spread = float((y - sent)[0, present].std())
    assert spread == pytest.approx(noise_sigma(0.0) / math.sqrt(int(present.sum())), rel=0.03)


# ---------------------------------------------------------------- the cleanup


def test_a_clean_map_survives_the_cleanup():
    """At 100 dB the hard decision returns the sent map on every pixel; the paper's avgmax widens every
    region by a pixel, leaving border pixels with two planes at 1 (what the issue measured: 18 %)."""
    from qgesco.channel import make_channel, transmit

    labels, photo = _scene(2)
    y = encode(labels[None], C)
    got = {
        f: transmit(y, make_channel("awgn", 100.0), C, cleanup=f, generator=torch.Generator().manual_seed(0))
        for f in ("argmax", "avgmax")
    }
    exact = {f: float(((g - y).abs() < 0.5).all(1).float().mean()) for f, g in got.items()}
    assert exact["argmax"] == 1.0 and torch.equal(got["argmax"], y)
    assert exact["avgmax"] < 0.95
    for psnr in (100.0, 30.0, 10.0):  # the compare path too: auto is the hard decision from 0 dB
        analog = make_schemes(["analog-map"], C)["analog-map"]
        plan = analog.plan(labels, photo, 13 * HW[0] * HW[1], psnr)
        assert torch.equal(analog.receive(plan, labels, psnr, torch.Generator().manual_seed(0)).y, y)


# ---------------------------------------------------------------- link adaptation


def test_mcs_choice_is_monotone_in_snr_and_follows_the_cached_table(monkeypatch):
    budget = 3 * HW[0] * HW[1]
    chosen = [int(link_adaptation.choose(p, budget)[3:]) for p in np.arange(-10, 32, 0.5)]
    assert chosen == sorted(chosen) and chosen[0] == 0 and chosen[-1] == len(MCS_TABLE) - 1
    for p in (0.0, 7.0, 14.0, 22.0):  # the rule: the highest MCS within the target, the next one above it
        name = link_adaptation.choose(p, budget)
        i = int(name[3:])
        cw = lambda m: budget // DigitalLink(m).uses_per_codeword  # noqa: E731
        assert link_adaptation.block_error(name, p, cw(name)) <= 0.1
        if i + 1 < len(MCS_TABLE):
            assert link_adaptation.block_error(f"mcs{i + 1}", p, cw(f"mcs{i + 1}")) > 0.1
    # not knowing a Rayleigh fade, the sender keeps a margin: a lower MCS at the same average SNR
    assert int(link_adaptation.choose(20.0, budget, fading=True)[3:]) < int(link_adaptation.choose(20.0, budget)[3:])
    # it reads the cached curves: a table in which every MCS fails leaves the most robust one
    table = link_adaptation.table()
    monkeypatch.setattr(
        link_adaptation, "table", lambda: {**table, "bler": {m: np.ones_like(v) for m, v in table["bler"].items()}}
    )
    link_adaptation.choose.cache_clear()
    assert link_adaptation.choose(20.0, budget) == "mcs0"
    link_adaptation.choose.cache_clear()


def test_the_cached_bler_curves_agree_with_the_link():
    """Spot check of the shipped table against fresh decoding: where it says all pass, all pass, and where it
    says all fail, all fail (other noise than the bench's)."""
    for mcs, p_pass, p_fail in (("mcs4", 4.0, 0.0), ("mcs15", 16.0, 12.0)):
        assert link_adaptation.bler(mcs, p_pass) == 0 and link_adaptation.bler(mcs, p_fail) == 1
        link = DigitalLink(mcs)
        payload = bytes(range(256)) * 6
        assert link.send(payload, p_pass, torch.Generator().manual_seed(9)).ok
        failed = link.send(payload, p_fail, torch.Generator().manual_seed(9))
        assert failed.codeword_errors == failed.codewords


@pytest.mark.parametrize("snr", [0.0, 8.0, 16.0, 25.0])
def test_rate_matching_fills_the_budget_within_one_codeword(snr):
    """With link adaptation the photo's payload fills the MCS's room: uses within [budget - codeword, budget]
    whenever the codec has room to grow; never above the budget; the CRC is counted."""
    labels, photo = _scene(3)
    schemes = make_schemes(["digital-map", "digital-image"], C, codecs=CODECS)
    for cpp in (0.8, 1.6, 3.2):
        budget = math.floor(cpp * HW[0] * HW[1])
        for name, scheme in schemes.items():
            plan = scheme.plan(labels, photo, budget, snr)
            if plan is None:
                continue
            link = scheme.link(budget, snr)
            assert plan.detail["mcs"] == link_adaptation.choose(snr, budget) == link.mcs
            assert plan.uses <= budget and plan.uses == link.channel_uses(8 * (len(plan.payload) + 1))
            top = {"digital-image": 95}.get(name, 100)
            # JPEG 2000's rate control moves in steps coarser than a short 256-QAM codeword: not checked
            if name in ("digital-image", "digital-image-webp") and plan.quality < top:
                assert budget - plan.uses < link.uses_per_codeword, (name, cpp)


def test_table_link_draws_codeword_fates_from_the_curves():
    payload = bytes(range(256)) * 40
    lossy = DigitalLink("mcs9", mode="table")
    p = next(x for x in np.arange(5, 12, 0.25) if 0.2 < link_adaptation.bler("mcs9", float(x)) < 0.8)
    d = lossy.send(payload, float(p), torch.Generator().manual_seed(0))
    assert d.codewords == math.ceil(8 * len(payload) / lossy.payload_bits)
    assert abs(d.codeword_errors / d.codewords - link_adaptation.bler("mcs9", float(p))) < 0.2
    clean = lossy.send(payload, 20.0, torch.Generator().manual_seed(0))
    assert clean.ok and clean.data[: len(payload)] == payload


def test_low_rates_repeat_the_mother_code_and_decode():
    """mcs0 (rate 0.117, below the LDPC mother code's 1/5) repeats coded bits; combining their LLRs decodes
    where the table says it does."""
    link = DigitalLink("mcs0")
    assert link.k / link.n < 0.2
    payload = bytes(range(200))
    assert link.send(payload, -3.0, torch.Generator().manual_seed(0)).ok
    assert not link.send(payload, -10.0, torch.Generator().manual_seed(0)).ok


# ---------------------------------------------------------------- statistics


def test_bootstrap_intervals_and_paired_differences():
    rng = np.random.default_rng(0)
    base = rng.normal(0.3, 0.1, 101)
    a, b = base + 0.02 + rng.normal(0, 0.005, 101), base
    boot = stats.Bootstrap(101)
    ci = boot.mean(a)
    assert ci["lo"] < a.mean() < ci["hi"] and 0.02 < ci["hi"] - ci["lo"] < 0.06  # ~ 2 x 1.96 x 0.1 / sqrt(101)
    diff = boot.mean_difference(a, b)
    assert stats.significant(diff) and diff["hi"] - diff["lo"] < 0.01  # pairing removes the scene spread
    assert not stats.significant(boot.mean_difference(a, a + rng.normal(0, 0.01, 101)))
    confusion = np.zeros((101, 3, 3), int)
    confusion[:, 0, 0], confusion[:, 1, 1], confusion[:, 1, 2] = 10, 5, 5
    assert boot.miou(confusion)["value"] == pytest.approx((1 + 0.5 + 0) / 3)


def test_fading_expectation_pieces():
    g = stats.fades(0, 3, 10.0, 20_000)
    assert g.mean() == pytest.approx(1.0, rel=0.03) and np.mean(g < 0.1) == pytest.approx(1 - math.exp(-0.1), abs=0.01)
    w = stats.interpolation_weights([0.0, 10.0, 20.0], np.array([-5.0, 5.0, 12.5, 30.0]))
    assert np.allclose(w, [[1, 0, 0], [0.5, 0.5, 0], [0, 0.75, 0.25], [0, 0, 1]])
    p = stats.delivery_probability("mcs4", np.array([-10.0, 30.0]), 3)
    assert p[0] == 0 and p[1] == 1

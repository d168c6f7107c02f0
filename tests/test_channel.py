"""qgesco.channel: encoding, presence compression, noise statistics, fading, cleanup, bandwidth, palette."""

from __future__ import annotations

import math

import pytest
import torch

from qgesco import channel as ch
from qgesco.fileio import save_tensors


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def street(n: int = 2, h: int = 32, w: int = 48, num_classes: int = 12) -> torch.Tensor:
    """Blocky label maps that use only some classes: a different subset per image."""
    labels = torch.zeros(n, h, w, dtype=torch.long)
    for i in range(n):
        labels[i, : h // 2] = i
        labels[i, h // 2 :, : w // 3] = 3 + i
        labels[i, h // 2 :, w // 3 :] = num_classes - 1
    return labels


# ---------------------------------------------------------------- encoding


def test_encode_is_one_hot_plus_hand_computed_instance_edges():
    labels = torch.tensor([[[0, 0, 0, 2, 2], [0, 0, 0, 2, 2], [0, 0, 0, 2, 2], [1, 1, 1, 1, 1]]])
    instance = torch.tensor([[[1, 1, 1, 2, 2], [1, 1, 1, 2, 2], [1, 1, 1, 2, 2], [3, 3, 3, 3, 3]]])
    edges = torch.tensor([[0, 0, 1, 1, 0], [0, 0, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]], dtype=torch.float32)
    y = ch.encode(labels, 4, instance)
    assert y.shape == (1, 5, 4, 5) and y.dtype == torch.float32
    assert torch.equal(y[0, 4], edges)
    assert torch.equal(y[0, :4].sum(0), torch.ones(4, 5))
    assert torch.equal(y[0, :4].argmax(0), labels[0])
    assert y[0, 3].sum() == 0
    assert ch.encode(labels, 4).shape == (1, 4, 4, 5)


def test_ignore_maps_void_labels_to_a_class_or_to_no_class():
    labels = torch.tensor([[[0, 255], [1, 2]]])
    to_none = ch.encode(labels, 3, ignore={255: None})
    assert torch.equal(to_none[0, :, 0, 1], torch.zeros(3))
    assert torch.equal(ch.class_indices(labels, 3, {255: None}), torch.tensor([[[0, -1], [1, 2]]]))
    to_void = ch.encode(labels, 3, ignore={255: 0})
    assert torch.equal(to_void[0, :, 0, 1], torch.tensor([1.0, 0.0, 0.0]))


@pytest.mark.parametrize(
    "labels, instance, message",
    [
        (torch.tensor([[[0, 12]]]), None, r"values 12 are outside 0\.\.11"),
        (torch.tensor([[[0, -1]]]), None, r"values -1 are outside"),
        (torch.tensor([[[0, 255]]]), None, r"ignore=\{255: None\}"),
        (torch.zeros(1, 2, 2), None, "integer ids, got dtype torch.float32"),
        (torch.zeros(2, 2, dtype=torch.long), None, r"\(N, H, W\), got shape \(2, 2\)"),
        (torch.zeros(1, 1, 2, 2, dtype=torch.long), None, r"\(N, H, W\), got shape \(1, 1, 2, 2\)"),
        (torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 5, dtype=torch.long), "instance map has shape"),
        (torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 4), "instance map must hold integer"),
    ],
)
def test_bad_maps_raise_clear_errors(labels, instance, message):
    with pytest.raises(ValueError, match=message):
        ch.encode(labels, 12, instance)


def test_ignore_to_a_missing_class_is_rejected():
    with pytest.raises(ValueError, match="ignore maps label 255 to 12"):
        ch.encode(torch.tensor([[[255]]]), 12, ignore={255: 12})


# ---------------------------------------------------------------- presence compression


def test_presence_mask_and_reinsertion_are_exact():
    labels = street(n=2, num_classes=12)
    y = ch.encode(labels, 12, labels)
    sent = ch.compress(y, 12)
    expected = torch.zeros(2, 12, dtype=torch.bool)
    expected[0, [0, 3, 11]] = True
    expected[1, [1, 4, 11]] = True
    assert torch.equal(sent.presence, expected)
    assert sent.symbols.shape == (3 + 1 + 3 + 1, 32, 48)
    assert torch.equal(sent.image_index, torch.tensor([0] * 4 + [1] * 4))
    assert torch.equal(sent.symbols[3], y[0, 12]) and torch.equal(sent.symbols[4], y[1, 1])
    assert torch.equal(ch.decompress(sent), y)
    with pytest.raises(ValueError, match="announces 8 planes but"):
        ch.decompress(sent._replace(symbols=sent.symbols[:7]))


def test_noise_lands_only_on_transmitted_planes():
    labels = street(n=2, h=64, w=64)
    y = ch.encode(labels, 12)
    absent = ~ch.compress(y, 12).presence
    compressed = ch.transmit(y, ch.AWGN(0), 12, cleanup="none", generator=gen())
    assert torch.count_nonzero(compressed[absent]) == 0
    assert (compressed[~absent] != y[~absent]).float().mean() == 1
    assert (compressed[~absent] - y[~absent]).var().item() == pytest.approx(1.0, rel=0.03)
    full = ch.transmit(y, ch.AWGN(0), 12, cleanup="none", compress=False, generator=gen())
    assert (full - y).var().item() == pytest.approx(1.0, rel=0.03)
    assert full[absent].abs().mean() > 0.7


# ---------------------------------------------------------------- noise level


def test_exact_sigma_formula():
    assert ch.noise_sigma(20) == pytest.approx(0.1, rel=1e-12)
    assert ch.noise_sigma(0.0) == 1.0
    assert ch.noise_sigma(-20) == pytest.approx(10.0, rel=1e-12)
    assert ch.noise_sigma(100) == pytest.approx(1e-5, rel=1e-12)
    per_image = ch.noise_sigma(torch.tensor([40.0, 6.0]))
    assert torch.allclose(per_image, torch.tensor([0.01, 10**-0.3], dtype=torch.float64))


@pytest.mark.parametrize("psnr_db", [-6.0, 0.0, 10.0, 23.5, 60.0])
def test_awgn_noise_variance_is_sigma_squared(psnr_db):
    one_hot = (torch.arange(1_000_000) % 3 == 0).float().reshape(4, -1)  # a 0/1 symbol stream
    noise = (ch.AWGN(psnr_db)(one_hot, generator=gen(int(psnr_db * 10) % 97)) - one_hot).double()
    sigma = 10 ** (-psnr_db / 20)
    assert noise.numel() >= 1_000_000
    assert noise.var().item() == pytest.approx(sigma**2, rel=0.02)
    assert abs(noise.mean().item()) < 5 * sigma / 1000


def test_per_image_psnr_gives_each_image_its_own_sigma():
    psnr = torch.tensor([0.0, 10.0, 20.0, 30.0])
    noise = ch.AWGN(psnr)(torch.zeros(4, 250_000), generator=gen())
    measured = noise.double().var(dim=1)
    assert torch.allclose(measured, 10 ** (-psnr.double() / 10), rtol=0.02)
    with pytest.raises(ValueError, match="4 per-image PSNRs for a batch of 3"):
        ch.AWGN(psnr)(torch.zeros(3, 10))


def test_gesco_table_reproduces_the_published_sigmas():
    published = {100: 0.0, 30: 0.05, 25: 0.08, 20: 0.13, 15: 0.22, 10: 0.36, 5: 0.6, 1: 0.9}
    for level, sigma in published.items():
        assert ch.noise_sigma(level, "gesco") == sigma
        assert ch.noise_sigma(float(level), "gesco") == sigma
    levels = torch.tensor(list(published))
    assert ch.noise_sigma(levels, "gesco").tolist() == list(published.values())
    assert ch.noise_sigma(ch.GESCO_TRAINING_PSNRS, "gesco").tolist() == list(ch.GESCO_TRAINING_SIGMAS)
    assert ch.GESCO_TRAINING_SIGMAS == (0.6, 0.36, 0.22, 0.13, 0.08, 0.05, 0, 0, 0)
    noise = ch.AWGN(10, table="gesco")(torch.zeros(1_000_000), generator=gen())
    assert noise.double().std().item() == pytest.approx(0.36, rel=0.01)
    y = ch.encode(street(), 12)
    assert torch.equal(ch.AWGN(100, table="gesco")(y, generator=gen()), y)
    with pytest.raises(ValueError, match=r"no level \[12.0\]; its levels are \[1, 5, 10, 15, 20, 25, 30, 100\]"):
        ch.AWGN(torch.tensor([10.0, 12.0]), table="gesco")


@pytest.mark.parametrize(
    "psnr, table, message",
    [
        (float("nan"), "exact", "NaN"),
        (torch.tensor([10.0, float("nan")]), "exact", "NaN"),
        (float("inf"), "exact", "finite"),
        (torch.zeros(2, 2), "exact", "1-D tensor"),
        (True, "exact", "number or a 1-D tensor"),
        ("10", "exact", "number or a 1-D tensor"),
        (10, "paper", "unknown noise table 'paper'"),
    ],
)
def test_bad_psnr_raises(psnr, table, message):
    with pytest.raises(ValueError, match=message):
        ch.AWGN(psnr, table=table)


# ---------------------------------------------------------------- Rayleigh fading


def test_rayleigh_equalised_noise_power_matches_theory():
    """Per image, x + sigma*z/|h| with |h|^2 ~ Exp(1): sigma^2 / (measured power) recovers |h|^2."""
    sigma2 = 0.01
    images, symbols = 4096, 256
    noise = ch.Rayleigh(20.0)(torch.zeros(images, symbols), generator=gen(3)).double()
    gain2 = sigma2 / noise.square().mean(1)
    assert gain2.mean().item() == pytest.approx(symbols / (symbols - 2), rel=0.05)  # E|h|^2 = 1, estimator bias
    assert (gain2 < math.log(2)).double().mean().item() == pytest.approx(0.5, abs=0.03)  # median |h|^2 = ln 2
    assert (gain2 < 0.1).double().mean().item() == pytest.approx(1 - math.exp(-0.1), abs=0.015)  # deep fades


def test_rayleigh_fades_are_constant_within_a_block_and_differ_across_blocks():
    noise = ch.Rayleigh(0.0, block=128)(torch.zeros(1, 2 * 64 * 4000), generator=gen(5)).double()
    power = noise.reshape(-1, 64).square().mean(1)
    log_ratio = (power[1:] / power[:-1]).log().abs()
    within, across = log_ratio[0::2], log_ratio[1::2]
    assert within.median() < 0.3 < 0.8 < across.median()


def test_rayleigh_blocks_run_over_each_images_sent_stream():
    y = ch.encode(street(n=3, h=16, w=16), 12)
    packed = ch.compress(y, 12)
    x = torch.ones_like(packed.symbols)
    a = ch.Rayleigh(10, block=100)(x, generator=gen(1), image_index=packed.image_index)
    b = ch.Rayleigh(10, block=100)(x, generator=gen(1), image_index=packed.image_index)
    assert torch.equal(a, b) and not torch.equal(a, x)
    with pytest.raises(ValueError, match="block must be a positive number"):
        ch.Rayleigh(10, block=0)


# ---------------------------------------------------------------- front-end


@pytest.mark.parametrize("link", [ch.AWGN(torch.tensor([5.0, 15.0])), ch.Rayleigh(10.0, block=500)])
def test_seeded_transmission_is_bit_identical(link):
    y = ch.encode(street(), 12, street())
    first = ch.transmit(y, link, 12, generator=gen(7))
    assert torch.equal(first, ch.transmit(y, link, 12, generator=gen(7)))
    assert not torch.equal(first, ch.transmit(y, link, 12, generator=gen(8)))
    assert first.shape == y.shape and first.dtype == y.dtype


def test_transmit_rejects_maps_not_in_the_model_layout():
    y = ch.encode(street(), 12)
    with pytest.raises(ValueError, match=r"\(N, 35 classes \[\+1 edge channel\], H, W\)"):
        ch.transmit(y, ch.AWGN(10), 35)
    with pytest.raises(ValueError, match="float tensor"):
        ch.transmit(street(), ch.AWGN(10), 12)
    with pytest.raises(ValueError, match="3 per-image PSNRs for a batch of 2"):
        ch.transmit(y, ch.AWGN(torch.tensor([1.0, 2.0, 3.0])), 12)


# ---------------------------------------------------------------- receiver cleanup


def test_avgmax_cleanup_matches_hand_computation():
    spike = torch.zeros(7, 7)
    spike[3, 3] = 9.0
    expected = torch.zeros(7, 7)
    expected[1:6, 1:6] = 1.0  # average spreads 1 over the 3x3, max widens it to 5x5
    assert torch.allclose(ch.cleanup(spike, "avgmax"), expected)
    corner = ch.cleanup(torch.ones(1, 1, 1, 1), "avgmax")  # zero padding counts in the average
    assert corner.item() == pytest.approx(1 / 9)


def test_median_cleanup_removes_spikes_and_keeps_blocks():
    x = torch.zeros(2, 7, 7)
    x[0, 1, 5] = 1.0
    x[1, 2:5, 2:5] = 1.0
    out = ch.cleanup(x, "median")
    assert out[0].sum() == 0
    plus = torch.zeros(7, 7)
    plus[3, 2:5] = plus[2:5, 3] = 1.0
    assert torch.equal(out[1], plus)
    assert torch.equal(ch.cleanup(torch.ones(3, 4), "median"), torch.ones(3, 4))
    assert ch.cleanup(x, "none") is x
    with pytest.raises(ValueError, match="unknown cleanup 'mean'"):
        ch.cleanup(x, "mean")


def test_cleanup_recovers_the_class_map_from_heavy_noise():
    labels = street(n=2, h=64, w=96)
    y = ch.encode(labels, 12)
    link = ch.AWGN(5, table="gesco")
    accuracy = {
        f: (ch.transmit(y, link, 12, cleanup=f, generator=gen(2)).argmax(1) == labels).float().mean().item()
        for f in ch.CLEANUPS
    }
    assert accuracy["none"] < 0.9
    assert accuracy["avgmax"] > 0.97 and accuracy["median"] > 0.95


# ---------------------------------------------------------------- bandwidth


def test_bandwidth_counts_channel_uses_and_bits():
    labels = street(n=2, h=32, w=48)
    photos = torch.randint(0, 256, (2, 3, 32, 48), dtype=torch.uint8)
    b = ch.bandwidth(labels, 12, labels, photos, jpeg_quality=50)
    assert len(b) == 2
    assert b[0].full_channel_uses == 13 * 32 * 48
    assert b[0].compressed_channel_uses == (3 + 1) * 32 * 48
    assert b[0].presence_bits == 12
    assert b[0].jpeg_quality == 50 and b[0].jpeg_bits == ch.jpeg_bits(photos[0], 50)
    plain = ch.bandwidth(labels[:1], 12)[0]
    assert plain.full_channel_uses == 12 * 32 * 48 and plain.instance_png_bits is None and plain.jpeg_bits is None


def test_png_bits_respect_the_entropy_bound_and_jpeg_grows_with_quality():
    noise = torch.randint(0, 12, (256, 256), generator=gen())
    assert ch.png_bits(noise) >= math.log2(12) * noise.numel()
    assert ch.png_bits(torch.zeros(256, 256, dtype=torch.long)) < 0.02 * noise.numel()
    assert ch.png_bits(torch.full((8, 8), 1000)) > 0  # 16-bit ids
    photo = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=gen())
    assert ch.jpeg_bits(photo, 10) < ch.jpeg_bits(photo, 50) < ch.jpeg_bits(photo, 95)
    with pytest.raises(ValueError, match="uint8 RGB"):
        ch.jpeg_bits(photo.float())


# ---------------------------------------------------------------- palette


def test_palettes():
    assert ch.class_palette(12)[3].tolist() == [128, 64, 128]  # CamVid road
    assert ch.class_palette(35)[26].tolist() == [0, 0, 142]  # Cityscapes car
    assert ch.class_palette(35)[7].tolist() == [128, 64, 128]  # Cityscapes road
    fallback = ch.class_palette(50)
    assert len(torch.unique(fallback, dim=0)) == 50 and torch.equal(fallback, ch.class_palette(50))
    picture = ch.colorize(torch.tensor([[3, -1]]), 12)
    assert picture.tolist() == [[[128, 64, 128], [0, 0, 0]]]
    with pytest.raises(ValueError, match=r"in 0\.\.11"):
        ch.colorize(torch.tensor([[12]]), 12)


def test_received_maps_round_trip_through_a_file_and_other_files_are_refused(tmp_path):
    labels = torch.randint(0, 12, (2, 8, 8))
    y = ch.transmit(ch.encode(labels, 12), ch.AWGN(10), 12, generator=gen(3))
    ch.save_received(tmp_path / "r.safetensors", y, labels, {"psnr_db": 10.0, "kind": "ignored"})
    y2, labels2, info = ch.load_received(tmp_path / "r.safetensors")
    assert torch.equal(y2, y) and torch.equal(labels2, labels) and info == {"psnr_db": 10.0}
    ch.save_received(tmp_path / "bare.safetensors", y)
    assert ch.load_received(tmp_path / "bare.safetensors")[1] is None
    save_tensors(tmp_path / "other.safetensors", {"y": y}, {"kind": "calibration-set"})
    with pytest.raises(ValueError, match="not received maps"):
        ch.load_received(tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="NaN/inf"):
        ch.save_received(tmp_path / "bad.safetensors", torch.full_like(y, float("nan")))

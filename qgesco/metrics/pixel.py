"""PSNR, SSIM and MS-SSIM against the original image: cheap, differentiable, on images in [0, 1].

SSIM is Wang et al. (2004) as in their reference code: 11x11 Gaussian window with
sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1, 'valid' windows only (no padding) and no
downsampling; colour images are scored per channel and averaged. On 8-bit images this
equals SSIM on [0, 255] with data range 255, and PSNR likewise.

MS-SSIM is Wang, Simoncelli & Bovik (2003): contrast-structure terms at every scale, luminance at the
coarsest, 2x2 average pooling between scales, the published per-scale weights. Its five scales need
images of at least 176 pixels a side; smaller images (the 48x64 demo) use as many scales as keep the
11x11 window inside the image, with the first weights renormalised to sum to 1 (the number is in
:func:`ms_ssim_scales`), and negative terms are clipped to 0 as in ``pytorch-msssim``. Hand-written
(20 lines over :func:`ssim`'s pieces) because the packages assert the five-scale minimum size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qgesco.metrics.images import same_shape

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_C1 = 0.01**2
_C2 = 0.03**2
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def psnr(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB, shape (N,): 10 log10(1 / MSE); identical images give inf."""
    image, reference = same_shape(image, reference)
    mse = (image - reference).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(1 / mse)


def _gaussian_window(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    x = torch.arange(SSIM_WINDOW, device=device, dtype=dtype) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def _ssim_maps(image: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel mean SSIM and mean contrast-structure term, each (N, C)."""
    g = _gaussian_window(image.device, image.dtype)
    c = image.shape[1]
    rows, cols = g.view(1, 1, -1, 1).expand(c, 1, -1, 1), g.view(1, 1, 1, -1).expand(c, 1, 1, -1)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x, rows, groups=c), cols, groups=c)

    mu_x, mu_y = blur(image), blur(reference)
    var_x = blur(image * image) - mu_x**2
    var_y = blur(reference * reference) - mu_y**2
    cov = blur(image * reference) - mu_x * mu_y
    cs = (2 * cov + _C2) / (var_x + var_y + _C2)
    s = (2 * mu_x * mu_y + _C1) / (mu_x**2 + mu_y**2 + _C1) * cs
    return s.flatten(2).mean(dim=2), cs.flatten(2).mean(dim=2)


def ssim(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-image mean SSIM, shape (N,); both sides at least 11 pixels."""
    image, reference = same_shape(image, reference)
    if min(image.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(image.shape[-2:])}")
    return _ssim_maps(image, reference)[0].mean(dim=1)


def ms_ssim_scales(height: int, width: int) -> int:
    """Scales MS-SSIM uses at this size: up to 5, each keeping the 11x11 window inside the image."""
    scales, side = 0, min(height, width)
    while scales < len(MS_SSIM_WEIGHTS) and side >= SSIM_WINDOW:
        scales, side = scales + 1, side // 2
    return scales


def ms_ssim(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-image MS-SSIM, shape (N,), over :func:`ms_ssim_scales` scales (both sides at least 11 pixels); with
    five scales it equals ``pytorch_msssim.ms_ssim(..., data_range=1)`` (tests/test_metrics.py)."""
    image, reference = same_shape(image, reference)
    scales = ms_ssim_scales(*image.shape[-2:])
    if scales == 0:
        raise ValueError(f"MS-SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(image.shape[-2:])}")
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=image.dtype, device=image.device)
    weights = weights / weights.sum()
    terms = []
    for scale in range(scales):
        s, cs = _ssim_maps(image, reference)
        terms.append((s if scale == scales - 1 else cs).clamp(min=0))
        image, reference = F.avg_pool2d(image, 2), F.avg_pool2d(reference, 2)
    return torch.stack(terms, -1).pow(weights).prod(-1).mean(dim=1)  # per channel, then averaged

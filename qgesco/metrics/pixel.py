"""PSNR and SSIM against the original image: cheap, differentiable, on images in [0, 1].

SSIM is Wang et al. (2004) as in their reference code: 11x11 Gaussian window with
sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1, 'valid' windows only (no padding) and no
downsampling; colour images are scored per channel and averaged. On 8-bit images this
equals SSIM on [0, 255] with data range 255, and PSNR likewise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qgesco.metrics.images import same_shape

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_C1 = 0.01**2
_C2 = 0.03**2


def psnr(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB, shape (N,): 10 log10(1 / MSE); identical images give inf."""
    image, reference = same_shape(image, reference)
    mse = (image - reference).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(1 / mse)


def _gaussian_window(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    x = torch.arange(SSIM_WINDOW, device=device, dtype=dtype) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def ssim(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-image mean SSIM, shape (N,); both sides at least 11 pixels."""
    image, reference = same_shape(image, reference)
    if min(image.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(image.shape[-2:])}")
    g = _gaussian_window(image.device, image.dtype)
    c = image.shape[1]
    rows, cols = g.view(1, 1, -1, 1).expand(c, 1, -1, 1), g.view(1, 1, 1, -1).expand(c, 1, 1, -1)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x, rows, groups=c), cols, groups=c)

    mu_x, mu_y = blur(image), blur(reference)
    var_x = blur(image * image) - mu_x**2
    var_y = blur(reference * reference) - mu_y**2
    cov = blur(image * reference) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + _C1) * (2 * cov + _C2)) / ((mu_x**2 + mu_y**2 + _C1) * (var_x + var_y + _C2))
    return s.flatten(1).mean(dim=1)

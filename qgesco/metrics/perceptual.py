"""LPIPS v0.1 with AlexNet features (Zhang et al., CVPR 2018), as the GESCO papers report it.

Written out by hand: the network is five convolutions plus five 1x1 heads, and writing it
here avoids torchvision (its wheels pin one torch version and break beside ours) and the
authors' package. The layer geometry is torchvision's AlexNet (11x11/4 pad 2, 5x5 pad 2,
3x3 pad 1; 3x3/2 max pools with floor rounding), on which the authors' weights were trained.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from qgesco.fileio import load_tensors
from qgesco.metrics import weights
from qgesco.metrics.images import same_shape

#: The authors' ScalingLayer: inputs in [-1, 1] are shifted and scaled to ImageNet statistics.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
#: (in, out, kernel, stride, padding) of torchvision's AlexNet convolutions.
_CONVS = ((3, 64, 11, 4, 2), (64, 192, 5, 1, 2), (192, 384, 3, 1, 1), (384, 256, 3, 1, 1), (256, 256, 3, 1, 1))
#: Smallest side that still survives both max pools.
MIN_SIDE = 32


class LPIPS(nn.Module):
    """d(x, y) = sum over the 5 ReLU outputs of mean_hw( w_l . (f_l(x) - f_l(y))^2 ), f_l unit-normalised
    over channels."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.ModuleList(nn.Conv2d(i, o, k, stride=s, padding=p) for i, o, k, s, p in _CONVS)
        self.lin = nn.ModuleList(nn.Conv2d(o, 1, 1, bias=False) for _, o, *_ in _CONVS)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def pretrained(cls, device: str | torch.device = "cpu") -> LPIPS:
        """The authors' v0.1 weights from the cache (see ``qgesco fetch-weights``), frozen, in eval mode."""
        tensors, _ = load_tensors(weights.verified_path("lpips-alex"))
        model = cls()
        model.load_state_dict(tensors)
        return model.eval().requires_grad_(False).to(device)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five ReLU outputs (relu1 .. relu5) for inputs in [-1, 1]."""
        x = (x - self.shift) / self.scale
        out = []
        for i, conv in enumerate(self.net):
            if i in (1, 2):
                x = F.max_pool2d(x, kernel_size=3, stride=2)
            x = F.relu(conv(x))
            out.append(x)
        return out

    def forward(self, image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Per-pair distances, shape (N,), for images in [0, 1] (mapped to [-1, 1] here)."""
        image, reference = same_shape(image, reference)
        if min(image.shape[-2:]) < MIN_SIDE:
            raise ValueError(f"LPIPS needs images of at least {MIN_SIDE}x{MIN_SIDE}, got {tuple(image.shape[-2:])}")
        d = image.new_zeros(image.shape[0])
        for fa, fb, lin in zip(self.features(image * 2 - 1), self.features(reference * 2 - 1), self.lin):
            fa = fa / (fa.norm(dim=1, keepdim=True) + 1e-10)
            fb = fb / (fb.norm(dim=1, keepdim=True) + 1e-10)
            d = d + lin((fa - fb) ** 2).mean(dim=(1, 2, 3))
        return d


@functools.lru_cache(maxsize=4)
def _pretrained(device: str) -> LPIPS:
    return LPIPS.pretrained(device)


@torch.inference_mode()
def lpips(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """LPIPS v0.1 AlexNet distance per pair, shape (N,); images in [0, 1], model loaded once per device."""
    return _pretrained(str(image.device))(image, reference)

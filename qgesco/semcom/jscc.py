"""DeepJSCC (Bourtsoulatze, Kurka & Gündüz, IEEE TCCN 2019): the photo mapped straight to channel symbols by a
convolutional autoencoder trained through the channel, the learned analog baseline of semantic communication.

The published architecture at CamVid's 48x64: an encoder of five 5x5 convolutions (two of stride 2, 16 then 32
filters, then 32, 32 and ``channels``), each hidden one followed by GDN (Ballé et al. 2016, as DeepJSCC-f of Kurka
& Gündüz uses it) and PReLU, and a decoder of mirrored transposed convolutions with inverse GDN and PReLU ending
in a sigmoid. The encoder's output, ``channels`` x H/4 x W/4 reals, is scaled per image to average power 1 per
real value and each real value is one real channel use, so a model occupies ``channels * H * W / 16`` real
uses: ``channels / 16`` real uses per pixel. In the paper's notation (k complex channel symbols for n = 3HW
source reals) k/n = ``channels / 96``: 1/12 is 8 channels (0.5 real uses per pixel), 1/6 is 16 (1 per pixel).

The channel is the one every scheme of :mod:`~qgesco.semcom.schemes` sees: noise sigma = 10^(-PSNR/20) per real
use (signal power 1, so SNR = PSNR) and, on ``rayleigh``, one flat fade h per image drawn first from the same
seeded generator (:func:`~qgesco.semcom.link.rayleigh_gain`), known to the receiver, which equalises by
zero-forcing as for the analog map (noise sigma/|h| per real use). **The SNR is an input of the decoder only**
(the effective SNR after equalisation, clamped to the training range, as one more input plane): the receiver
knows its channel, the sender does not, as no other real scheme's sender knows it. One model per bandwidth
ratio, trained over a range of SNRs (:mod:`~qgesco.semcom.jscc_train`) instead of one model per SNR as in the
paper.

GDN is written here (a 1x1 convolution of the squares with non-negative weights) because the library that has
it, CompressAI, requires torchvision, which this project does not take.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..fileio import load_tensors, save_tensors

#: Spatial downsampling of the encoder (two stride-2 convolutions).
DOWNSAMPLING = 4
#: Filters of the hidden layers, as published.
FILTERS = (16, 32)
#: The SNRs (dB) the models are trained on, uniformly; the decoder's SNR input is clamped to them.
SNR_RANGE = (-5.0, 30.0)
KIND = "deepjscc"


class GDN(nn.Module):
    """Generalised divisive normalisation y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2), or its inverse
    (multiplying instead); beta and gamma are kept positive by squaring."""

    def __init__(self, channels: int, inverse: bool = False):
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(math.sqrt(0.1) * torch.eye(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gamma = self.gamma.square()[:, :, None, None]
        norm = nn.functional.conv2d(x.square(), gamma, self.beta.square() + 1e-6).sqrt()
        return x * norm if self.inverse else x / norm


def _block(conv: nn.Module, filters: int, inverse: bool) -> nn.Sequential:
    return nn.Sequential(conv, GDN(filters, inverse), nn.PReLU(filters))


class DeepJSCC(nn.Module):
    """Encoder (photo in [0, 1] -> unit-power real symbols) and decoder (noisy symbols and SNR -> photo)."""

    def __init__(self, channels: int, filters: tuple[int, int] = FILTERS, snr_range=SNR_RANGE):
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive number of encoder output planes, got {channels!r}")
        a, b = filters
        self.channels, self.filters, self.snr_range = channels, (a, b), tuple(float(s) for s in snr_range)
        self.encoder = nn.Sequential(
            _block(nn.Conv2d(3, a, 5, 2, 2), a, False),
            _block(nn.Conv2d(a, b, 5, 2, 2), b, False),
            _block(nn.Conv2d(b, b, 5, 1, 2), b, False),
            _block(nn.Conv2d(b, b, 5, 1, 2), b, False),
            nn.Conv2d(b, channels, 5, 1, 2),
        )
        self.decoder = nn.Sequential(
            _block(nn.ConvTranspose2d(channels + 1, b, 5, 1, 2), b, True),
            _block(nn.ConvTranspose2d(b, b, 5, 1, 2), b, True),
            _block(nn.ConvTranspose2d(b, b, 5, 1, 2), b, True),
            _block(nn.ConvTranspose2d(b, a, 5, 2, 2, output_padding=1), a, True),
            nn.ConvTranspose2d(a, 3, 5, 2, 2, output_padding=1),
            nn.Sigmoid(),
        )

    def uses(self, hw: tuple[int, int]) -> int:
        """Real channel uses per image of size ``hw``."""
        return self.channels * (hw[0] // DOWNSAMPLING) * (hw[1] // DOWNSAMPLING)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, channels, H/4, W/4) with mean square exactly 1 per image."""
        if x.shape[-2] % DOWNSAMPLING or x.shape[-1] % DOWNSAMPLING:
            raise ValueError(f"DeepJSCC needs height and width divisible by {DOWNSAMPLING}, got {tuple(x.shape[-2:])}")
        z = self.encoder(x)
        power = z.square().flatten(1).mean(1).reshape(-1, 1, 1, 1)
        return z / power.sqrt()

    def decode(self, received: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        """Equalised symbols and the effective SNR per image (dB) -> (B, 3, H, W) in [0, 1]."""
        snr = torch.as_tensor(snr_db, dtype=received.dtype).reshape(-1).expand(received.shape[0])
        plane = (snr.clamp(*self.snr_range) / 10).reshape(-1, 1, 1, 1).expand(-1, 1, *received.shape[-2:])
        return self.decoder(torch.cat([received, plane], 1))

    def forward(
        self, x: torch.Tensor, snr_db: torch.Tensor, gain: torch.Tensor | float = 1.0, generator=None
    ) -> torch.Tensor:
        """Encode, send over AWGN at ``snr_db`` (per image) with known fade amplitude ``gain``, decode."""
        z = self.encode(x)
        received = add_noise(z, snr_db, gain, generator)
        snr = torch.as_tensor(snr_db, dtype=z.dtype) + 20 * torch.log10(torch.as_tensor(gain, dtype=z.dtype))
        return self.decode(received, snr)

    def config(self) -> dict[str, Any]:
        return {"kind": KIND, "channels": self.channels, "filters": list(self.filters), "snr_range": self.snr_range}


def add_noise(z: torch.Tensor, snr_db, gain=1.0, generator=None) -> torch.Tensor:
    """z + (sigma/|h|) n per real use (AWGN with zero-forced known fade): sigma = 10^(-SNR/20) at power 1."""
    sigma = 10 ** (-torch.as_tensor(snr_db, dtype=z.dtype).reshape(-1, 1, 1, 1) / 20)
    gain = torch.as_tensor(gain, dtype=z.dtype).reshape(-1, 1, 1, 1)
    return z + sigma / gain * torch.randn(z.shape, generator=generator, dtype=z.dtype)


def save_jscc(model: DeepJSCC, path, **meta) -> None:
    save_tensors(path, {k: v.detach().contiguous() for k, v in model.state_dict().items()}, model.config() | meta)


def load_jscc(path: str | Path) -> tuple[DeepJSCC, dict[str, Any]]:
    """A DeepJSCC model file (its digest checked) and its metadata, in eval mode."""
    tensors, meta = load_tensors(path, device="cpu")
    if meta.get("kind") != KIND:
        raise ValueError(f"{path}: not a DeepJSCC model (kind {meta.get('kind')!r}); train one with qgesco train-jscc")
    model = DeepJSCC(int(meta["channels"]), tuple(meta["filters"]), tuple(meta["snr_range"]))
    model.load_state_dict(tensors)
    return model.eval(), meta


def bundled_models(folder: str | Path | None = None) -> list[Path]:
    """The DeepJSCC model files of ``folder`` (default: the bundled ones in qgesco/assets)."""
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parents[1] / "assets"
    return sorted(folder.glob("deepjscc_*.safetensors"))

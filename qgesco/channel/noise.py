"""Channel noise on real symbols: sigma from a PSNR, AWGN, and Rayleigh block fading.

sigma = peak * 10^(-PSNR/20) with peak 1, since one-hot symbols are 0 or 1: PSNR is the
usual peak signal-to-noise ratio of the sent map. The published GESCO code instead uses a
hand-set sigma per nominal level; ``table="gesco"`` reproduces it so that results compare
with the paper. Every draw comes from the caller's ``torch.Generator`` on the symbols'
device, so a seeded run is reproducible; ``psnr_db`` may be one value or one per image.
"""

from __future__ import annotations

import math

import torch

#: sigma per nominal PSNR level of the published GESCO sampler (its comments call sigma "var").
GESCO_SIGMA = {100: 0.0, 30: 0.05, 25: 0.08, 20: 0.13, 15: 0.22, 10: 0.36, 5: 0.6, 1: 0.9}

#: The sigmas the published noise-aware training draws from uniformly: a third of draws are clean.
GESCO_TRAINING_SIGMAS = (0.6, 0.36, 0.22, 0.13, 0.08, 0.05, 0.0, 0.0, 0.0)

#: The same draws as nominal levels, for ``AWGN(levels, table="gesco")``.
GESCO_TRAINING_PSNRS = tuple(
    next(lvl for lvl, s in GESCO_SIGMA.items() if s == sigma) for sigma in GESCO_TRAINING_SIGMAS
)

NOISE_TABLES = ("exact", "gesco")


def noise_sigma(psnr_db, table: str = "exact"):
    """Noise standard deviation per real symbol: a float for a number, a float64 tensor otherwise.

    ``table="exact"`` takes any finite PSNR (<= 0 included); ``table="gesco"`` only the
    published nominal levels, because its sigmas were set by hand and cannot be interpolated.
    """
    if isinstance(psnr_db, bool) or not isinstance(psnr_db, (int, float, torch.Tensor, list, tuple)):
        raise ValueError(f"psnr_db must be a number or a 1-D tensor of one PSNR per image, got {psnr_db!r}")
    psnr = torch.as_tensor(psnr_db, dtype=torch.float64, device="cpu")
    if psnr.dim() > 1:
        raise ValueError(
            f"psnr_db must be a number or a 1-D tensor of one PSNR per image, got shape {tuple(psnr.shape)}"
        )
    if torch.isnan(psnr).any():
        raise ValueError("psnr_db is NaN; give the channel's PSNR in dB")
    if torch.isinf(psnr).any():
        raise ValueError("psnr_db must be finite; use 100 dB for an effectively clean channel")
    if table == "exact":
        sigma = 10.0 ** (-psnr / 20.0)
    elif table == "gesco":
        levels = torch.tensor(list(GESCO_SIGMA), dtype=torch.float64)
        match = psnr.reshape(-1, 1) == levels
        if not match.any(1).all():
            off = sorted({v for v, ok in zip(psnr.reshape(-1).tolist(), match.any(1).tolist()) if not ok})
            raise ValueError(
                f"noise table 'gesco' has no level {off}; its levels are {sorted(GESCO_SIGMA)} dB "
                "(use table='exact' for other PSNRs)"
            )
        sigma = (match.double() @ torch.tensor(list(GESCO_SIGMA.values()), dtype=torch.float64)).reshape(psnr.shape)
    else:
        raise ValueError(f"unknown noise table {table!r}; choose one of {NOISE_TABLES}")
    return sigma.item() if isinstance(psnr_db, (int, float)) else sigma


class Channel:
    """A noisy channel, callable on a tensor of real symbols whose first axis indexes images.

    ``image_index`` serves ragged batches (as :class:`~qgesco.channel.Compressed` sends
    them): row ``r`` of ``x`` then belongs to image ``image_index[r]``, and the rows of one
    image are contiguous, in the order they are sent.
    """

    def __init__(self, psnr_db, table: str = "exact"):
        self.psnr_db = psnr_db
        self.table = table
        self.sigma = torch.as_tensor(noise_sigma(psnr_db, table), dtype=torch.float64)

    def check_batch(self, num_images: int) -> None:
        """Raise unless the channel's PSNR is one value or one per image of the batch."""
        if self.sigma.dim() and self.sigma.numel() != num_images:
            raise ValueError(
                f"{type(self).__name__} has {self.sigma.numel()} per-image PSNRs for a batch of {num_images} images"
            )

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator | None = None, image_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 1:
            raise ValueError(
                f"the channel carries float tensors with images on the first axis, got {type(x).__name__} "
                f"{getattr(x, 'dtype', '')}"
            )
        if image_index is None:
            self.check_batch(x.shape[0])
            image_index = torch.arange(x.shape[0], device=x.device)
        elif image_index.shape != x.shape[:1]:
            raise ValueError(
                f"image_index must give one image per row of x: shape ({x.shape[0]},), got {tuple(image_index.shape)}"
            )
        if x.numel() == 0:
            return x.clone()
        sigma = self.sigma.to(x.device)
        sigma = (sigma[image_index] if sigma.dim() else sigma.expand(x.shape[0])).to(x.dtype)
        return self._corrupt(x, sigma.reshape(-1, *[1] * (x.dim() - 1)), image_index, generator)

    def _corrupt(self, x, sigma, image_index, generator):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(psnr_db={self.psnr_db!r}, table={self.table!r})"


class AWGN(Channel):
    """Additive white Gaussian noise: every real symbol gets N(0, sigma^2)."""

    def _corrupt(self, x, sigma, image_index, generator):
        return x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


class Rayleigh(Channel):
    """Flat Rayleigh block fading with perfect channel knowledge at the receiver.

    One gain h ~ CN(0, 1) per image (``block=None``) or per ``block`` consecutive symbols
    of an image's stream. Knowing h, the receiver undoes its phase and divides by |h|
    (zero-forcing), so a symbol arrives as x + sigma*z/|h|: deep fades enhance the noise.
    Each real symbol is one real channel use with noise sigma, as for :class:`AWGN`.
    """

    def __init__(self, psnr_db, block: int | None = None, table: str = "exact"):
        if block is not None and (isinstance(block, bool) or not isinstance(block, int) or block < 1):
            raise ValueError(
                f"block must be a positive number of symbols per fade, or None for one fade per image; got {block!r}"
            )
        super().__init__(psnr_db, table)
        self.block = block

    def _corrupt(self, x, sigma, image_index, generator):
        gain = self._fading_amplitude(x, image_index, generator)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (gain * x + sigma * noise) / gain

    def _fading_amplitude(self, x, image_index, generator) -> torch.Tensor:
        """|h| for every symbol of ``x``, constant over each block of each image's stream."""
        rows, per_row = x.shape[0], x[0].numel()
        counts = torch.bincount(image_index)
        rank = torch.arange(rows, device=x.device) - (counts.cumsum(0) - counts)[image_index]
        position = rank[:, None] * per_row + torch.arange(per_row, device=x.device)
        stream = int(counts.max()) * per_row
        block = self.block or stream
        h = torch.randn(
            counts.numel(), math.ceil(stream / block), 2, generator=generator, device=x.device, dtype=x.dtype
        )
        amplitude = h.square().sum(-1).div(2).sqrt()
        return amplitude[image_index[:, None], position // block].reshape(x.shape)

    def __repr__(self) -> str:
        return f"Rayleigh(psnr_db={self.psnr_db!r}, block={self.block!r}, table={self.table!r})"


#: The channels by the names the command line, the demo and evaluation use.
CHANNELS = {"awgn": AWGN, "rayleigh": Rayleigh}


def make_channel(name: str, psnr_db, *, table: str = "exact", block: int | None = None) -> Channel:
    """The channel ``name`` (``awgn`` or ``rayleigh``) at ``psnr_db``; ``block`` is Rayleigh's fading block."""
    if name not in CHANNELS:
        raise ValueError(f"unknown channel {name!r}; use one of {', '.join(CHANNELS)}")
    if block is not None and name != "rayleigh":
        raise ValueError("block sets the fading block of the rayleigh channel; it has no meaning for awgn")
    return Rayleigh(psnr_db, block=block, table=table) if block is not None else CHANNELS[name](psnr_db, table=table)

"""The semantic diffusion UNet of GESCO (SDM architecture, guided-diffusion family).

The encoder sees only the noisy image; the middle and the decoder are made of
:class:`SDMResBlock` whose GroupNorms are modulated by the semantic map (SPADE). Module
and parameter names follow the published code exactly, so the published Cityscapes
checkpoint loads with ``strict=True``. Written here (not imported) because no maintained
package ships this network.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import UNetConfig


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps, ``[cos | sin]`` as in guided-diffusion."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the activation dtype (stable under fp16)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def normalization(channels: int, groups: int = 32) -> GroupNorm32:
    return GroupNorm32(groups, channels)


def zero_module(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class SPADEGroupNorm(nn.Module):
    """Parameter-free GroupNorm, then ``x * (1 + gamma(y)) + beta(y)`` from the semantic map, computed as
    ``beta + x * gamma + x``: two passes over the activations into one new tensor instead of three into three
    (half the time at full width, docs/runtime.md; equal to float rounding)."""

    def __init__(self, channels: int, label_channels: int, hidden: int = 128, groups: int = 32):
        super().__init__()
        self.norm = GroupNorm32(groups, channels, affine=False)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_channels, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        if y.shape[2:] != x.shape[2:]:  # nearest at the same size is the identity (and a copy)
            y = F.interpolate(y, size=x.shape[2:], mode="nearest")
        actv = self.mlp_shared(y)
        return torch.addcmul(self.mlp_beta(actv), x, self.mlp_gamma(actv)).add_(x)


class Upsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        self.conv = nn.Conv2d(channels, out_channels or channels, 3, padding=1) if use_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.conv is not None else x


class Downsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        if use_conv:
            self.op = nn.Conv2d(channels, out_channels or channels, 3, stride=2, padding=1)
        else:
            self.op = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


def _resample(channels: int, up: bool, down: bool) -> tuple[nn.Module, nn.Module]:
    if up:
        return Upsample(channels, False), Upsample(channels, False)
    if down:
        return Downsample(channels, False), Downsample(channels, False)
    return nn.Identity(), nn.Identity()


def _skip(channels: int, out_channels: int) -> nn.Module:
    return nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)


class ResBlock(nn.Module):
    """Encoder residual block, conditioned on the timestep only.

    The published checkpoint also holds a ``spade_norm`` in every encoder block, fed by a
    3-channel map; the published forward never calls it. It is kept so that the weights
    load with ``strict=True``, and left out of the computation exactly as published.
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        use_scale_shift_norm: bool = False,
        up: bool = False,
        down: bool = False,
        spade_hidden: int = 128,
        norm_groups: int = 32,
    ):
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.spade_norm = SPADEGroupNorm(channels, 3, spade_hidden, norm_groups)
        self.in_layers = nn.Sequential(
            normalization(channels, norm_groups), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.updown = up or down
        self.h_upd, self.x_upd = _resample(channels, up, down)
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.out_layers = nn.Sequential(
            normalization(out_channels, norm_groups),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            zero_module(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip_connection = _skip(channels, out_channels)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[:-1](x)
            h = self.in_layers[-1](self.h_upd(h))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)[..., None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = torch.addcmul(shift, self.out_layers[0](h), 1 + scale)  # one pass over h, not two
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class SDMResBlock(nn.Module):
    """Middle/decoder residual block: both GroupNorms SPADE-modulated by the map ``y``.

    ``concat_split`` is set on the first block of each decoder level: its input is
    ``cat(h, skip)`` and the first ``concat_split`` channels come from ``h``. Split
    quantization reads it to give the two channel groups their own quantizers.
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        label_channels: int,
        out_channels: int | None = None,
        use_scale_shift_norm: bool = False,
        up: bool = False,
        down: bool = False,
        spade_hidden: int = 128,
        norm_groups: int = 32,
    ):
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.concat_split: int | None = None
        self.in_norm = SPADEGroupNorm(channels, label_channels, spade_hidden, norm_groups)
        self.in_layers = nn.Sequential(nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.updown = up or down
        self.h_upd, self.x_upd = _resample(channels, up, down)
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.out_norm = SPADEGroupNorm(out_channels, label_channels, spade_hidden, norm_groups)
        self.out_layers = nn.Sequential(
            nn.SiLU(), nn.Dropout(p=dropout), zero_module(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        )
        self.skip_connection = _skip(channels, out_channels)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.in_norm(x, y)
        if self.updown:
            h = self.in_layers[:-1](h)
            h = self.in_layers[-1](self.h_upd(h))
            x = self.x_upd(x)
        else:
            h = self.in_layers(h)
        emb_out = self.emb_layers(emb).type(h.dtype)[..., None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = torch.addcmul(shift, self.out_norm(h, y), 1 + scale)
        else:
            h = self.out_norm(h + emb_out, y)
        return self.skip_connection(x) + self.out_layers(h)


class QKVAttention(nn.Module):
    """Multi-head attention on a packed ``qkv`` tensor of shape (B, 3*H*C, T).

    ``legacy=True`` splits heads before q/k/v (the published default,
    ``use_new_attention_order=False``); ``legacy=False`` splits q/k/v first.
    """

    def __init__(self, num_heads: int, legacy: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.legacy = legacy

    def split(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v as (B, heads, T, ch)."""
        b, width, length = qkv.shape
        ch = width // (3 * self.num_heads)
        if self.legacy:
            q, k, v = qkv.reshape(b, self.num_heads, 3 * ch, length).split(ch, dim=2)
        else:
            q, k, v = (t.reshape(b, self.num_heads, ch, length) for t in qkv.chunk(3, dim=1))
        return q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        b, _, length = qkv.shape
        q, k, v = self.split(qkv)
        a = F.scaled_dot_product_attention(q, k, v)
        return a.transpose(-1, -2).reshape(b, -1, length)


class AttentionBlock(nn.Module):
    def __init__(
        self,
        channels: int,
        num_heads: int = 1,
        num_head_channels: int = -1,
        use_new_attention_order: bool = False,
        norm_groups: int = 32,
    ):
        super().__init__()
        heads = num_heads if num_head_channels == -1 else channels // num_head_channels
        self.norm = normalization(channels, norm_groups)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.attention = QKVAttention(heads, legacy=not use_new_attention_order)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        h = self.norm(x).reshape(b, c, -1)  # normalised in x's layout: the same groups, without a copy
        h = self.proj_out(self.attention(self.qkv(h)))
        return x + h.reshape(b, c, *spatial)


class EmbedSequential(nn.Sequential):
    """A sequence of layers; each gets the timestep embedding and/or the map if it takes them."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, SDMResBlock):
                x = layer(x, emb, y)
            elif isinstance(layer, ResBlock):
                x = layer(x, emb)
            else:
                x = layer(x)
        return x


class UNetModel(nn.Module):
    """``model(x, t, y)``: noise (and variance) prediction for images ``x`` at integer
    timesteps ``t`` given the semantic map ``y`` (one-hot classes + instance edges)."""

    #: A quantized model's plan (layers, bits) and report (settings, calibration, block errors), set by
    #: ``qgesco.quant.quantize`` and ``load_quantized``; None on a float model.
    quant_plan: dict[str, Any] | None = None  # a qgesco.quant.swap.QuantPlan on a quantized model
    quant_report: dict[str, Any] | None = None

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = c = config
        ch_model = c.num_channels
        emb_dim = ch_model * 4
        heads_up = c.num_heads if c.num_heads_upsample == -1 else c.num_heads_upsample

        def attention(ch: int, heads: int) -> AttentionBlock:
            return AttentionBlock(ch, heads, c.num_head_channels, c.use_new_attention_order, c.norm_groups)

        def res_block(ch: int, out: int, down: bool = False) -> ResBlock:
            return ResBlock(
                ch,
                emb_dim,
                c.dropout,
                out,
                c.use_scale_shift_norm,
                down=down,
                spade_hidden=c.spade_hidden,
                norm_groups=c.norm_groups,
            )

        def sdm_block(ch: int, out: int | None = None, up: bool = False) -> SDMResBlock:
            return SDMResBlock(
                ch,
                emb_dim,
                c.dropout,
                c.label_channels,
                out,
                c.use_scale_shift_norm,
                up=up,
                spade_hidden=c.spade_hidden,
                norm_groups=c.norm_groups,
            )

        self.time_embed = nn.Sequential(nn.Linear(ch_model, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        ch = input_ch = int(c.channel_mult[0] * ch_model)
        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(3, ch, 3, padding=1))])
        skip_chans = [ch]
        ds = 1
        for level, mult in enumerate(c.channel_mult):
            for _ in range(c.num_res_blocks):
                out = int(mult * ch_model)
                layers: list[nn.Module] = [res_block(ch, out)]
                ch = out
                if ds in c.attention_ds:
                    layers.append(attention(ch, c.num_heads))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_chans.append(ch)
            if level != len(c.channel_mult) - 1:
                self.input_blocks.append(
                    EmbedSequential(res_block(ch, ch, down=True) if c.resblock_updown else Downsample(ch, True))
                )
                skip_chans.append(ch)
                ds *= 2

        self.middle_block = EmbedSequential(sdm_block(ch), attention(ch, c.num_heads), sdm_block(ch))

        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(c.channel_mult))[::-1]:
            for i in range(c.num_res_blocks + 1):
                skip_ch = skip_chans.pop()
                first = sdm_block(ch + skip_ch, int(ch_model * mult))
                first.concat_split = ch
                layers = [first]
                ch = int(ch_model * mult)
                if ds in c.attention_ds:
                    layers.append(attention(ch, heads_up))
                if level and i == c.num_res_blocks:
                    layers.append(sdm_block(ch, ch, up=True) if c.resblock_updown else Upsample(ch, True))
                    ds //= 2
                self.output_blocks.append(EmbedSequential(*layers))

        self.out = nn.Sequential(
            normalization(ch, c.norm_groups), nn.SiLU(), zero_module(nn.Conv2d(input_ch, c.out_channels, 3, padding=1))
        )
        if c.use_fp16:
            self.convert_to_fp16()

    @property
    def dtype(self) -> torch.dtype:
        return self.input_blocks[0][0].weight.dtype

    def convert_to_fp16(self) -> None:
        """Store the convolutions of encoder, middle and decoder in float16, as the published
        ``use_fp16`` does; norms, linears and the output head stay float32."""
        self.convert_convs(torch.float16)

    def convert_convs(self, dtype: torch.dtype) -> None:
        """The convolutions of encoder, middle and decoder in ``dtype``, in place (``use_fp16``'s split;
        bfloat16 is the runtime's ``bf16`` backend)."""
        for part in (self.input_blocks, self.middle_block, self.output_blocks):
            for m in part.modules():
                if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                    m.to(dtype)

    def check_inputs(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> None:
        """One clear message for inputs the network cannot take (instead of a torch shape error)."""
        c = self.config
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"x must be (N, 3, H, W) images, got shape {tuple(x.shape)}")
        if y.dim() != 4 or y.shape[1] != c.label_channels or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"y must be (N={x.shape[0]}, {c.label_channels}, H, W): {c.num_classes} one-hot classes"
                f"{'' if c.no_instance else ' + 1 instance-edge channel'}; got shape {tuple(y.shape)}"
            )
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must hold one integer timestep per image, shape ({x.shape[0]},); got {tuple(t.shape)}")
        f = c.downsample_factor
        if x.shape[2] % f or x.shape[3] % f:
            raise ValueError(f"image size {x.shape[2]}x{x.shape[3]} must be a multiple of {f} for this UNet")

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.check_inputs(x, t, y)
        emb = self.time_embed(timestep_embedding(t, self.config.num_channels))
        h, y = x.type(self.dtype), y.type(self.dtype)
        skips = []
        for block in self.input_blocks:
            h = block(h, emb, y)
            skips.append(h)
        h = self.middle_block(h, emb, y)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, y)
        return self.out(h.type(x.dtype))

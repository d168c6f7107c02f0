"""Analytic cost of a UNet: parameters, FLOPs and each layer's input size, without real memory.

Bytes have one counter, :func:`qgesco.runtime.costs.stored_bytes`.

The model is built on PyTorch's ``meta`` device and one forward is traced with
``torch.utils.flop_counter.FlopCounterMode`` (convolutions, linears and attention matmuls,
2 FLOPs per multiply-add), so the 675M-parameter published network costs nothing to measure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

from .config import UNetConfig
from .unet import UNetModel


@dataclass(frozen=True)
class ModelCosts:
    params: int
    height: int
    width: int
    flops_forward: int
    #: FLOPs per module path (``input_blocks.1.0.in_layers.2`` ...), innermost modules only.
    flops_by_module: dict[str, int] = field(repr=False)
    #: The spatial size of each innermost module's (first) input, e.g. what a convolution's weights are laid out for.
    input_hw_by_module: dict[str, tuple[int, ...]] = field(repr=False)

    @property
    def flops_guided_step(self) -> int:
        """A classifier-free-guided denoising step runs the network twice."""
        return 2 * self.flops_forward


def model_costs(cfg: UNetConfig, height: int | None = None, width: int | None = None) -> ModelCosts:
    """Parameters and FLOPs of one forward at ``height`` x ``width`` (default: ``cfg.image_hw``)."""
    h, w = height or cfg.image_hw[0], width or cfg.image_hw[1]
    f = cfg.downsample_factor
    if h <= 0 or w <= 0 or h % f or w % f:
        raise ValueError(f"--height/--width {h}x{w} must be positive multiples of {f} for this model")
    with torch.device("meta"):
        model = UNetModel(cfg)
        counter = FlopCounterMode(display=False)
        # FLOPs per innermost module from the running total around its forward: the counter's own
        # per-module paths lump layers called through a sliced nn.Sequential (``out_layers[1:]``).
        by_module: dict[str, int] = {}
        input_hw: dict[str, tuple[int, ...]] = {}

        def around(name: str):
            def before(_, args) -> None:  # returns nothing: a pre-hook's return value would replace the arguments
                by_module[name] = by_module.get(name, 0) - counter.get_total_flops()
                if args and isinstance(args[0], torch.Tensor):
                    input_hw.setdefault(name, tuple(args[0].shape[2:]))

            def after(_, args, out) -> None:
                by_module[name] += counter.get_total_flops()

            return before, after

        for name, module in model.named_modules():
            if name and next(module.children(), None) is None:
                before, after = around(name)
                module.register_forward_pre_hook(before)
                module.register_forward_hook(after)
        with counter, torch.no_grad():
            model(torch.empty(1, 3, h, w), torch.zeros(1, dtype=torch.long), torch.empty(1, cfg.label_channels, h, w))
    params = sum(p.numel() for p in model.parameters())
    leaves = {k: v for k, v in by_module.items() if v}
    return ModelCosts(params, h, w, counter.get_total_flops(), leaves, input_hw)

"""Post-training quantization of the GESCO UNet (Q-GESCO).

    from qgesco.quant import QuantConfig, build_calibration_set, quantize, save_quantized, load_quantized
    calib = build_calibration_set(model, open_dataset("camvid:train", image_hw=model.config.image_hw))
    qmodel = quantize(model, calib, QuantConfig(weight_bits=8, act_bits=8, iters=1000))
    save_quantized(qmodel, "q.safetensors")
    qmodel = load_quantized("q.safetensors")      # fake-quant model, fp32 compute from int weights

Calibration set (timestep- and channel-noise-aware) → module swap (per-channel weights, split
decoder concatenations, optional activation quantizers) → AdaRound + block reconstruction →
a self-describing integer checkpoint. See docs/quantization.md.
"""

from .api import quantize
from .calibration import PAPER_PSNRS, CalibrationRecipe, CalibrationSet, build_calibration_set
from .checkpoint import load_quantized, pack_int4, save_quantized, unpack_int4
from .layers import QuantLayer, QuantQKVAttention
from .quantizers import ActQuantizer, AdaRound, fake_quantize, scale_zero_point, search_range
from .reconstruct import block_units
from .settings import QuantConfig

__all__ = [
    "PAPER_PSNRS",
    "ActQuantizer",
    "AdaRound",
    "CalibrationRecipe",
    "CalibrationSet",
    "QuantConfig",
    "QuantLayer",
    "QuantQKVAttention",
    "block_units",
    "build_calibration_set",
    "fake_quantize",
    "load_quantized",
    "pack_int4",
    "quantize",
    "save_quantized",
    "scale_zero_point",
    "search_range",
    "unpack_int4",
]

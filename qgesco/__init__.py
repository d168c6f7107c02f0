"""qgesco: quantized generative semantic communication (Q-GESCO).

The public API in five calls (see README and :mod:`qgesco.api`): :func:`load_model`,
:func:`send`, :func:`regenerate`, :func:`quantize` (after :func:`build_calibration_set`)
and ``qgesco.evaluate.evaluate`` (a subpackage of its own). A run takes one frozen settings object
(:class:`QuantConfig`, :class:`CalibrationRecipe`, ``EvalSettings``, ``CompareSettings``) that checks
itself when made and reads and writes dicts for YAML and results files. Names are resolved on first use,
so that importing one subpackage (say ``qgesco.metrics``) never drags in the others.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "api",
    "send": "channel",
    "transmit": "channel",
    "encode": "channel",
    "AWGN": "channel",
    "Rayleigh": "channel",
    "UNetConfig": "models",
    "UNetModel": "models",
    "from_official_flags": "models",
    "create_model": "models.checkpoint",
    "load_official_checkpoint": "models.checkpoint",
    "save_model": "models.checkpoint",
    "build_calibration_set": "quant",
    "CalibrationRecipe": "quant",
    "QuantConfig": "quant",
    "quantize": "quant",
    "save_quantized": "quant",
    "load_quantized": "quant",
    "regenerate": "receiver",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'qgesco' has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)

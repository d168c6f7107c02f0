"""qgesco: quantized generative semantic communication (Q-GESCO)."""

__version__ = "0.1.0"

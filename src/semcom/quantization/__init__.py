"""Latents to symbols: the 8-bit scalar quantiser of eq. (2)."""

from semcom.quantization.scalar import Q, dequantize, quantize

__all__ = ["Q", "dequantize", "quantize"]

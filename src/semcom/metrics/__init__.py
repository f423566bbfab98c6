"""Metrics: fidelity, bits and the reasoning capacity of the Hopfield paper."""

#: Where each exported name lives: loaded on first use, so that semcom.metrics.bits does not import torchmetrics.
_EXPORTS = {
    "index_bits": "semcom.metrics.bits",
    "paper_bits": "semcom.metrics.bits",
    "compression_ratio": "semcom.metrics.capacity",
    "raw_bits_per_frame": "semcom.metrics.capacity",
    "reasoning_capacity": "semcom.metrics.capacity",
    "semantic_efficiency": "semcom.metrics.capacity",
    "ms_ssim": "semcom.metrics.image",
    "mse": "semcom.metrics.image",
    "psnr": "semcom.metrics.image",
    "psnr_per_frame": "semcom.metrics.image",
    "ssim": "semcom.metrics.image",
}

__all__ = ["compression_ratio", "index_bits", "ms_ssim", "mse", "paper_bits", "psnr", "psnr_per_frame",
           "raw_bits_per_frame", "reasoning_capacity", "semantic_efficiency", "ssim"]


def __getattr__(name: str):
    """Load a name's sub-module on first use (PEP 562), so that importing one sub-module does not import all."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

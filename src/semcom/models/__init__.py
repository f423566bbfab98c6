"""Encoders and decoders (``nn.Module``)."""

from semcom.models.autoencoder import SphericalAutoencoder, SphericalDecoder, SphericalEncoder
from semcom.models.weights import fingerprint, load_autoencoder, save_autoencoder, shipped_weights_path

__all__ = ["SphericalAutoencoder", "SphericalDecoder", "SphericalEncoder", "fingerprint",
           "load_autoencoder", "save_autoencoder", "shipped_weights_path"]

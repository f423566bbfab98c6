"""The robust masked VQ-VAE of the robust semantic-communication paper (issue 11, item 3).

* :mod:`semcom.robust.config`: :class:`RobustConfig`, the typed, validated hyper-parameters;
* :mod:`semcom.robust.vit`: a small ViT encoder on ``torch.nn`` (patch sizes 4, 8, 16, any divisor of the image);
* :mod:`semcom.robust.masking`: random and noise-aware patch masking (Section III-A2);
* :mod:`semcom.robust.codebook`: the codebook with the straight-through estimator and eq. (12), the orthogonality
  loss (Section IV-B3), similarity-based deduplication of indices (Section IV-B1, Fig. 2b);
* :mod:`semcom.robust.fim`: the feature importance module driven by the SNR (Section IV-A, eqs. 13-15);
* :mod:`semcom.robust.model`: :class:`MaskedVQVAE` and the ViT JSCC anchor :class:`ViTJSCC`;
* :mod:`semcom.robust.losses`: the training loss; :mod:`semcom.robust.train`: a CPU training loop;
* :mod:`semcom.robust.weights`: safetensors save and load;
* :mod:`semcom.robust.link`: the paper's link (8x4 MIMO, 16-QAM, LDPC 1/2) for indices, analogue latents, JPEG;
* :mod:`semcom.robust.zoo`: the shipped models, their training recipe and their evaluation over the link.
"""

from semcom._lazy import lazy_exports

#: Where each exported name lives: loaded on first use, so that ``import semcom.robust`` does not import torch.
_EXPORTS = {
    "RobustConfig": "semcom.robust.config",
    "robust_config": "semcom.robust.config",
    "ViTEncoder": "semcom.robust.vit",
    "PatchMasking": "semcom.robust.masking",
    "VectorQuantizer": "semcom.robust.codebook",
    "orthogonality_loss": "semcom.robust.codebook",
    "dedup_encode": "semcom.robust.codebook",
    "dedup_decode": "semcom.robust.codebook",
    "FeatureImportance": "semcom.robust.fim",
    "MaskedVQVAE": "semcom.robust.model",
    "ViTJSCC": "semcom.robust.model",
    "RobustOutput": "semcom.robust.model",
    "awgn_channel": "semcom.robust.model",
    "symmetric_index_channel": "semcom.robust.model",
    "robust_loss": "semcom.robust.losses",
    "train_masked_vqvae": "semcom.robust.train",
    "accuracy": "semcom.robust.train",
    "recall_at_1": "semcom.robust.train",
    "save_robust": "semcom.robust.weights",
    "load_robust": "semcom.robust.weights",
    "IndexLink": "semcom.robust.link",
    "MIMOLatentChannel": "semcom.robust.link",
    "JPEGLink": "semcom.robust.link",
    "VARIANTS": "semcom.robust.zoo",
    "load_variant": "semcom.robust.zoo",
    "train_variant": "semcom.robust.zoo",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)

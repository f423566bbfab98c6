"""Real photographs that ship inside installed packages.

Nothing is downloaded: scikit-image's data folder and scikit-learn's sample
images are part of their wheels. Grey-scale textures are stacked to RGB.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: scikit-image colour photographs (all shipped in the wheel's data folder).
SKIMAGE_COLOUR = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
                  "motorcycle_left", "motorcycle_right", "retina", "immunohistochemistry")
#: scikit-image grey-scale photographs and textures, stacked to RGB.
SKIMAGE_GREY = ("camera", "brick", "grass", "gravel", "moon", "coins", "page", "text")
#: scikit-learn sample images.
SKLEARN = ("china", "flower")
#: More photographs that ship in wheels: scikit-image (cell, clock), matplotlib's sample data
#: (grace_hopper, present), PyWavelets (aero, ascent). None of them is used by a content regime.
EXTRA = ("cell", "clock_motion", "grace_hopper", "present", "aero", "ascent")

_SKIMAGE_FILES = {"rocket": "rocket.jpg", "hubble_deep_field": "hubble_deep_field.jpg",
                  "retina": "retina.jpg", "immunohistochemistry": "ihc.png"}

PHOTO_NAMES = SKIMAGE_COLOUR + SKIMAGE_GREY + SKLEARN + EXTRA

#: The photographs the eight content regimes are rendered from (:mod:`semcom.sources.regimes`); with
#: ``motorcycle_right``, the other half of the stereo pair of ``motorcycle_left``, no learned codec of the
#: zoo trains on any of them, so the regimes measure fidelity on content the training never saw.
REGIME_PHOTOS = ("astronaut", "chelsea", "china", "rocket", "coffee", "immunohistochemistry", "coins",
                 "retina", "camera", "motorcycle_left", "motorcycle_right", "gravel", "grass", "flower")
#: Photos the learned codecs train on, and the photos they are validated on (split by photo).
TRAIN_PHOTOS = ("hubble_deep_field", "moon", "brick", "page", "text", "cell", "clock_motion", "grace_hopper",
                "aero")
VALIDATION_PHOTOS = ("ascent", "present")


def _to_rgb_uint8(img: np.ndarray, name: str = "photo") -> np.ndarray:
    from semcom.sources.resize import scale_to_uint8

    img = scale_to_uint8(img, name)  # 16-bit and float photos scaled, not clipped
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])


@lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray:
    """Return the bundled photograph ``name`` as an HxWx3 uint8 array (read-only)."""
    from semcom.errors import SourceError

    if name not in PHOTO_NAMES:
        raise SourceError(f"unknown bundled photo {name!r}; choose from {', '.join(PHOTO_NAMES)}")
    if name in SKLEARN:
        from sklearn.datasets import load_sample_image

        img = load_sample_image(f"{name}.jpg")
    elif name in ("aero", "ascent"):
        import pywt.data

        img = getattr(pywt.data, name)()
    elif name in ("grace_hopper", "present"):
        from matplotlib import cbook
        from PIL import Image

        file = "grace_hopper.jpg" if name == "grace_hopper" else "Minduka_Present_Blue_Pack.png"
        with cbook.get_sample_data(file) as f:
            img = np.asarray(Image.open(f).convert("RGB"))
    else:
        import os

        import skimage.data
        from PIL import Image

        path = os.path.join(skimage.data.data_dir, _SKIMAGE_FILES.get(name, f"{name}.png"))
        img = np.asarray(Image.open(path).convert("RGB" if name in SKIMAGE_COLOUR else "L"))
    img = _to_rgb_uint8(img, f"bundled photo {name}")
    img.setflags(write=False)
    return img


def bundled_photos(names: tuple[str, ...] = PHOTO_NAMES) -> dict[str, np.ndarray]:
    """All bundled photographs by name."""
    return {n: load_photo(n) for n in names}

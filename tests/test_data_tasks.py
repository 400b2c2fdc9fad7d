"""Tests of tasks: offline datasets, numpy arrays, image folders and their split rules."""

import re
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from keras_multipath.data import (
    MissingDatasetError,
    from_arrays,
    from_image_folder,
    get_task,
    list_tasks,
    make_dataset,
    offline,
    stratified_split,
)

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="task loading uses numpy and tf.data only, whatever the Keras backend; it runs on the tensorflow backend",
)

# name: (train, validation, test, image_shape, num_classes)
OFFLINE_SIZES = {
    "mnist": (50_000, 10_000, 10_000, (28, 28, 1), 10),
    "fashion_mnist": (54_000, 6_000, 10_000, (28, 28, 1), 10),
    "animal_mnist": (8_000, 1_000, 1_000, (28, 28, 1), 10),
    "elpv_defect": (2_100, 262, 262, (64, 64, 1), 4),
    "elpv_type": (2_100, 262, 262, (64, 64, 1), 2),
    "digits": (1_437, 180, 180, (8, 8, 1), 10),
    "mnist_5k": (4_000, 500, 500, (28, 28, 1), 10),
    "lfw_faces": (160, 20, 20, (25, 25, 1), 2),
    "pyclustering_digits": (200, 25, 25, (32, 32, 1), 10),
}


def test_list_tasks_names_offline_tasks():
    assert list_tasks() == sorted(OFFLINE_SIZES)


@pytest.mark.parametrize("name", sorted(OFFLINE_SIZES))
def test_offline_task_sizes(name):
    train, validation, test, image_shape, num_classes = OFFLINE_SIZES[name]
    task = get_task(name)

    assert task.name == name
    assert task.num_classes == num_classes
    assert task.image_shape == image_shape
    assert len(task.class_names) == num_classes
    assert task.num_examples("train") == train
    assert task.num_examples("validation") == validation
    assert task.num_examples("test") == test
    for split in task.splits:
        images, labels = task.as_numpy(split)
        assert images.dtype == np.uint8
        assert images.shape[1:] == image_shape
        assert labels.min() >= 0
        assert labels.max() == num_classes - 1
        # Real images use most of the 0..255 range, which also catches a wrong rescaling.
        assert images.max() >= 200


def test_carved_validation_is_stratified():
    task = get_task("animal_mnist")
    _, labels = task.as_numpy("validation")
    np.testing.assert_array_equal(np.bincount(labels), np.full(10, 100))


def test_carving_is_seeded_and_disjoint():
    first = get_task("digits", seed=0)
    again = get_task("digits", seed=0)
    other = get_task("digits", seed=1)
    np.testing.assert_array_equal(first.as_numpy("validation")[0], again.as_numpy("validation")[0])
    assert not np.array_equal(first.as_numpy("validation")[0], other.as_numpy("validation")[0])

    images, _ = offline.load_digits_arrays()
    parts = np.concatenate([first.as_numpy(s)[0] for s in first.splits])
    sort_rows = lambda a: np.sort(a.reshape(len(a), -1).view(f"V{a[0].size}").ravel())
    np.testing.assert_array_equal(sort_rows(parts), sort_rows(images))


def test_elpv_full_resolution():
    task = get_task("elpv_type", image_size=None)
    assert task.image_shape == (300, 300, 1)
    assert task.num_examples("train") == 2_100


def test_unknown_task_lists_known_tasks():
    with pytest.raises(ValueError, match=r"Unknown task 'mnst'. Known tasks: animal_mnist, digits"):
        get_task("mnst")


def test_unknown_source_raises():
    with pytest.raises(ValueError, match="Unknown task source 'hub'"):
        get_task("mnist", source="hub")


@pytest.mark.parametrize(
    "name, expected",
    [
        ("tfds:", "Missing the dataset name after the 'tfds:' prefix. Pass a name such as 'tfds:cifar10'."),
        ("folder:", "Missing the folder path after the 'folder:' prefix. Pass a name such as 'folder:/data/flowers'."),
    ],
)
def test_prefix_without_name_raises(name, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        get_task(name)


def test_missing_package_names_install_command(monkeypatch):
    offline.load_lfw_faces_arrays.cache_clear()
    # A None entry in sys.modules makes the import fail as if the package were absent.
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    try:
        with pytest.raises(MissingDatasetError, match="pip install scikit-image"):
            get_task("lfw_faces")
    finally:
        offline.load_lfw_faces_arrays.cache_clear()


def test_missing_fashion_files_names_apt_package(tmp_path):
    with pytest.raises(MissingDatasetError, match="apt-get install dataset-fashion-mnist"):
        get_task("fashion_mnist", data_dir=str(tmp_path))


def test_stratified_split_counts():
    labels = np.repeat(np.arange(3), [50, 30, 20])
    remaining, carved = stratified_split(labels, 0.1, seed=0)
    assert len(carved) == 10
    np.testing.assert_array_equal(np.bincount(labels[carved]), [5, 3, 2])
    assert len(np.intersect1d(remaining, carved)) == 0
    assert len(remaining) + len(carved) == 100


def test_from_arrays_carves_missing_splits():
    x = np.arange(200 * 4 * 4, dtype=np.uint8).reshape(200, 4, 4) % 251
    y = np.arange(200) % 4
    task = from_arrays("toy", x, y)
    assert task.num_classes == 4
    assert task.image_shape == (4, 4, 1)
    assert [task.num_examples(s) for s in task.splits] == [160, 20, 20]


def test_from_arrays_keeps_given_splits():
    x = np.zeros((30, 4, 4, 3), np.uint8)
    y = np.arange(30) % 3
    task = from_arrays("toy", x, y, x[:5], y[:5], x[:7], y[:7])
    assert [task.num_examples(s) for s in task.splits] == [30, 5, 7]


def test_from_arrays_value_range():
    x = np.linspace(0.0, 1.0, 20 * 4).reshape(20, 2, 2)
    task = from_arrays("toy", x, np.arange(20) % 2, value_range=(0, 1))
    images = np.concatenate([task.as_numpy(s)[0] for s in task.splits])
    assert images.dtype == np.uint8
    assert images.min() == 0
    assert images.max() == 255
    with pytest.raises(ValueError, match=r"dtype float64; pass value_range=\(low, high\)"):
        from_arrays("toy", x, np.arange(20) % 2)
    x[3, 0, 0] = np.nan
    with pytest.raises(ValueError, match="contain 1 NaN or infinite values"):
        from_arrays("toy", x, np.arange(20) % 2, value_range=(0, 1))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(seed="1"), "Expected an integer seed. Received: seed='1'"),
        (dict(seed=None), "Expected an integer seed. Received: seed=None"),
        (dict(validation_fraction=1.5), "Expected 0 < validation_fraction < 1. Received: validation_fraction=1.5"),
        (dict(test_fraction=0), "Expected 0 < test_fraction < 1. Received: test_fraction=0"),
    ],
)
def test_carving_rejects_bad_arguments(tmp_path, kwargs, message):
    x = np.zeros((20, 4, 4), np.uint8)
    (tmp_path / "a").mkdir()
    Image.fromarray(x[0]).save(tmp_path / "a" / "0.png")

    with pytest.raises(ValueError, match="Expected") as info:
        from_arrays("toy", x, np.arange(20) % 2, **kwargs)
    assert message in str(info.value)
    with pytest.raises(ValueError, match="Expected") as info:
        from_image_folder(str(tmp_path), **kwargs)
    assert message in str(info.value)
    if "seed" in kwargs:
        with pytest.raises(ValueError, match="Expected") as info:
            get_task("digits", **kwargs)
        assert message in str(info.value)


def test_from_arrays_rejects_labels_outside_range():
    x = np.zeros((10, 4, 4), np.uint8)
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\); found 1 outside, e.g. 7"):
        from_arrays("toy", x, [0, 1, 2, 0, 1, 2, 0, 1, 2, 7], num_classes=3)
    with pytest.raises(ValueError, match=r"Labels of task 'toy' must be class indices 0, 1, ...; found -1\."):
        from_arrays("toy", x, [0, 1, 2, 0, 1, 2, 0, 1, 2, -1])
    with pytest.raises(ValueError, match=r"Labels of task 'toy' must be class indices 0, 1, ...; found -1\."):
        from_arrays("toy", x, -np.ones(10, np.int64))
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\); found 1 outside, e.g. -1"):
        from_arrays("toy", x, [0, 1, 2, 0, 1, 2, 0, 1, 2, -1], num_classes=3)


def test_from_arrays_rejects_inconsistent_shapes():
    images = [np.zeros((4, 4), np.uint8)] * 5 + [np.zeros((5, 4), np.uint8)]
    with pytest.raises(ValueError, match=r"inconsistent shapes: image 0 is \(4, 4\) but image 5 is \(5, 4\)"):
        from_arrays("toy", images, np.zeros(6, int))
    x = np.zeros((10, 4, 4), np.uint8)
    with pytest.raises(ValueError, match=r"split 'test' .* have shape \(5, 5, 1\), but the training images"):
        from_arrays("toy", x, np.arange(10) % 2, x_test=np.zeros((3, 5, 5), np.uint8), y_test=[0, 1, 0])


def test_from_arrays_rejects_empty_split():
    x = np.zeros((10, 4, 4), np.uint8)
    y = np.arange(10) % 2
    with pytest.raises(ValueError, match="split 'validation' of task 'toy' is empty"):
        from_arrays("toy", x, y, x[:0], y[:0])
    with pytest.raises(ValueError, match="Split 'train' of task 'toy' is empty"):
        from_arrays("toy", x[:0], y[:0], x, y, x, y)


def _write_png(path, color, size=(6, 5)):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[...] = color
    pixels[0, 0] = (255, 255, 255)
    Image.fromarray(pixels).save(path)


COLORS = {"blue": (0, 0, 200), "green": (0, 180, 0), "red": (220, 10, 10)}


def test_image_folder_with_split_folders(tmp_path):
    for split, count in (("train", 8), ("test", 3)):
        for class_name, color in COLORS.items():
            for i in range(count):
                _write_png(tmp_path / split / class_name / f"{i}.png", color)

    task = get_task(f"folder:{tmp_path}")

    assert task.class_names == ("blue", "green", "red")
    assert task.num_classes == 3
    assert task.image_shape == (5, 6, 3)
    assert [task.num_examples(s) for s in task.splits] == [22, 2, 9]
    for split in task.splits:
        images, labels = task.as_numpy(split)
        for image, label in zip(images, labels):
            expected = COLORS[task.class_names[label]]
            np.testing.assert_array_equal(image[1, 1], expected)
            np.testing.assert_array_equal(image[0, 0], (255, 255, 255))
    _, validation_labels = task.as_numpy("validation")
    assert len(set(validation_labels.tolist())) == 2


def test_image_folder_without_split_folders(tmp_path):
    for class_name, color in COLORS.items():
        for i in range(10):
            _write_png(tmp_path / class_name / f"{i}.png", color, size=(4 + i % 2, 4))
    task = from_image_folder(str(tmp_path), name="shapes", channels=1)
    assert task.name == "shapes"
    assert task.image_shape == (None, None, 1)
    assert [task.num_examples(s) for s in task.splits] == [24, 3, 3]
    first_image, _ = next(iter(task.as_dataset("train")))
    assert first_image.shape[-1] == 1

    images, labels = next(iter(make_dataset(task, "train", 6, image_sizes=8, seed=0)))
    assert images.shape == (6, 8, 8, 3)
    assert labels.shape == (6,)
    with pytest.raises(ValueError, match=r"pass image_sizes \(or ds_image_size\)"):
        make_dataset(task, "train", 6)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        from_image_folder(str(tmp_path / "missing"))
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match="No images found in split folder"):
        from_image_folder(str(tmp_path))
    with pytest.raises(ValueError, match="Expected channels 1 or 3"):
        from_image_folder(str(tmp_path), channels=4)
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="file.png' is a file"):
        from_image_folder(str(tmp_path / "file.png"))


def test_image_folder_rejects_empty_class(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for i in range(4):
        Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(tmp_path / "a" / f"{i}.png")

    with pytest.raises(ValueError, match=r"Class folders \['b'\] of image folder") as info:
        from_image_folder(str(tmp_path))
    assert "Add images or remove the folders" in str(info.value)


def test_image_folder_rejects_one_class(tmp_path):
    for i in range(4):
        _write_png(tmp_path / "cats" / f"{i}.png", (10, 10, 10))
    with pytest.raises(ValueError, match=r"has one class folder \['cats'\]; a classification task needs at least 2"):
        from_image_folder(str(tmp_path))


def test_image_folder_rejects_corrupt_image(tmp_path):
    for class_name, color in COLORS.items():
        for i in range(4):
            _write_png(tmp_path / class_name / f"{i}.png", color)
    broken = tmp_path / "red" / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"Invalid image file '.*broken.png': .*Remove or replace it"):
        from_image_folder(str(tmp_path))


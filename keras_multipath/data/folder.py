"""Tasks from a folder of image files, one sub-folder per class.

Two layouts are accepted:

- `root/<class>/<image>`: all images are training data; validation and test are carved out.
- `root/<split>/<class>/<image>` with split folders `train` and optionally `validation`
  (or `val`) and `test`: missing validation or test splits are carved out of `train`.

Carving takes `validation_fraction` and `test_fraction` of the training files, stratified by
class and seeded. Class names are the sorted names of the class folders over all splits, so a
class gets the same label in every split. Images are decoded lazily with
`tf.io.decode_image` (PNG, JPEG, BMP and GIF).
"""

import os

import numpy as np
import tensorflow as tf
from absl import logging

from keras_multipath.data.task import Task, TaskSplit, check_carving_args, stratified_split

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
SPLIT_FOLDERS = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}


def _list_class_files(folder):
    """Return {class name: sorted image paths} for the sub-folders of `folder`."""
    files = {}
    for entry in sorted(os.listdir(folder)):
        class_dir = os.path.join(folder, entry)
        if not os.path.isdir(class_dir):
            continue
        files[entry] = sorted(
            os.path.join(class_dir, f)
            for f in os.listdir(class_dir)
            if f.lower().endswith(IMAGE_EXTENSIONS)
        )
    return files


def _read_image_shape(path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(
            f"Invalid image file '{path}': {error}. Remove or replace it."
        ) from None
    return height, width


def from_image_folder(root, name=None, channels=3, validation_fraction=0.1, test_fraction=0.1,
                      seed=0):
    """Build a `Task` from a folder of images.

    Args:
        root: the folder; see the module docstring for the layouts.
        name: task name; defaults to "folder:<root>".
        channels: 1 to decode images as grayscale, 3 for RGB.
        validation_fraction, test_fraction: share of the training files carved out for a
            missing split.
        seed: seed of the carving.

    Returns:
        A `Task` whose image_shape is (H, W, channels) when all images share one size, else
        (None, None, channels).

    Raises:
        FileNotFoundError: when `root` does not exist.
        NotADirectoryError: when `root` is a file.
        ValueError: when a folder contains no images, a class folder has no image in any
            split, there are fewer than 2 classes, an image file cannot be read, or a split
            ends up empty.
    """
    if channels not in (1, 3):
        raise ValueError(f"Expected channels 1 or 3. Received: channels={channels!r}")
    check_carving_args(validation_fraction, test_fraction, seed)
    if not os.path.exists(root):
        raise FileNotFoundError(f"Image folder '{root}' does not exist.")
    if not os.path.isdir(root):
        raise NotADirectoryError(
            f"Image folder '{root}' is a file. Pass a folder with one sub-folder of images per "
            f"class."
        )
    name = name or f"folder:{root}"

    split_dirs = {
        SPLIT_FOLDERS[entry]: os.path.join(root, entry)
        for entry in sorted(os.listdir(root))
        if entry in SPLIT_FOLDERS and os.path.isdir(os.path.join(root, entry))
    }
    if split_dirs:
        if "train" not in split_dirs:
            raise ValueError(
                f"Image folder '{root}' has split folders {sorted(split_dirs)} but no 'train' folder."
            )
        split_files = {split: _list_class_files(folder) for split, folder in split_dirs.items()}
    else:
        split_files = {"train": _list_class_files(root)}

    class_names = sorted({c for files in split_files.values() for c in files})
    if not class_names:
        raise ValueError(f"Image folder '{root}' has no class sub-folders (expected root/<class>/*.png).")
    label_of = {c: i for i, c in enumerate(class_names)}

    split_examples = {}
    for split, files in split_files.items():
        paths = [p for c in class_names for p in files.get(c, [])]
        labels = [label_of[c] for c in class_names for _ in files.get(c, [])]
        if not paths:
            raise ValueError(
                f"No images found in split folder '{split_dirs.get(split, root)}'; expected extensions "
                f"{IMAGE_EXTENSIONS}."
            )
        split_examples[split] = (np.asarray(paths), np.asarray(labels, np.int64))
    empty_classes = [c for c in class_names if not any(files.get(c) for files in split_files.values())]
    if empty_classes:
        raise ValueError(
            f"Class folders {empty_classes} of image folder '{root}' contain no images with "
            f"extensions {IMAGE_EXTENSIONS}. Add images or remove the folders."
        )
    if len(class_names) < 2:
        raise ValueError(
            f"Image folder '{root}' has one class folder {class_names}; a classification task "
            f"needs at least 2. Add a sub-folder of images per class."
        )

    paths, labels = split_examples["train"]
    if "test" not in split_examples:
        train_indices, carved = stratified_split(labels, test_fraction, seed)
        split_examples["test"] = (paths[carved], labels[carved])
        split_examples["train"] = (paths[train_indices], labels[train_indices])
    if "validation" not in split_examples:
        train_paths, train_labels = split_examples["train"]
        fraction = min(max(round(validation_fraction * len(labels)), 1) / len(train_labels), 0.5)
        train_indices, carved = stratified_split(train_labels, fraction, seed + 1)
        split_examples["validation"] = (train_paths[carved], train_labels[carved])
        split_examples["train"] = (train_paths[train_indices], train_labels[train_indices])

    shapes = {_read_image_shape(p) for split_paths, _ in split_examples.values() for p in split_paths}
    if len(shapes) == 1:
        height, width = shapes.pop()
    else:
        height = width = None
        logging.info("Image folder %s holds %d image sizes; the pipeline resizes them.", root, len(shapes))
    image_shape = (height, width, channels)

    splits = {
        split: TaskSplit(
            dataset_fn=_make_dataset_fn(split_paths, split_labels, image_shape),
            size=len(split_paths),
            shuffles_examples=True,
        )
        for split, (split_paths, split_labels) in split_examples.items()
    }
    return Task(name, len(class_names), image_shape, splits, class_names, source=f"image folder {root}")


def _make_dataset_fn(paths, labels, image_shape):
    channels = image_shape[2]

    def load(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
        image.set_shape(image_shape)
        return image, label

    def dataset_fn(shuffle_files, seed):
        dataset = tf.data.Dataset.from_tensor_slices((paths, labels.astype(np.int32)))
        if shuffle_files:
            # The file list is shuffled as a whole, which shuffles every example uniformly.
            dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
        return dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    return dataset_fn

"""Tasks: named image classification problems with train, validation and test splits.

A `Task` stores its splits either as numpy arrays in memory (offline datasets, user arrays) or
as a function that builds a `tf.data.Dataset` on demand (TFDS datasets, image folders). Either
way `Task.as_dataset(split)` yields `(image, label)` pairs with uint8 images of shape
`(H, W, C)` and int32 labels, which `keras_multipath.data.make_dataset` turns into batches.

The validation split is always labelled data carved out of the training data when a dataset
ships no validation split, and the test split is reserved for the final report: nothing in
this package reads it to select a model.
"""

import dataclasses
import numbers
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class TaskSplit:
    """One split of a task, stored as arrays or built as a `tf.data.Dataset`.

    Exactly one of `images` (with `labels`) and `dataset_fn` is set.

    Attributes:
        images: uint8 array of shape (N, H, W, C), or None.
        labels: int32 array of shape (N,), or None.
        dataset_fn: callable `(shuffle_files, seed) -> tf.data.Dataset` of `(uint8 image,
            int label)` pairs, or None. With `shuffle_files=True` it may shuffle the order of
            its files but need not shuffle single examples.
        size: number of examples. Required with `dataset_fn`.
        shuffles_examples: True when `dataset_fn(shuffle_files=True, ...)` already returns a
            uniformly shuffled order of all examples (an image folder shuffles its file list),
            so no shuffle buffer is needed on top.
    """

    images: np.ndarray | None = None
    labels: np.ndarray | None = None
    dataset_fn: Callable[[bool, int | None], tf.data.Dataset] | None = None
    size: int | None = None
    shuffles_examples: bool = False

    @property
    def in_memory(self):
        return self.images is not None

    @property
    def num_examples(self):
        if self.images is not None:
            return int(self.images.shape[0])
        return int(self.size)


class Task:
    """An image classification task with labelled train, validation and test splits.

    Args:
        name: task name, e.g. "mnist" or "tfds:cifar100".
        num_classes: number of classes; labels are integers in [0, num_classes).
        image_shape: (height, width, channels) of the stored images. Height and width are
            None when the images differ in size (an image folder of photos); the input
            pipeline then needs explicit image sizes.
        splits: mapping from "train", "validation" and "test" to a `TaskSplit`.
        class_names: optional sequence of `num_classes` names.
        source: short description of where the data comes from, for logs and reports.

    Raises:
        ValueError: when a split is missing or empty, when labels fall outside
            [0, num_classes), or when images do not match `image_shape`.

    Example:

    >>> import numpy as np
    >>> from keras_multipath.data import from_arrays
    >>> x = np.zeros((20, 8, 8), np.uint8); y = np.arange(20) % 2
    >>> task = from_arrays("toy", x, y, num_classes=2)
    >>> task.num_examples("train"), task.num_examples("validation"), task.num_examples("test")
    (16, 2, 2)
    """

    def __init__(self, name, num_classes, image_shape, splits, class_names=None, source=""):
        if not isinstance(name, str) or not name:
            raise ValueError(f"Expected a non-empty task name. Received: name={name!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
            raise TypeError(f"Expected an integer num_classes. Received: {num_classes!r}")
        if num_classes < 1:
            raise ValueError(f"Expected num_classes >= 1 for task '{name}'. Received: {num_classes}")
        image_shape = tuple(image_shape)
        if len(image_shape) != 3 or image_shape[2] not in (1, 3):
            raise ValueError(
                f"Expected image_shape (height, width, channels) with 1 or 3 channels for task "
                f"'{name}'. Received: image_shape={image_shape}"
            )
        missing = [s for s in SPLITS if s not in splits]
        if missing:
            raise ValueError(f"Task '{name}' is missing the split(s) {missing}; it needs {list(SPLITS)}.")
        unknown = sorted(set(splits) - set(SPLITS))
        if unknown:
            raise ValueError(f"Task '{name}' has unknown split(s) {unknown}; expected only {list(SPLITS)}.")
        if class_names is not None:
            class_names = tuple(str(c) for c in class_names)
            if len(class_names) != num_classes:
                raise ValueError(
                    f"Task '{name}' has {num_classes} classes but {len(class_names)} class names."
                )

        self.name = name
        self.num_classes = int(num_classes)
        self.image_shape = image_shape
        self.class_names = class_names
        self.source = source
        self._splits = {}
        for split_name in SPLITS:
            split = splits[split_name]
            self._check_split(split_name, split)
            self._splits[split_name] = split

    def _check_split(self, split_name, split):
        where = f"split '{split_name}' of task '{self.name}'"
        if not isinstance(split, TaskSplit):
            raise TypeError(f"Expected a TaskSplit for {where}. Received: {type(split).__name__}")
        if split.in_memory:
            check_labels(split.labels, self.num_classes, where)
            if split.images.dtype != np.uint8 or split.images.ndim != 4:
                raise ValueError(
                    f"Expected uint8 images of shape (N, H, W, C) in {where}. Received: "
                    f"dtype={split.images.dtype}, shape={split.images.shape}"
                )
            if split.images.shape[0] != split.labels.shape[0]:
                raise ValueError(
                    f"{where} has {split.images.shape[0]} images but {split.labels.shape[0]} labels."
                )
            if not shapes_compatible(split.images.shape[1:], self.image_shape):
                raise ValueError(
                    f"Images of {where} have shape {split.images.shape[1:]}, but the task's "
                    f"image_shape is {self.image_shape}."
                )
        elif split.dataset_fn is None or split.size is None:
            raise ValueError(f"{where} needs either images and labels or a dataset_fn and size.")
        if split.num_examples == 0:
            raise ValueError(f"{where} is empty; every split needs at least one example.")

    @property
    def splits(self):
        """Split names, always ("train", "validation", "test")."""
        return SPLITS

    @property
    def channels(self):
        return self.image_shape[2]

    def split(self, split):
        """Return the `TaskSplit` named `split`."""
        if split not in self._splits:
            raise ValueError(f"Unknown split '{split}' for task '{self.name}'. Known splits: {list(SPLITS)}")
        return self._splits[split]

    def num_examples(self, split):
        """Return the number of examples in `split`."""
        return self.split(split).num_examples

    def as_numpy(self, split):
        """Return `(images, labels)` of `split` as numpy arrays (loads a streamed split)."""
        task_split = self.split(split)
        if task_split.in_memory:
            return task_split.images, task_split.labels
        images, labels = [], []
        for image, label in task_split.dataset_fn(False, None).as_numpy_iterator():
            images.append(image)
            labels.append(label)
        return stack_images(images, f"split '{split}' of task '{self.name}'"), np.asarray(labels, np.int32)

    def as_dataset(self, split, shuffle_files=False, seed=None):
        """Build a `tf.data.Dataset` of `(uint8 image (H, W, C), int32 label)` for `split`.

        Array splits come in stored order; shuffling examples is the input pipeline's job.
        `shuffle_files` shuffles the file order of streamed splits.
        """
        task_split = self.split(split)
        if task_split.in_memory:
            return tf.data.Dataset.from_tensor_slices((task_split.images, task_split.labels))
        dataset = task_split.dataset_fn(shuffle_files, seed)
        return dataset.map(_cast_label, num_parallel_calls=tf.data.AUTOTUNE)

    def __repr__(self):
        sizes = ", ".join(f"{s}={self.num_examples(s)}" for s in SPLITS)
        return (
            f"Task(name={self.name!r}, num_classes={self.num_classes}, "
            f"image_shape={self.image_shape}, {sizes})"
        )


def _cast_label(image, label):
    return image, tf.cast(label, tf.int32)


def shapes_compatible(shape, expected):
    """Return True when `shape` equals `expected`, where None in `expected` matches anything."""
    if len(shape) != len(expected):
        return False
    return all(e is None or s == e for s, e in zip(shape, expected))


def check_labels(labels, num_classes, where):
    """Raise ValueError unless `labels` is a 1-D integer array with values in [0, num_classes)."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"Expected 1-D labels in {where}. Received shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"Expected integer labels in {where}. Received dtype {labels.dtype}")
    if labels.size:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            bad = labels[(labels < 0) | (labels >= num_classes)]
            raise ValueError(
                f"Labels in {where} must lie in [0, {num_classes}); found {bad.size} outside, "
                f"e.g. {int(bad[0])}. Fix the labels or pass the right num_classes."
            )


def stack_images(images, where):
    """Stack a sequence of (H, W) or (H, W, C) arrays into (N, H, W, C).

    Raises:
        ValueError: when the images differ in shape, naming the first that differs.
    """
    if isinstance(images, np.ndarray):
        array = images
    else:
        images = [np.asarray(image) for image in images]
        if not images:
            raise ValueError(f"{where} has no images.")
        first = images[0].shape
        for index, image in enumerate(images):
            if image.shape != first:
                raise ValueError(
                    f"Images in {where} have inconsistent shapes: image 0 is {first} but image "
                    f"{index} is {image.shape}. Resize them to one shape first."
                )
        array = np.stack(images)
    if array.ndim == 3:
        array = array[..., np.newaxis]
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise ValueError(
            f"Expected images of shape (N, H, W), (N, H, W, 1) or (N, H, W, 3) in {where}. "
            f"Received shape {array.shape}"
        )
    return array


def to_uint8(images, value_range, where):
    """Convert images to uint8 on 0..255.

    Args:
        images: array of images.
        value_range: (low, high) of the input values, mapped linearly to 0..255; None when the
            images are already uint8.
        where: description for error messages.
    """
    images = np.asarray(images)
    if value_range is None:
        if images.dtype != np.uint8:
            raise ValueError(
                f"Images in {where} have dtype {images.dtype}; pass value_range=(low, high), "
                f"e.g. (0, 1) or (0, 255), so they can be mapped to uint8."
            )
        return images
    low, high = (float(v) for v in value_range)
    # NaN fails every comparison, so the range check below would let it through.
    if images.dtype.kind in "fc" and not np.all(np.isfinite(images)):
        raise ValueError(
            f"Images in {where} contain {np.size(images) - np.count_nonzero(np.isfinite(images))} "
            f"NaN or infinite values. Replace them before building the task."
        )
    if not high > low:
        raise ValueError(f"Expected value_range with low < high. Received: {value_range}")
    if images.size and (images.min() < low or images.max() > high):
        raise ValueError(
            f"Images in {where} hold values in [{images.min()}, {images.max()}], outside "
            f"value_range={value_range}."
        )
    scaled = (images.astype(np.float64) - low) * (255.0 / (high - low))
    return np.rint(scaled).astype(np.uint8)


def check_carving_args(validation_fraction, test_fraction, seed):
    """Raise ValueError unless both fractions lie in (0, 1) and `seed` is an integer."""
    for name, fraction in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 < fraction < 1:
            raise ValueError(f"Expected 0 < {name} < 1. Received: {name}={fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"Expected an integer seed. Received: seed={seed!r}")


def stratified_split(labels, fraction, seed):
    """Split example indices into (remaining, carved) with `fraction` of each class carved out.

    The carved count is round(fraction * N) in total, spread over the classes by largest
    remainder so each class gives its share. Indices are drawn with a numpy generator seeded by
    `seed`, so the split is the same on every run.

    Returns:
        (remaining, carved): sorted int64 index arrays.
    """
    labels = np.asarray(labels)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"Expected 0 < fraction < 1. Received: fraction={fraction}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"Expected an integer seed. Received: seed={seed!r}")
    total = int(round(fraction * labels.size))
    if labels.size >= 2:
        total = min(max(total, 1), labels.size - 1)
    classes, counts = np.unique(labels, return_counts=True)
    quotas = counts * (total / labels.size)
    take = np.floor(quotas).astype(np.int64)
    remainder_order = np.argsort(-(quotas - take), kind="stable")
    take[remainder_order[: total - int(take.sum())]] += 1

    rng = np.random.default_rng(seed)
    carved = []
    for class_id, count in zip(classes, take):
        members = np.flatnonzero(labels == class_id)
        carved.append(rng.permutation(members)[:count])
    carved = np.sort(np.concatenate(carved)) if carved else np.zeros(0, np.int64)
    remaining = np.setdiff1d(np.arange(labels.size), carved)
    return remaining, carved


def carve_splits(images, labels, validation=None, test=None, validation_fraction=0.1,
                 test_fraction=0.1, seed=0):
    """Carve missing validation and test splits out of labelled training arrays.

    Args:
        images, labels: the training examples.
        validation: `(images, labels)` when the data has a validation split, else None.
        test: `(images, labels)` when the data has a test split, else None.
        validation_fraction, test_fraction: share of the training data carved out for a
            missing split, stratified by class.
        seed: seed of the carving.

    Returns:
        dict from split name to `(images, labels)`.
    """
    check_carving_args(validation_fraction, test_fraction, seed)
    num_validation = int(round(validation_fraction * len(labels)))
    if test is None:
        remaining, carved = stratified_split(labels, test_fraction, seed)
        test = (images[carved], labels[carved])
        images, labels = images[remaining], labels[remaining]
    if validation is None:
        # Both fractions refer to the training data as given, before any carving.
        fraction = min(max(num_validation, 1) / len(labels), 0.5)
        remaining, carved = stratified_split(labels, fraction, seed + 1)
        validation = (images[carved], labels[carved])
        images, labels = images[remaining], labels[remaining]
    return {"train": (images, labels), "validation": validation, "test": test}


def array_splits(split_arrays: Mapping[str, Sequence]):
    """Wrap a mapping of split name -> (images, labels) arrays into `TaskSplit`s."""
    return {
        name: TaskSplit(images=np.ascontiguousarray(x), labels=np.asarray(y, np.int32))
        for name, (x, y) in split_arrays.items()
    }

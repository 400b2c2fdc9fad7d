"""Tasks from numpy arrays held in memory."""

import numpy as np

from keras_multipath.data.task import Task, array_splits, carve_splits, check_labels, stack_images, to_uint8


def from_arrays(name, x_train, y_train, x_validation=None, y_validation=None, x_test=None,
                y_test=None, num_classes=None, class_names=None, value_range=None,
                validation_fraction=0.1, test_fraction=0.1, seed=0):
    """Build a `Task` from numpy arrays.

    A missing validation split is carved out of the training arrays, stratified by class and
    seeded, with `validation_fraction` of the training examples. A missing test split is
    carved the same way with `test_fraction`. Both fractions refer to the training arrays as
    passed in.

    Args:
        name: task name.
        x_train: images as an array (N, H, W), (N, H, W, 1) or (N, H, W, 3), or a list of
            per-image arrays of one shape.
        y_train: integer labels (N,).
        x_validation, y_validation: optional validation split.
        x_test, y_test: optional test split.
        num_classes: number of classes; defaults to max label + 1 over all splits.
        class_names: optional names of the classes.
        value_range: (low, high) of non-uint8 pixel values, mapped linearly to 0..255, e.g.
            (0, 1) for float images in [0, 1]. Leave None for uint8 images.
        validation_fraction, test_fraction: share of the training examples carved out for a
            missing split.
        seed: seed of the carving.

    Returns:
        A `Task` with uint8 images.

    Raises:
        ValueError: for images of inconsistent shape, labels outside [0, num_classes), a
            validation or test split given as images without labels (or the reverse), or an
            empty split.
    """
    for kind, x, y in (("validation", x_validation, y_validation), ("test", x_test, y_test)):
        if (x is None) != (y is None):
            raise ValueError(f"Pass both x_{kind} and y_{kind} for task '{name}', or neither.")

    def prepare(x, y, split):
        where = f"split '{split}' of task '{name}'"
        images = stack_images(to_uint8(_as_array(x, where), value_range, where), where)
        labels = np.asarray(y)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"Expected {images.shape[0]} labels of shape (N,) in {where}. Received shape {labels.shape}"
            )
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"Expected integer labels in {where}. Received dtype {labels.dtype}")
        return images, labels.astype(np.int64)

    train = prepare(x_train, y_train, "train")
    if train[0].shape[0] == 0:
        raise ValueError(f"Split 'train' of task '{name}' is empty; pass at least one example.")
    validation = prepare(x_validation, y_validation, "validation") if x_validation is not None else None
    test = prepare(x_test, y_test, "test") if x_test is not None else None

    if num_classes is None:
        all_labels = [train[1]] + [s[1] for s in (validation, test) if s is not None]
        lowest = min(int(labels.min()) for labels in all_labels if labels.size)
        if lowest < 0:
            raise ValueError(
                f"Labels of task '{name}' must be class indices 0, 1, ...; found {lowest}. "
                f"Map the labels to 0..num_classes-1."
            )
        num_classes = int(max(int(labels.max()) for labels in all_labels if labels.size) + 1)
    for split, arrays in (("train", train), ("validation", validation), ("test", test)):
        if arrays is not None:
            check_labels(arrays[1], num_classes, f"split '{split}' of task '{name}'")
            if arrays[0].shape[1:] != train[0].shape[1:]:
                raise ValueError(
                    f"Images of split '{split}' of task '{name}' have shape {arrays[0].shape[1:]}, "
                    f"but the training images have shape {train[0].shape[1:]}."
                )

    splits = carve_splits(train[0], train[1], validation, test, validation_fraction, test_fraction, seed)
    return Task(
        name,
        num_classes,
        train[0].shape[1:],
        array_splits(splits),
        class_names=class_names,
        source="numpy arrays",
    )


def _as_array(images, where):
    if isinstance(images, np.ndarray):
        return images
    return stack_images(list(images), where)

"""Input pipelines: batched `tf.data` datasets of model-ready images for a task split.

`make_dataset` returns `(images, labels)` batches that `keras.Model.fit` accepts on the
TensorFlow, JAX and PyTorch backends. Images are float32 RGB on [-1, 1]. With several
resolutions they come as a dict `{str(size): images}`.
"""

import math
import numbers

import numpy as np
import tensorflow as tf

from keras_multipath.data.augment import preprocess_image, resolve_ds_hparams
from keras_multipath.data.task import Task

MAX_VALIDATION_EXAMPLES = 10_000
# Streamed splits (TFDS, image folders) that are not cached shuffle through a buffer of this
# many examples on top of shuffling their files. Array splits and cached splits shuffle a
# full permutation of the split every epoch instead.
DEFAULT_SHUFFLE_BUFFER = 10_000
# Streamed splits whose decoded uint8 images fit in this many bytes are cached in memory
# after the first pass.
DEFAULT_CACHE_BYTES = 1 << 30


def validation_batching(num_examples, batch_size, max_examples=MAX_VALIDATION_EXAMPLES):
    """Size the fixed validation subset.

    The subset is the first `min(max_examples, num_examples)` examples, split into
    `num_batches = ceil(n / batch_size)` equal batches of `floor(n / num_batches)` examples,
    which covers all but fewer than `num_batches` of them.

    Returns:
        (num_examples_used, validation_batch_size, num_batches).
    """
    if num_examples < 1 or batch_size < 1:
        raise ValueError(
            f"Expected num_examples >= 1 and batch_size >= 1. Received: "
            f"num_examples={num_examples}, batch_size={batch_size}"
        )
    subset = min(max_examples, num_examples)
    num_batches = math.ceil(subset / batch_size)
    batch = subset // num_batches
    return batch * num_batches, batch, num_batches


def resolve_image_sizes(task, image_sizes, hparams):
    """Return (list of int sizes, whether the output is a dict of resolutions)."""
    if image_sizes is None:
        image_sizes = hparams["ds_image_size"]
    if image_sizes is None:
        height, width = task.image_shape[:2]
        if height is None or height != width:
            raise ValueError(
                f"Task '{task.name}' has images of shape {task.image_shape}; pass image_sizes "
                f"(or ds_image_size) to resize them to square images."
            )
        image_sizes = height
    as_dict = not isinstance(image_sizes, numbers.Integral)
    sizes = [image_sizes] if not as_dict else list(image_sizes)
    if not sizes:
        raise ValueError("Expected at least one image size. Received an empty list.")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"Expected positive integer image sizes. Received: {image_sizes!r}")
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"Expected distinct image sizes. Received: {image_sizes!r}")
    return [int(s) for s in sizes], as_dict


def make_dataset(task, split, batch_size, image_sizes=None, ds_hparams=None, training=None,
                 seed=0, repeat=None, shuffle_buffer=None, cache=None,
                 max_validation_examples=MAX_VALIDATION_EXAMPLES, drop_remainder=None):
    """Build a batched input pipeline for one split of a task.

    Training pipelines (the default for "train") shuffle examples every epoch, apply the
    augmentations of `ds_hparams`, repeat forever and drop the last partial batch. The
    "validation" pipeline takes the fixed subset described by `validation_batching` and
    caches it after preprocessing. The "test" pipeline makes one pass over all examples.

    Shuffling: splits held in memory (offline datasets, arrays) and cached streamed splits
    shuffle a full permutation of the split each epoch, drawn from `seed` and the epoch
    number. Other streamed splits shuffle their files and then a buffer of `shuffle_buffer`
    examples (default `min(num_examples, 10000)`).

    Reuse: when `is_replayable(task, split, cache)` is True, every iteration of the returned
    dataset (each `fit` or `iter` call) yields the same stream, so one dataset can serve
    several models in turn.

    Args:
        task: a `Task`.
        split: "train", "validation" or "test".
        batch_size: examples per batch (for validation: the upper bound of the batch size).
        image_sizes: int for one resolution (images as one tensor), or a list of ints for a
            dict `{str(size): images}`. Defaults to `ds_hparams["ds_image_size"]`, then to the
            task's native (square) size.
        ds_hparams: augmentation hyperparameters (keys starting with "ds_", see
            `keras_multipath.data.augment`); other keys are ignored.
        training: apply augmentation and shuffle. Defaults to `split == "train"`.
        seed: int seed of shuffling and augmentation; equal seeds give equal batches.
        repeat: repeat forever. Defaults to `training`.
        shuffle_buffer: example shuffle buffer for streamed, uncached splits.
        cache: cache decoded images of a streamed split in memory. Defaults to True when
            they fit in 1 GiB (known image shape), else False.
        max_validation_examples: cap on the validation subset.
        drop_remainder: drop the last partial batch. Defaults to `training`.

    Returns:
        A `tf.data.Dataset` of `(images, labels)` with float32 images (B, S, S, 3) on
        [-1, 1] (or a dict of them keyed by `str(S)`) and int32 labels (B,).

    Example:

    >>> from keras_multipath.data import get_task, make_dataset
    >>> task = get_task("digits")
    >>> ds = make_dataset(task, "train", 32, image_sizes=[8, 16], ds_hparams={"ds_flip_left_right": True})
    >>> images, labels = next(iter(ds))
    >>> images["16"].shape, labels.shape
    (TensorShape([32, 16, 16, 3]), TensorShape([32]))
    """
    if not isinstance(task, Task):
        raise TypeError(
            f"Expected a Task; build one with get_task(name), from_arrays or "
            f"from_image_folder. Received: task={task!r} of type {type(task).__name__}"
        )
    if split not in task.splits:
        raise ValueError(f"Unknown split '{split}'. Known splits: {list(task.splits)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"Expected a positive integer batch_size. Received: batch_size={batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"Expected an integer seed. Received: seed={seed!r}")
    hparams = resolve_ds_hparams(ds_hparams)
    sizes, as_dict = resolve_image_sizes(task, image_sizes, hparams)
    training = split == "train" if training is None else bool(training)
    repeat = training if repeat is None else bool(repeat)
    drop_remainder = training if drop_remainder is None else bool(drop_remainder)
    num_examples = task.num_examples(split)

    validation_subset = split == "validation" and not training
    if validation_subset:
        num_examples, batch_size, _ = validation_batching(num_examples, batch_size, max_validation_examples)
        drop_remainder = True
    elif drop_remainder and not repeat and num_examples < batch_size:
        raise ValueError(
            f"Split '{split}' of task '{task.name}' has {num_examples} examples, fewer than "
            f"batch_size={batch_size}, so dropping the last partial batch leaves no batch. "
            f"Pass a smaller batch_size, repeat=True or drop_remainder=False."
        )

    dataset = _examples(task, split, num_examples, training, seed, shuffle_buffer, cache,
                        validation_subset, repeat and not validation_subset)

    def preprocess(index, example):
        image, label = example
        example_seed = tf.stack([tf.cast(seed, tf.int64), index])
        images = preprocess_image(image, sizes, hparams, training, example_seed)
        inputs = {str(s): x for s, x in zip(sizes, images)} if as_dict else images[0]
        return inputs, label

    # enumerate() numbers examples across epochs, so each example gets a fresh augmentation
    # seed every epoch while the whole stream stays a function of `seed`.
    dataset = dataset.enumerate().map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if validation_subset:
        dataset = dataset.cache()
        if repeat:
            dataset = dataset.repeat()
    return dataset.prefetch(tf.data.AUTOTUNE)


def is_replayable(task, split, cache=None):
    """Return whether every iteration of `make_dataset(task, split, ..., cache=cache)`
    yields the same stream of batches.

    True for splits held in memory, for the validation subset and for streamed splits that
    are cached (`cache`, or by default when they fit in memory): their shuffling is a
    function of the seed and the epoch number only. False for streamed splits read without a
    cache, whose file and buffer shuffles draw new orders on each iteration.
    """
    if split == "validation" or task.split(split).in_memory:
        return True
    if cache is None:
        cache = _fits_in_memory(task, task.num_examples(split))
    return bool(cache)


def _examples(task, split, num_examples, shuffle, seed, shuffle_buffer, cache, first_only, repeat):
    """Build the dataset of (uint8 image, int32 label) examples, shuffled and repeated as
    requested."""
    task_split = task.split(split)
    if task_split.in_memory:
        images = task_split.images[:num_examples] if first_only else task_split.images
        labels = task_split.labels[:num_examples] if first_only else task_split.labels
        # Shuffle indices rather than images: a full permutation per epoch costs one int64
        # per example instead of a second copy of the images in a shuffle buffer.
        if shuffle:
            def permutation(epoch):
                order = tf.random.experimental.stateless_shuffle(
                    tf.range(images.shape[0], dtype=tf.int64), _epoch_seed(seed, epoch)
                )
                return tf.data.Dataset.from_tensor_slices(order)

            indices = _epochs(repeat).flat_map(permutation)
        else:
            indices = tf.data.Dataset.range(images.shape[0])
            if repeat:
                indices = indices.repeat()
        images_tensor = tf.constant(images)
        labels_tensor = tf.constant(labels, tf.int32)
        return indices.map(
            lambda i: (tf.gather(images_tensor, i), tf.gather(labels_tensor, i)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    if cache is None:
        cache = _fits_in_memory(task, num_examples)
    if cache or first_only:
        dataset = task.as_dataset(split, shuffle_files=False)
        if first_only:
            dataset = dataset.take(num_examples)
        if cache:
            dataset = dataset.cache()
        if shuffle:
            # One seeded shuffle per epoch, over the whole split. The memory cache is shared
            # by every epoch and every iteration of the returned dataset.
            # NOTE: tf.data combines this seed with TensorFlow's global seed at build time,
            # so the order also depends on `tf.random.set_seed`, unlike in-memory splits.
            source = dataset

            def shuffled(epoch):
                epoch_seed = tf.random.stateless_uniform(
                    [], _epoch_seed(seed, epoch), minval=None, maxval=None, dtype=tf.int64
                )
                return source.shuffle(num_examples, seed=epoch_seed, reshuffle_each_iteration=False)

            dataset = _epochs(repeat).flat_map(shuffled)
        elif repeat:
            dataset = dataset.repeat()
        return dataset

    dataset = task.as_dataset(split, shuffle_files=shuffle, seed=seed)
    if shuffle and not task_split.shuffles_examples:
        buffer = shuffle_buffer or min(num_examples, DEFAULT_SHUFFLE_BUFFER)
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    return dataset.repeat() if repeat else dataset


def _epochs(repeat):
    """Epoch numbers 0, 1, ... (forever when `repeat`, else only 0)."""
    return tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(1)


def _epoch_seed(seed, epoch):
    """Return the stateless seed `[seed, epoch]` of one epoch's shuffle."""
    return tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])


def _fits_in_memory(task, num_examples):
    if None in task.image_shape:
        return False
    return num_examples * int(np.prod(task.image_shape)) <= DEFAULT_CACHE_BYTES

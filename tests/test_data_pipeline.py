"""Tests of the input pipeline: preprocessing, augmentation ranges, shuffling, batching, fit."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_multipath.data import (
    from_arrays,
    is_replayable,
    make_dataset,
    preprocess_image,
    resolve_ds_hparams,
    validation_batching,
)
from keras_multipath.data.augment import random_crop

tf_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the pipeline is tf.data code, whatever the Keras backend; it runs on the tensorflow backend "
    "(test_pipeline_feeds_fit runs on every backend)",
)


def _toy_task(num_examples=40, size=12, channels=3, num_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (num_examples, size, size, channels), dtype=np.uint8)
    labels = np.arange(num_examples) % num_classes
    return from_arrays("toy", images, labels, images[:10], labels[:10], images[:10], labels[:10])


def _indexed_task(num_examples):
    """Gray images whose pixel value is the example index, so batches reveal the order."""
    images = np.repeat(np.arange(num_examples, dtype=np.uint8), 4 * 4).reshape(num_examples, 4, 4, 1)
    labels = np.arange(num_examples) % 2
    return from_arrays("indexed", images, labels, images, labels, images, labels)


def _indices(images):
    return np.rint((images.numpy()[:, 0, 0, 0] + 1.0) * 127.5).astype(int).tolist()


ALL_AUGMENTATIONS = {
    "ds_quality_delta": 0.2,
    "ds_area_range_min": 0.5,
    "ds_aspect_ratio_range_min": 0.75,
    "ds_flip_left_right": True,
    "ds_brightness_delta": 0.2,
    "ds_contrast_delta": 0.2,
    "ds_saturation_delta": 0.2,
    "ds_hue_delta": 0.1,
}


@tf_only
def test_zero_deltas_equal_plain_resize_and_scale():
    task = _toy_task()
    images, _ = task.as_numpy("train")
    hparams = {"ds_area_range_min": 1.0, "ds_flip_left_right": False, "ds_brightness_delta": 0.0}
    dataset = make_dataset(task, "train", 40, image_sizes=[12, 20], ds_hparams=hparams, seed=5)
    batch, labels = next(iter(dataset))
    order = _order_of(batch["12"].numpy(), images)

    expected_12 = images[order] / 127.5 - 1.0
    expected_20 = tf.image.resize(images[order].astype(np.float32) / 255.0, (20, 20)).numpy() * 2.0 - 1.0
    np.testing.assert_allclose(batch["12"].numpy(), expected_12, atol=1e-6)
    np.testing.assert_allclose(batch["20"].numpy(), expected_20, atol=1e-6)
    np.testing.assert_array_equal(labels.numpy(), task.as_numpy("train")[1][order])

    evaluation = next(iter(make_dataset(task, "train", 40, image_sizes=[12, 20], training=False)))[0]
    np.testing.assert_array_equal(np.sort(evaluation["20"].numpy(), axis=0), np.sort(batch["20"].numpy(), axis=0))


def _order_of(batch, images):
    scaled = images / 127.5 - 1.0
    return [int(np.argmin(np.abs(scaled - image).sum(axis=(1, 2, 3)))) for image in batch]


@tf_only
def test_grayscale_becomes_three_channels():
    task = _toy_task(channels=1)
    images, _ = next(iter(make_dataset(task, "test", 5)))
    assert images.shape == (5, 12, 12, 3)
    np.testing.assert_array_equal(images[..., 0], images[..., 2])


@tf_only
def test_all_augmentations_stay_in_range():
    task = _toy_task()
    dataset = make_dataset(task, "train", 8, image_sizes=[8, 16], ds_hparams=ALL_AUGMENTATIONS, seed=1)
    for images, labels in dataset.take(3):
        for size in (8, 16):
            values = images[str(size)].numpy()
            assert values.shape == (8, size, size, 3)
            assert values.min() >= -1.0
            assert values.max() <= 1.0
        assert labels.dtype == tf.int32


def _augment(image, **hparams):
    resolved = resolve_ds_hparams(hparams)
    size = image.shape[0]
    return [preprocess_image(image, [size], resolved, True, tf.constant([seed, 7])) for seed in range(20)]


@tf_only
def test_brightness_offset_within_delta_and_visible():
    image = tf.fill((6, 6, 3), tf.constant(128, tf.uint8))
    plain = 128 / 127.5 - 1.0
    offsets = [float(np.mean(out[0].numpy()) - plain) / 2.0 for out in _augment(image, ds_brightness_delta=0.2)]
    assert max(abs(o) for o in offsets) <= 0.2 + 1e-6
    # On the [0, 1] scale a 0.2 delta moves pixels visibly (on 0..255 it would move them < 0.001).
    assert max(abs(o) for o in offsets) > 0.05


@tf_only
def test_contrast_factor_within_delta():
    rng = np.random.default_rng(0)
    image = tf.constant(rng.integers(64, 192, (6, 6, 3)), tf.uint8)
    base = image.numpy() / 255.0
    base_centered = base - base.mean(axis=(0, 1))
    for out in _augment(image, ds_contrast_delta=0.2):
        result = (out[0].numpy() + 1.0) / 2.0
        factor = np.sum((result - result.mean(axis=(0, 1))) * base_centered) / np.sum(base_centered**2)
        assert 0.8 - 1e-4 <= factor <= 1.2 + 1e-4


@tf_only
def test_saturation_and_hue_within_delta():
    image = tf.constant(np.tile([[[200, 120, 60]]], (4, 4, 1)), tf.uint8)
    base_hsv = tf.image.rgb_to_hsv(tf.cast(image, tf.float32) / 255.0).numpy()[0, 0]
    for out in _augment(image, ds_saturation_delta=0.2):
        hsv = tf.image.rgb_to_hsv((out[0] + 1.0) / 2.0).numpy()[0, 0]
        assert 0.8 - 1e-3 <= hsv[1] / base_hsv[1] <= 1.2 + 1e-3
    for out in _augment(image, ds_hue_delta=0.1):
        hsv = tf.image.rgb_to_hsv((out[0] + 1.0) / 2.0).numpy()[0, 0]
        shift = (hsv[0] - base_hsv[0] + 0.5) % 1.0 - 0.5
        assert abs(shift) <= 0.1 + 1e-3


@tf_only
def test_random_crop_area_and_aspect_within_range():
    image = tf.zeros((60, 60, 3))
    areas, aspects = [], []
    for seed in range(40):
        height, width, _ = random_crop(image, 0.3, 0.75, tf.constant([seed, 0])).shape
        areas.append(height * width / 3600)
        aspects.append(width / height)
    # One pixel of rounding on a 60-pixel side shifts area and aspect by a few percent.
    assert min(areas) >= 0.3 - 0.04
    assert max(areas) <= 1.0
    assert min(aspects) >= 0.75 - 0.05
    assert max(aspects) <= 1 / 0.75 + 0.05
    assert max(areas) - min(areas) > 0.2


@tf_only
def test_flip_and_jpeg_quality():
    rng = np.random.default_rng(0)
    image = tf.constant(rng.integers(0, 256, (8, 8, 3)), tf.uint8)
    plain = image.numpy() / 127.5 - 1.0
    flips = 0
    for out in _augment(image, ds_flip_left_right=True):
        result = out[0].numpy()
        flipped = np.allclose(result, plain[:, ::-1], atol=1e-6)
        assert flipped or np.allclose(result, plain, atol=1e-6)
        flips += flipped
    assert 0 < flips < 20
    changed = [not np.allclose(out[0].numpy(), plain, atol=1e-6) for out in _augment(image, ds_quality_delta=0.5)]
    assert all(changed)


@tf_only
def test_same_seed_same_batches():
    task = _toy_task()
    first = make_dataset(task, "train", 8, image_sizes=8, ds_hparams=ALL_AUGMENTATIONS, seed=4)
    again = make_dataset(task, "train", 8, image_sizes=8, ds_hparams=ALL_AUGMENTATIONS, seed=4)
    other = make_dataset(task, "train", 8, image_sizes=8, ds_hparams=ALL_AUGMENTATIONS, seed=5)
    for (a, la), (b, lb), (c, _) in zip(first.take(6), again.take(6), other.take(6)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(la.numpy(), lb.numpy())
        assert not np.array_equal(a.numpy(), c.numpy())


@tf_only
def test_shuffle_is_a_full_permutation_per_epoch():
    task = _indexed_task(100)
    dataset = make_dataset(task, "train", 10, seed=0)
    order = [i for images, _ in dataset.take(20) for i in _indices(images)]
    first, second = order[:100], order[100:]
    assert sorted(first) == list(range(100))
    assert sorted(second) == list(range(100))
    assert first != second
    # A 10-batch buffer over sorted data would keep early examples early; a full shuffle mixes them.
    assert max(first[:10]) > 50


@tf_only
def test_in_memory_pipeline_replays_its_stream():
    task = _indexed_task(30)
    assert is_replayable(task, "train")
    assert is_replayable(task, "test")
    dataset = make_dataset(task, "train", 7, image_sizes=4, ds_hparams={"ds_flip_left_right": True}, seed=2)
    first = [_indices(images) for images, _ in dataset.take(12)]
    # A second iteration of the same object, and a pipeline built after the global seed
    # changed, give the same 84 examples (2.8 epochs) in the same order.
    again = [_indices(images) for images, _ in dataset.take(12)]
    tf.random.set_seed(1234)
    rebuilt = make_dataset(task, "train", 7, image_sizes=4, ds_hparams={"ds_flip_left_right": True}, seed=2)
    assert again == first
    assert [_indices(images) for images, _ in rebuilt.take(12)] == first
    order = [i for batch in first for i in batch]
    assert sorted(order[:30]) == sorted(order[30:60]) == list(range(30))
    assert order[:30] != order[30:60]


@tf_only
def test_unshuffled_pipeline_repeats_in_order():
    task = _indexed_task(10)
    dataset = make_dataset(task, "train", 4, image_sizes=4, training=False, repeat=True, seed=0)
    order = [i for images, _ in dataset.take(5) for i in _indices(images)]
    assert order == list(range(10)) * 2


@pytest.mark.parametrize(
    "num_examples, batch_size, expected",
    [(180, 32, (180, 30, 6)), (10, 4, (9, 3, 3)), (25_000, 512, (10_000, 500, 20)), (3, 8, (3, 3, 1))],
)
def test_validation_batching(num_examples, batch_size, expected):
    assert validation_batching(num_examples, batch_size) == expected
    used, batch, num_batches = expected
    assert num_batches == math.ceil(min(num_examples, 10_000) / batch_size)


@tf_only
def test_validation_subset_is_fixed_first_examples():
    task = _indexed_task(23)
    dataset = make_dataset(task, "validation", 8, max_validation_examples=20)
    batches = [_indices(images) for images, _ in dataset]
    # validation_batching(20, 8): 3 batches of 6.
    assert batches == [list(range(0, 6)), list(range(6, 12)), list(range(12, 18))]
    assert [_indices(images) for images, _ in dataset] == batches


@tf_only
def test_test_split_is_one_full_pass():
    task = _indexed_task(23)
    batches = [_indices(images) for images, _ in make_dataset(task, "test", 10)]
    assert batches == [list(range(0, 10)), list(range(10, 20)), list(range(20, 23))]


@tf_only
def test_pipeline_errors():
    task = _toy_task()
    with pytest.raises(ValueError, match="Unknown ds_hparams key 'ds_blur'. Known keys: ds_quality_delta"):
        make_dataset(task, "train", 4, ds_hparams={"ds_blur": 1})
    with pytest.raises(ValueError, match=r"Expected ds_hue_delta in \[0.0, 0.5\]. Received: ds_hue_delta=0.7"):
        make_dataset(task, "train", 4, ds_hparams={"ds_hue_delta": 0.7})
    with pytest.raises(ValueError, match=r"Expected ds_area_range_min in \(0, 1\]"):
        make_dataset(task, "train", 4, ds_hparams={"ds_area_range_min": 0.0})
    with pytest.raises(ValueError, match="Expected positive integer image sizes"):
        make_dataset(task, "train", 4, image_sizes=[8, 0])
    with pytest.raises(ValueError, match="Expected a positive integer batch_size"):
        make_dataset(task, "train", 0)
    with pytest.raises(ValueError, match="Expected an integer seed. Received: seed=None"):
        make_dataset(task, "train", 4, seed=None)
    with pytest.raises(ValueError, match="Unknown split 'valid'"):
        make_dataset(task, "valid", 4)
    with pytest.raises(TypeError, match="Received: task='toy' of type str"):
        make_dataset("toy", "train", 4)
    with pytest.raises(ValueError, match="has 40 examples, fewer than batch_size=41") as info:
        make_dataset(task, "train", 41, repeat=False)
    assert "drop_remainder=False" in str(info.value)
    assert len(list(make_dataset(task, "train", 41, repeat=False, drop_remainder=False))) == 1


@tf_only
def test_image_size_from_ds_hparams():
    task = _toy_task()
    images, _ = next(iter(make_dataset(task, "test", 2, ds_hparams={"ds_image_size": [6, 10], "opt_lr": 0.1})))
    assert sorted(images) == ["10", "6"]
    images, _ = next(iter(make_dataset(task, "test", 2, ds_hparams={"ds_image_size": 6})))
    assert images.shape == (2, 6, 6, 3)


def test_pipeline_feeds_fit():
    task = _toy_task(num_examples=64, size=8)
    inputs = {str(size): keras.Input((size, size, 3), name=str(size)) for size in (8, 16)}
    pooled = [keras.layers.GlobalAveragePooling2D()(inputs[key]) for key in ("8", "16")]
    logits = keras.layers.Dense(task.num_classes)(keras.layers.Concatenate()(pooled))
    model = keras.Model(inputs, logits)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    train = make_dataset(task, "train", 16, image_sizes=[8, 16], ds_hparams=ALL_AUGMENTATIONS, seed=0)
    validation = make_dataset(task, "validation", 16, image_sizes=[8, 16])

    history = model.fit(train, steps_per_epoch=3, epochs=2, validation_data=validation, shuffle=False, verbose=0)

    assert len(history.history["loss"]) == 2
    assert np.isfinite(history.history["loss"]).all()
    assert 0.0 <= history.history["val_accuracy"][-1] <= 1.0

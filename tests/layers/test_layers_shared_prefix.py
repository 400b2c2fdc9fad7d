"""Paths that share a prefix of components, applied with one cache, compute it once."""

import keras
import numpy as np

from keras_multipath import layers


def _two_paths_sharing_prefix():
    first = layers.make_vit_components("micro/4", 8, num_classes=3, name_prefix="a_")
    second = layers.make_vit_components("micro/4", 8, num_classes=0, name_prefix="b_")
    for name in ("embedding", "cls", "posembed_input", "encoderblock_0"):
        second[name] = first[name]
    return first, second


def test_shared_prefix_applied_once_with_cache():
    first, second = _two_paths_sharing_prefix()
    inputs = keras.Input((8, 8, 3))
    cache = {}
    outputs = [layers.apply_vit_components(path, inputs, cache=cache) for path in (first, second)]
    model = keras.Model(inputs, outputs)

    assert len(first["encoderblock_0"]._inbound_nodes) == 1
    assert len(first["encoderblock_1"]._inbound_nodes) == 1
    assert len(second["encoderblock_1"]._inbound_nodes) == 1
    assert [tuple(o.shape) for o in model.outputs] == [(None, 3), (None, 32)]


def test_shared_prefix_cache_keeps_outputs():
    first, second = _two_paths_sharing_prefix()
    images = np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 3)).astype("float32")
    inputs = keras.Input((8, 8, 3))
    cache = {}
    cached = keras.Model(
        inputs, [layers.apply_vit_components(p, inputs, cache=cache) for p in (first, second)]
    )
    separate = keras.Model(inputs, [layers.apply_vit_components(p, inputs) for p in (first, second)])

    for got, expected in zip(cached.predict_on_batch(images), separate.predict_on_batch(images)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
    assert len(first["encoderblock_0"]._inbound_nodes) == 3


def test_cache_separates_inputs():
    first, second = _two_paths_sharing_prefix()
    small, large = keras.Input((8, 8, 3)), keras.Input((8, 8, 3))
    cache = {}
    layers.apply_vit_components(first, small, cache=cache)
    layers.apply_vit_components(second, large, cache=cache)

    assert len(first["embedding"]._inbound_nodes) == 2
    assert len(second["encoderblock_1"]._inbound_nodes) == 1

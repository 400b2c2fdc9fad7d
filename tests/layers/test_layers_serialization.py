"""Config, `.keras` and cross-backend round trips of every layer."""

import keras
import numpy as np
import pytest

from keras_multipath import layers
from layers_testing import (
    build_multipath_model,
    check_predictions_on_other_backends,
    randomize_weights,
    to_numpy,
)

RNG = np.random.default_rng(7)

# (layer factory, input shapes without the batch axis); a list of shapes means the layer
# takes several tensor arguments.
LAYER_CASES = {
    "PatchEmbedding": (lambda: layers.PatchEmbedding(8, 4), [(8, 8, 3)]),
    "ClassToken": (lambda: layers.ClassToken(8), [(4, 8)]),
    "PositionEmbedding": (lambda: layers.PositionEmbedding((2, 3), 8), [(7, 8)]),
    "EncoderBlock": (lambda: layers.EncoderBlock(8, 2, 16), [(5, 8)]),
    "EncoderNorm": (lambda: layers.EncoderNorm(epsilon=1e-5), [(5, 8)]),
    "Head": (lambda: layers.Head(3), [(8,)]),
    "Connector": (lambda: layers.Connector(3), [(8,)]),
    "MultipathRouter": (
        lambda: layers.MultipathRouter(3, main_path_weight=0.7, lr_mult=0.1),
        [(4,)],
    ),
}


def _random_inputs(shapes, batch=2):
    return [RNG.normal(size=(batch, *shape)).astype("float32") for shape in shapes]


def _wrap_in_model(layer, shapes):
    inputs = [keras.Input(shape) for shape in shapes]
    return keras.Model(inputs, layer(*inputs))


def _mixture_model():
    logits = [keras.Input((3,)) for _ in range(3)]
    weights = keras.Input((3,))
    return keras.Model([*logits, weights], layers.MultipathMixture()(logits, weights))


@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_config_round_trip(name):
    factory, shapes = LAYER_CASES[name]
    layer = factory()
    inputs = _random_inputs(shapes)
    outputs = to_numpy(layer(*inputs))
    for variable in layer.weights:
        variable.assign(RNG.normal(size=variable.shape).astype("float32"))
    outputs = to_numpy(layer(*inputs))

    config = layer.get_config()
    restored = layer.__class__.from_config(config)
    restored(*inputs)
    restored.set_weights(layer.get_weights())

    assert restored.get_config() == config
    np.testing.assert_array_equal(to_numpy(restored(*inputs)), outputs)


def test_config_round_trip_mixture():
    mixture = layers.MultipathMixture(name="mix")
    restored = layers.MultipathMixture.from_config(mixture.get_config())
    assert restored.get_config() == mixture.get_config()
    logits = _random_inputs([(3,), (3,)])
    weights = RNG.uniform(size=(2, 2)).astype("float32")
    np.testing.assert_array_equal(
        to_numpy(restored(logits, weights)), to_numpy(mixture(logits, weights))
    )


@pytest.mark.parametrize("name", sorted(LAYER_CASES) + ["MultipathMixture"])
def test_keras_file_round_trip(name, tmp_path):
    if name == "MultipathMixture":
        model = _mixture_model()
        inputs = _random_inputs([(3,)] * 4)
    else:
        factory, shapes = LAYER_CASES[name]
        model = _wrap_in_model(factory(), shapes)
        inputs = _random_inputs(shapes)
    randomize_weights(model)
    expected = to_numpy(model.predict(inputs, verbose=0))

    path = str(tmp_path / "layer.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)

    layer_classes = {type(layer).__name__ for layer in loaded.layers}
    assert name in layer_classes
    np.testing.assert_array_equal(to_numpy(loaded.predict(inputs, verbose=0)), expected)


def test_multipath_model_loads_on_other_backends(tmp_path):
    model, _ = build_multipath_model(num_classes=5, num_paths=3)
    randomize_weights(model, seed=3)
    images = RNG.uniform(-1, 1, size=(4, 8, 8, 3)).astype("float32")
    layer_classes = {type(layer).__name__ for layer in model.layers}
    expected_classes = set(LAYER_CASES) | {"MultipathMixture"}
    assert expected_classes <= layer_classes

    differences = check_predictions_on_other_backends(model, images, str(tmp_path))

    assert len(differences) == 2
    assert max(differences.values()) <= 1e-6

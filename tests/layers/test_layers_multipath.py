"""Router, connector and mixture: initial weights, decoupled gradients, frozen paths."""

import math

import keras
import numpy as np
import pytest

from keras_multipath import layers
from layers_testing import JIT_COMPILE, build_multipath_model, compute_gradients, to_numpy

RNG = np.random.default_rng(11)


@pytest.mark.parametrize(
    "num_paths, expected",
    [(2, [0.8, 0.2]), (3, [0.8, 0.1, 0.1])],
)
def test_router_initial_weights(num_paths, expected):
    router = layers.MultipathRouter(num_paths)
    logits = RNG.normal(size=(5, 7)).astype("float32")

    weights = to_numpy(router(logits))

    assert weights.shape == (5, num_paths)
    np.testing.assert_allclose(weights, np.tile(expected, (5, 1)), rtol=0, atol=1e-7)
    np.testing.assert_array_equal(weights[:, 0], np.float32(0.8))


def test_router_initial_bias():
    assert layers.MultipathRouter(2).initial_bias()[0] == pytest.approx(math.log(4))
    np.testing.assert_allclose(
        layers.MultipathRouter(3).initial_bias(), [math.log(8), 0.0, 0.0]
    )
    np.testing.assert_allclose(
        layers.MultipathRouter(4, main_path_weight=0.5).initial_bias(), [math.log(3), 0, 0, 0]
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_paths=1), "Received: num_paths=1"),
        (dict(num_paths=2.0), "Received: num_paths=2.0"),
        (dict(num_paths=2, main_path_weight=1.0), "Received: main_path_weight=1.0"),
        (dict(num_paths=2, main_path_weight=0), "Received: main_path_weight=0"),
        (dict(num_paths=2, lr_mult=0.0), "Received: lr_mult=0.0"),
        (dict(num_paths=2, main_path_weight="0.8"), "Received: main_path_weight='0.8'"),
        (dict(num_paths=2, main_path_weight=None), "Received: main_path_weight=None"),
        (dict(num_paths=2, lr_mult="x"), "Received: lr_mult='x'"),
        (dict(num_paths=2, lr_mult=float("inf")), "Received: lr_mult=inf"),
    ],
)
def test_router_rejects_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match="Expected") as info:
        layers.MultipathRouter(**kwargs)
    assert message in str(info.value)


def test_router_accepts_numpy_int_num_paths():
    router = layers.MultipathRouter(np.int64(3))

    assert type(router.get_config()["num_paths"]) is int
    np.testing.assert_allclose(
        to_numpy(router(np.ones((1, 4), "float32"))), [[0.8, 0.1, 0.1]], atol=1e-7
    )


def test_connector_rejects_zero_classes():
    with pytest.raises(ValueError, match="Received: num_classes=0"):
        layers.Connector(0)


def test_mixture_rejects_mismatched_weights():
    logits = [keras.Input((3,)), keras.Input((3,))]
    with pytest.raises(ValueError, match="one weight per path"):
        layers.MultipathMixture()(logits, keras.Input((3,)))


def test_mixture_rejects_one_stacked_tensor():
    stacked = np.ones((2, 2, 3), "float32")
    with pytest.raises(ValueError, match="a list of at least 2 tensors") as info:
        layers.MultipathMixture()(stacked, np.ones((2, 2), "float32"))
    assert "(2, 2, 3)" in str(info.value)


def test_mixture_value_is_weighted_sum():
    logits = [RNG.normal(size=(4, 3)).astype("float32") for _ in range(3)]
    weights = RNG.dirichlet(np.ones(3), size=4).astype("float32")

    mixed = to_numpy(layers.MultipathMixture()(logits, weights))

    expected = sum(weights[:, k : k + 1] * logits[k] for k in range(3))
    np.testing.assert_allclose(mixed, expected, rtol=1e-6, atol=1e-6)


def test_mixture_gradients_are_decoupled():
    logits = [RNG.normal(size=(4, 3)).astype("float32") for _ in range(3)]
    weights = RNG.dirichlet(np.ones(3), size=4).astype("float32")
    upstream = RNG.normal(size=(4, 3)).astype("float32")
    mixture = layers.MultipathMixture()

    def loss(tensors):
        *path_logits, router_weights = tensors
        return keras.ops.sum(keras.ops.multiply(upstream, mixture(path_logits, router_weights)))

    _, gradients = compute_gradients(loss, [*logits, weights])

    # Each path's logits receive the upstream gradient, not scaled by its weight.
    for k in range(3):
        np.testing.assert_allclose(gradients[k], upstream, rtol=0, atol=1e-6)
    # The weights see the logits as constants: d loss / d w[b, k] = sum_c g[b, c] L_k[b, c].
    expected = np.stack([np.sum(upstream * logits[k], axis=1) for k in range(3)], axis=1)
    np.testing.assert_allclose(gradients[3], expected, rtol=1e-5, atol=1e-6)


def _hand_router_gradients(router_weights, main_logits, upstream, lr_mult):
    """Gradients of sum(upstream * router(main_logits)) for bias and kernel, in numpy."""
    gamma, beta, kernel, bias = [w.astype("float64") for w in router_weights]
    x = main_logits.astype("float64")
    normalized = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)
    normalized = normalized * gamma + beta
    z = normalized @ kernel + bias
    s = np.exp(z - z.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    # Softmax backward: dz = s * (u - <u, s>).
    dz = s * (upstream - np.sum(upstream * s, axis=-1, keepdims=True))
    dz *= lr_mult
    return dz.sum(0), normalized.T @ dz


@pytest.mark.parametrize("lr_mult", [0.05, 1.0])
def test_router_gradients_match_hand_values(lr_mult):
    router = layers.MultipathRouter(3, lr_mult=lr_mult)
    main_logits = RNG.normal(size=(4, 5)).astype("float32")
    router.build(main_logits.shape)
    router.set_weights([RNG.normal(size=w.shape).astype("float32") for w in router.weights])
    upstream = RNG.normal(size=(4, 3)).astype("float32")

    def loss(variables):
        weights, _ = router.stateless_call(variables, [], main_logits)
        return keras.ops.sum(keras.ops.multiply(upstream, weights))

    _, gradients = compute_gradients(loss, router.get_weights())

    bias_grad, kernel_grad = _hand_router_gradients(
        router.get_weights(), main_logits, upstream, lr_mult
    )
    np.testing.assert_allclose(gradients[3], bias_grad, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gradients[2], kernel_grad, rtol=1e-5, atol=1e-7)


def test_router_gradient_scaled_by_lr_mult():
    """Through the mixture, the router gets lr_mult times the gradient it gets at lr_mult=1."""
    main_logits = RNG.normal(size=(4, 5)).astype("float32")
    other_logits = RNG.normal(size=(4, 5)).astype("float32")
    upstream = RNG.normal(size=(4, 5)).astype("float32")
    initial = None
    gradients = {}
    for lr_mult in (1.0, 0.05):
        router = layers.MultipathRouter(2, lr_mult=lr_mult)
        router.build(main_logits.shape)
        if initial is None:
            initial = [RNG.normal(size=w.shape).astype("float32") for w in router.weights]
        mixture = layers.MultipathMixture()

        def loss(variables):
            weights, _ = router.stateless_call(variables, [], main_logits)
            mixed = mixture([main_logits, other_logits], weights)
            return keras.ops.sum(keras.ops.multiply(upstream, mixed))

        _, gradients[lr_mult] = compute_gradients(loss, initial)

    # Hand-computed: the mixture passes sum_c g * L_k to weight k, then the router backward.
    mixture_grad = np.stack(
        [np.sum(upstream * main_logits, 1), np.sum(upstream * other_logits, 1)], axis=1
    )
    bias_grad, kernel_grad = _hand_router_gradients(initial, main_logits, mixture_grad, 0.05)
    np.testing.assert_allclose(gradients[0.05][3], bias_grad, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gradients[0.05][2], kernel_grad, rtol=1e-5, atol=1e-6)
    for scaled, full in zip(gradients[0.05], gradients[1.0]):
        np.testing.assert_allclose(scaled, 0.05 * full, rtol=1e-5, atol=1e-7)


def test_zero_connectors_give_scaled_main_logits():
    model, parts = build_multipath_model(num_classes=10, num_paths=3)
    images = RNG.uniform(-1, 1, size=(32, 8, 8, 3)).astype("float32")
    labels = RNG.integers(0, 10, size=32)
    # A non-zero head, so that the main logits differ between samples.
    head = parts["path_0"]["head"]
    head.set_weights([RNG.normal(size=w.shape).astype("float32") for w in head.get_weights()])
    main_model = keras.Model(model.input, model.get_layer("path_0_head").output)

    main_logits = to_numpy(main_model.predict(images, verbose=0))
    mixed = to_numpy(model.predict(images, verbose=0))

    assert np.all(main_logits != 0)
    np.testing.assert_array_equal(mixed, np.float32(0.8) * main_logits)
    main_accuracy = np.mean(np.argmax(main_logits, 1) == labels)
    mixed_accuracy = np.mean(np.argmax(mixed, 1) == labels)
    assert mixed_accuracy == main_accuracy


def _frozen_layers(parts, num_paths):
    return [layer for k in range(num_paths) for layer in parts[f"path_{k}"].values()]


def test_fit_changes_only_router_and_connectors():
    num_paths = 3
    model, parts = build_multipath_model(
        num_classes=4, num_paths=num_paths, lr_mult=1.0, num_layers=1
    )
    frozen = _frozen_layers(parts, num_paths)
    for layer in frozen:
        layer.trainable = False
    head = parts["path_0"]["head"]
    head.set_weights([RNG.normal(size=w.shape).astype("float32") for w in head.get_weights()])
    trained = [parts["router"], *parts["connectors"]]
    assert len(model.trainable_weights) == sum(len(layer.weights) for layer in trained)

    frozen_before = [to_numpy(w).copy() for layer in frozen for w in layer.weights]
    trained_before = [to_numpy(w).copy() for layer in trained for w in layer.weights]
    images = RNG.uniform(-1, 1, size=(32, 8, 8, 3)).astype("float32")
    labels = RNG.integers(0, 4, size=32)
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=JIT_COMPILE,
    )
    model.fit(images, labels, batch_size=16, epochs=2, verbose=0)

    frozen_after = [to_numpy(w) for layer in frozen for w in layer.weights]
    trained_after = [to_numpy(w) for layer in trained for w in layer.weights]
    for before, after in zip(frozen_before, frozen_after):
        np.testing.assert_array_equal(after, before)
    for layer in trained:
        changed = [
            not np.array_equal(to_numpy(w), b)
            for w, b in zip(layer.weights, trained_before[: len(layer.weights)])
        ]
        trained_before = trained_before[len(layer.weights) :]
        assert all(changed), f"{layer.name}: changed flags {changed}"
    assert len(trained_after) == len(model.trainable_weights)

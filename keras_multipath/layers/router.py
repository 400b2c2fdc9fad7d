"""The per-sample router of a multipath model."""

import math
import numbers

import keras
import numpy as np
from keras import ops

from keras_multipath.layers.vit import layer_norm


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@keras.saving.register_keras_serializable(package="keras_multipath")
class MultipathRouter(keras.layers.Layer):
    """Compute per-sample mixing weights of the paths from the main path's logits.

    `w = softmax(Dense(LayerNorm(main_logits)))`. The Dense kernel starts at zero and its
    bias at `[ln(w0 / (1 - w0) * (n - 1)), 0, ..., 0]`, so every sample starts with weight
    `w0 = main_path_weight` on path 0 and `(1 - w0) / (n - 1)` on each other path.

    The gradient that reaches the router's weights is scaled by `lr_mult`, which acts as a
    learning-rate multiplier for the router alone. The forward value is computed as
    `stop_gradient(w) + lr_mult * (w - stop_gradient(w))`, which has the gradient of
    `lr_mult * w + (1 - lr_mult) * stop_gradient(w)` but returns `w` bit for bit.

    Weights, in `layer.weights` order (C = classes, n = num_paths): `gamma` (C,), `beta`
    (C,) of the LayerNorm (epsilon 1e-6), then `kernel` (C, n) and `bias` (n,).

    Args:
        num_paths: n >= 2, the number of paths mixed, the main path included.
        main_path_weight: initial weight of path 0, strictly between 0 and 1.
        lr_mult: gradient multiplier of the router, > 0.

    Call arguments:
        main_logits: logits of the main path, shape (B, C).

    Returns:
        Weights of shape (B, num_paths); each row sums to 1.

    Example:
    >>> router = MultipathRouter(num_paths=3)
    >>> np.round(keras.ops.convert_to_numpy(router(np.ones((1, 4), "float32"))), 6)
    array([[0.8, 0.1, 0.1]], dtype=float32)
    """

    def __init__(self, num_paths, main_path_weight=0.8, lr_mult=0.05, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(num_paths, numbers.Integral) or isinstance(num_paths, bool) or num_paths < 2:
            raise ValueError(f"Expected `num_paths` to be an int >= 2. Received: num_paths={num_paths!r}")
        if not _is_real(main_path_weight) or not 0 < main_path_weight < 1:
            raise ValueError(
                "Expected 0 < `main_path_weight` < 1. "
                f"Received: main_path_weight={main_path_weight!r}"
            )
        # An infinite multiplier would turn the forward value `w + lr_mult * 0` into NaN.
        if not _is_real(lr_mult) or not 0 < lr_mult < math.inf:
            raise ValueError(
                f"Expected `lr_mult` to be a finite number > 0. Received: lr_mult={lr_mult!r}"
            )
        self.num_paths = int(num_paths)
        self.main_path_weight = float(main_path_weight)
        self.lr_mult = float(lr_mult)
        self.layer_norm_epsilon = 1e-6

    def initial_bias(self):
        """Return the initial Dense bias as a numpy array of shape (num_paths,)."""
        w0 = self.main_path_weight
        bias = np.zeros((self.num_paths,), dtype="float64")
        bias[0] = math.log(w0 / (1.0 - w0) * (self.num_paths - 1))
        return bias

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                f"Expected main logits of shape (B, C). Received: input_shape={input_shape}"
            )
        num_classes = input_shape[-1]
        bias = self.initial_bias()
        self.gamma = self.add_weight(name="gamma", shape=(num_classes,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(num_classes,), initializer="zeros")
        self.kernel = self.add_weight(
            name="kernel", shape=(num_classes, self.num_paths), initializer="zeros"
        )
        self.bias = self.add_weight(
            name="bias",
            shape=(self.num_paths,),
            initializer=lambda shape, dtype=None: ops.convert_to_tensor(bias, dtype=dtype),
        )

    def call(self, main_logits):
        normalized = layer_norm(main_logits, self.gamma, self.beta, self.layer_norm_epsilon)
        weights = ops.softmax(ops.matmul(normalized, self.kernel) + self.bias, axis=-1)
        constant = ops.stop_gradient(weights)
        return constant + ops.cast(self.lr_mult, weights.dtype) * (weights - constant)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_paths)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_paths=self.num_paths,
            main_path_weight=self.main_path_weight,
            lr_mult=self.lr_mult,
        )
        return config

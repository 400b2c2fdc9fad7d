"""The per-sample mixture of path logits with decoupled gradients."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_multipath")
class MultipathMixture(keras.layers.Layer):
    """Mix the logits of n paths with per-sample router weights.

    The output is computed as

        y = sum_k w_k * stop_gradient(L_k) + (sum_k L_k - stop_gradient(sum_k L_k))

    so its value is the weighted sum `sum_k w_k * L_k`, while the gradients are decoupled:
    every path's logits `L_k` receive the upstream gradient unweighted (dy/dL_k = I), and
    the router weights receive the gradient of the mixture with the logits held constant
    (dy/dw_k = L_k). A connector is therefore trained as if its logits were added with
    weight 1, whatever its current routing weight.

    The layer has no weights.

    Call arguments:
        path_logits: a list of n tensors of shape (B, C); index 0 is the main path.
        router_weights: a tensor of shape (B, n), for example from `MultipathRouter`.

    Returns:
        Mixed logits of shape (B, C).

    Example:
    >>> import numpy as np
    >>> mixture = MultipathMixture()
    >>> logits = [np.ones((1, 2), "float32"), np.zeros((1, 2), "float32")]
    >>> keras.ops.convert_to_numpy(mixture(logits, np.array([[0.8, 0.2]], "float32")))
    array([[0.8, 0.8]], dtype=float32)
    """

    def _check_shapes(self, path_shapes, weights_shape):
        # One stacked tensor (B, n, C) arrives here as a flat shape tuple of ints.
        if (
            not isinstance(path_shapes, (list, tuple))
            or len(path_shapes) < 2
            or not all(isinstance(shape, (list, tuple)) for shape in path_shapes)
        ):
            raise ValueError(
                "Expected `path_logits` to be a list of at least 2 tensors of shape (B, C). "
                f"Received shapes: {path_shapes}"
            )
        classes = {tuple(shape[1:]) for shape in path_shapes}
        if len(classes) != 1 or any(len(shape) != 2 for shape in path_shapes):
            raise ValueError(
                "Expected every entry of `path_logits` to have the same shape (B, C). "
                f"Received shapes: {list(path_shapes)}"
            )
        if len(weights_shape) != 2 or weights_shape[-1] not in (None, len(path_shapes)):
            raise ValueError(
                f"Expected `router_weights` of shape (B, {len(path_shapes)}), one weight per "
                f"path. Received: router_weights.shape={weights_shape}"
            )

    def build(self, path_logits_shape, router_weights_shape):
        self._check_shapes(path_logits_shape, router_weights_shape)

    def call(self, path_logits, router_weights):
        stacked = ops.stack(list(path_logits), axis=1)
        weights = ops.cast(router_weights, stacked.dtype)
        weighted = ops.sum(ops.expand_dims(weights, -1) * ops.stop_gradient(stacked), axis=1)
        total = ops.sum(stacked, axis=1)
        return weighted + (total - ops.stop_gradient(total))

    def compute_output_shape(self, path_logits_shape, router_weights_shape):
        self._check_shapes(path_logits_shape, router_weights_shape)
        return tuple(path_logits_shape[0])

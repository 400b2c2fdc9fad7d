"""The connector that maps a headless path's representation to a task's logits."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_multipath")
class Connector(keras.layers.Layer):
    """Map a headless path's representation to logits with a zero-initialised Dense layer.

    Kernel and bias start at zero, so a new connector adds nothing to a multipath mixture
    until it is trained.

    Weights: `kernel` (D, num_classes) and `bias` (num_classes,).

    Args:
        num_classes: C, the number of classes of the task.

    Call arguments:
        representation: a tensor of shape (B, D), for example the output of `EncoderNorm`.

    Returns:
        Logits of shape (B, num_classes).

    Example:
    >>> import numpy as np
    >>> Connector(num_classes=3)(np.ones((2, 8), "float32")).shape
    (2, 3)
    """

    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(
                f"Expected `num_classes` to be a positive int. Received: num_classes={num_classes!r}"
            )
        self.num_classes = num_classes

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                f"Expected a representation of shape (B, D). Received: input_shape={input_shape}"
            )
        self.kernel = self.add_weight(
            name="kernel", shape=(input_shape[-1], self.num_classes), initializer="zeros"
        )
        self.bias = self.add_weight(name="bias", shape=(self.num_classes,), initializer="zeros")

    def call(self, representation):
        return ops.matmul(representation, self.kernel) + self.bias

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes)
        return config

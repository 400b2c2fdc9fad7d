"""Vision Transformer components at block granularity.

A ViT path is the sequence of layers `embedding`, `cls`, `posembed_input`,
`encoderblock_0` ... `encoderblock_{L-1}`, `encoder_norm` and an optional `head`, each a
separate Keras layer so that paths of different tasks can share any of them. The weight
shapes follow the Flax ViT of vit_jax and keras-hub's `ViTBackbone`, so pretrained weights of
either import by reshaping at most the position embedding:

| layer | weights, in `layer.weights` order |
| --- | --- |
| PatchEmbedding | kernel (P, P, C, D), bias (D,) |
| ClassToken | token (1, 1, D) |
| PositionEmbedding | embeddings (1, 1 + gh * gw, D) |
| EncoderBlock | see `EncoderBlock` (16 weights) |
| EncoderNorm | gamma (D,), beta (D,) |
| Head | kernel (D, num_classes), bias (num_classes,) |

keras-hub stores the position embedding as (1 + gh * gw, D), without the leading 1. vit_jax
stores it as (1, 1 + gh * gw, D), as here. Both store the class token as (1, 1, D).

All LayerNorms use epsilon 1e-6, GELU is the exact erf form, and there is no dropout.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_multipath.layers.variants import get_variant

_PACKAGE = "keras_multipath"


def _as_pair(value, name):
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, int) for v in value
    ):
        return (int(value[0]), int(value[1]))
    raise ValueError(
        f"Expected `{name}` to be an int or a pair of ints. Received: {name}={value!r}"
    )


def _check_positive(**values):
    for name, value in values.items():
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"Expected `{name}` to be a positive int. Received: {name}={value!r}")


def layer_norm(x, gamma, beta, epsilon):
    """Normalize `x` over its last axis, then scale by `gamma` and shift by `beta`."""
    # `ops.layer_normalization` runs torch's fused kernel on the torch backend, which trains
    # about 1.2 times faster there than mean and variance written out with `ops`.
    return ops.layer_normalization(ops.convert_to_tensor(x), gamma, beta, epsilon=epsilon)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PatchEmbedding(keras.layers.Layer):
    """Split images into non-overlapping patches and project each patch linearly.

    Equivalent to a `Conv2D(hidden_dim, patch_size, strides=patch_size, padding="valid")`
    on NHWC images, followed by flattening the patch grid in row-major order, so token
    `r * (W // P) + c` is the patch in row `r` and column `c`.

    Weights: `kernel` of shape (P, P, C, D) and `bias` of shape (D,), the layouts of
    vit_jax's `embedding` and keras-hub's `patch_embedding`.

    Args:
        hidden_dim: D, the token width.
        patch_size: P, the side of a square patch in pixels.

    Call arguments:
        images: a float tensor of shape (B, H, W, C), with H and W multiples of P.

    Returns:
        Tokens of shape (B, (H // P) * (W // P), D).

    Example:
    >>> layer = PatchEmbedding(hidden_dim=8, patch_size=4)
    >>> layer(np.zeros((2, 16, 16, 3), "float32")).shape
    (2, 16, 8)
    """

    def __init__(self, hidden_dim, patch_size, **kwargs):
        super().__init__(**kwargs)
        _check_positive(hidden_dim=hidden_dim, patch_size=patch_size)
        self.hidden_dim = hidden_dim
        self.patch_size = patch_size

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"Expected images of rank 4 (B, H, W, C). Received: input_shape={input_shape}"
            )
        for size in input_shape[1:3]:
            if size is not None and size % self.patch_size:
                raise ValueError(
                    f"Expected image height and width to be multiples of patch_size="
                    f"{self.patch_size}. Received: input_shape={input_shape}"
                )
        channels = input_shape[-1]
        p = self.patch_size
        self.kernel = self.add_weight(
            name="kernel",
            shape=(p, p, channels, self.hidden_dim),
            initializer="lecun_normal",
        )
        self.bias = self.add_weight(name="bias", shape=(self.hidden_dim,), initializer="zeros")

    def call(self, images):
        patches = ops.conv(
            images,
            self.kernel,
            strides=self.patch_size,
            padding="valid",
            data_format="channels_last",
        )
        patches = patches + self.bias
        batch = ops.shape(patches)[0]
        return ops.reshape(patches, (batch, -1, self.hidden_dim))

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        if height is None or width is None:
            return (batch, None, self.hidden_dim)
        p = self.patch_size
        return (batch, (height // p) * (width // p), self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_dim=self.hidden_dim, patch_size=self.patch_size)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ClassToken(keras.layers.Layer):
    """Prepend a learned class token to a token sequence.

    Weights: `token` of shape (1, 1, D), zero-initialised as in vit_jax.

    Args:
        hidden_dim: D, the token width.

    Call arguments:
        tokens: a tensor of shape (B, N, D).

    Returns:
        A tensor of shape (B, N + 1, D) whose index 0 is the class token.

    Example:
    >>> ClassToken(hidden_dim=8)(np.ones((2, 16, 8), "float32")).shape
    (2, 17, 8)
    """

    def __init__(self, hidden_dim, **kwargs):
        super().__init__(**kwargs)
        _check_positive(hidden_dim=hidden_dim)
        self.hidden_dim = hidden_dim

    def build(self, input_shape):
        if input_shape[-1] != self.hidden_dim:
            raise ValueError(
                f"Expected tokens of width hidden_dim={self.hidden_dim}. "
                f"Received: input_shape={input_shape}"
            )
        self.token = self.add_weight(
            name="token", shape=(1, 1, self.hidden_dim), initializer="zeros"
        )

    def call(self, tokens):
        batch = ops.shape(tokens)[0]
        token = ops.broadcast_to(ops.cast(self.token, tokens.dtype), (batch, 1, self.hidden_dim))
        return ops.concatenate([token, tokens], axis=1)

    def compute_output_shape(self, input_shape):
        batch, length, width = input_shape
        return (batch, None if length is None else length + 1, width)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_dim=self.hidden_dim)
        return config


def _interpolation_matrix(in_size, out_size):
    """Return the (out_size, in_size) matrix of 1-D linear interpolation weights.

    Uses half-pixel centres: output index i samples input coordinate
    (i + 0.5) * in_size / out_size - 0.5, clamped to [0, in_size - 1], without antialiasing.
    """
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    scale = in_size / out_size
    for i in range(out_size):
        source = min(max((i + 0.5) * scale - 0.5, 0.0), in_size - 1.0)
        lower = int(math.floor(source))
        upper = min(lower + 1, in_size - 1)
        fraction = source - lower
        matrix[i, lower] += 1.0 - fraction
        matrix[i, upper] += fraction
    return matrix


def resample_position_embedding(embeddings, new_grid_size, grid_size=None):
    """Resize a position embedding to another patch grid by bilinear interpolation.

    The class-token entry (index 0) is kept unchanged. The patch entries are read as a
    (gh, gw, D) grid in row-major order and resized with half-pixel centres and no
    antialiasing, so the result equals `tf.image.resize(grid, new_grid_size, "bilinear")`
    and, when upsampling, `jax.image.resize(grid, shape, "bilinear")`. When downsampling,
    `jax.image.resize` antialiases by default and its result differs from this one. An
    unchanged grid returns an exact copy.

    Args:
        embeddings: a numpy array of shape (1, 1 + gh * gw, D) or (1 + gh * gw, D).
        new_grid_size: an int for a square grid, or `(new_gh, new_gw)`.
        grid_size: `(gh, gw)` of `embeddings`; `None` infers a square grid.

    Returns:
        A numpy array of the input's dtype and rank, with 1 + new_gh * new_gw tokens.

    Example:
    >>> resample_position_embedding(np.zeros((1, 17, 8)), 6).shape
    (1, 37, 8)
    """
    embeddings = np.asarray(embeddings)
    if embeddings.ndim not in (2, 3) or (embeddings.ndim == 3 and embeddings.shape[0] != 1):
        raise ValueError(
            "Expected embeddings of shape (1, 1 + gh * gw, D) or (1 + gh * gw, D). "
            f"Received: embeddings.shape={embeddings.shape}"
        )
    tokens = embeddings.reshape(embeddings.shape[-2:])
    num_patches = tokens.shape[0] - 1
    if grid_size is None:
        side = int(round(math.sqrt(num_patches)))
        if side * side != num_patches:
            raise ValueError(
                f"Cannot infer a square grid from {num_patches} patch tokens. "
                "Pass grid_size=(gh, gw)."
            )
        grid_size = (side, side)
    gh, gw = _as_pair(grid_size, "grid_size")
    if gh * gw != num_patches:
        raise ValueError(
            f"Expected {gh * gw} patch tokens for grid_size={(gh, gw)}. "
            f"Received: {num_patches} patch tokens (embeddings.shape={embeddings.shape})"
        )
    new_gh, new_gw = _as_pair(new_grid_size, "new_grid_size")
    _check_positive(new_gh=new_gh, new_gw=new_gw)

    if (new_gh, new_gw) == (gh, gw):
        return embeddings.copy()

    grid = tokens[1:].reshape(gh, gw, -1).astype(np.float64)
    rows = _interpolation_matrix(gh, new_gh)
    cols = _interpolation_matrix(gw, new_gw)
    resized = np.einsum("ih,hwd,jw->ijd", rows, grid, cols).reshape(new_gh * new_gw, -1)
    result = np.concatenate([tokens[:1], resized.astype(embeddings.dtype)], axis=0)
    return result[None] if embeddings.ndim == 3 else result


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PositionEmbedding(keras.layers.Layer):
    """Add a learned position embedding to the class token and the patch tokens.

    Weights: `embeddings` of shape (1, 1 + gh * gw, D), initialised from N(0, 0.02).
    Entry 0 belongs to the class token; entry `1 + r * gw + c` to the patch in row `r`,
    column `c`.

    Args:
        grid_size: `(gh, gw)`, the patch grid; an int means a square grid.
        hidden_dim: D, the token width.

    Call arguments:
        tokens: a tensor of shape (B, 1 + gh * gw, D).

    Returns:
        `tokens` plus the embeddings, same shape.

    Example:
    >>> layer = PositionEmbedding(grid_size=(4, 4), hidden_dim=8)
    >>> layer(np.zeros((2, 17, 8), "float32")).shape
    (2, 17, 8)
    """

    def __init__(self, grid_size, hidden_dim, **kwargs):
        super().__init__(**kwargs)
        self.grid_size = _as_pair(grid_size, "grid_size")
        _check_positive(gh=self.grid_size[0], gw=self.grid_size[1], hidden_dim=hidden_dim)
        self.hidden_dim = hidden_dim

    @property
    def num_tokens(self):
        """Number of tokens including the class token, 1 + gh * gw."""
        return 1 + self.grid_size[0] * self.grid_size[1]

    def _check_tokens_shape(self, shape):
        expected = (self.num_tokens, self.hidden_dim)
        if tuple(shape[1:]) != expected:
            raise ValueError(
                f"Expected tokens of shape (B, {expected[0]}, {expected[1]}) for "
                f"grid_size={self.grid_size}. Received: input_shape={tuple(shape)}. For images "
                f"of another size, build the path for that size or use "
                f"PositionEmbedding.resample(new_grid_size)."
            )

    def build(self, input_shape):
        self._check_tokens_shape(input_shape)
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(1, self.num_tokens, self.hidden_dim),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )

    def call(self, tokens):
        # Once built, Keras calls `call` directly, so a token count from another image size
        # would otherwise fail as a bare broadcasting error.
        if None not in tuple(tokens.shape[1:]):
            self._check_tokens_shape(tokens.shape)
        return tokens + ops.cast(self.embeddings, tokens.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def resample(self, new_grid_size):
        """Return a new built `PositionEmbedding` for another grid with resampled weights.

        The weights are computed by `resample_position_embedding` (bilinear with half-pixel
        centres, class-token entry kept). The new layer has this layer's name, dtype policy
        and trainable flag.

        Args:
            new_grid_size: an int for a square grid, or `(new_gh, new_gw)`.

        Returns:
            A `PositionEmbedding` of grid `new_grid_size`.
        """
        if not self.built:
            raise ValueError(f"Layer '{self.name}' is not built, so it has no weights to resample.")
        weights = resample_position_embedding(
            keras.ops.convert_to_numpy(self.embeddings), new_grid_size, self.grid_size
        )
        config = self.get_config()
        config["grid_size"] = _as_pair(new_grid_size, "new_grid_size")
        layer = self.__class__.from_config(config)
        layer.build((None, weights.shape[1], self.hidden_dim))
        layer.set_weights([weights])
        return layer

    def get_config(self):
        config = super().get_config()
        config.update(grid_size=self.grid_size, hidden_dim=self.hidden_dim)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class EncoderBlock(keras.layers.Layer):
    """One pre-LayerNorm Transformer encoder block.

    `h = x + MHA(LN1(x))`, then `y = h + MLP(LN2(h))` with
    `MLP(z) = dense_2(gelu(dense_1(z)))`, exact-erf GELU, attention scale 1/sqrt(Hd) and no
    dropout.

    Weights, in `layer.weights` order (D = hidden_dim, N = num_heads, Hd = D / N,
    M = mlp_dim). The order and shapes are those of a keras-hub `ViTBackbone` block. The
    shapes are also those of vit_jax's `encoderblock_i` arrays (`LayerNorm_0`,
    `MultiHeadDotProductAttention_1` query/key/value/out, `LayerNorm_2`, `MlpBlock_3`
    Dense_0/Dense_1), whose `.npz` keys are sorted by name instead:

    | weight | shape |
    | --- | --- |
    | ln_1_gamma, ln_1_beta | (D,), (D,) |
    | query_kernel, query_bias | (D, N, Hd), (N, Hd) |
    | key_kernel, key_bias | (D, N, Hd), (N, Hd) |
    | value_kernel, value_bias | (D, N, Hd), (N, Hd) |
    | attention_output_kernel, attention_output_bias | (N, Hd, D), (D,) |
    | ln_2_gamma, ln_2_beta | (D,), (D,) |
    | mlp_dense_1_kernel, mlp_dense_1_bias | (D, M), (M,) |
    | mlp_dense_2_kernel, mlp_dense_2_bias | (M, D), (D,) |

    Args:
        hidden_dim: D, the token width.
        num_heads: N, the number of attention heads; it must divide `hidden_dim`.
        mlp_dim: M, the hidden width of the MLP.
        layer_norm_epsilon: epsilon of both LayerNorms.

    Call arguments:
        tokens: a tensor of shape (B, T, D).

    Returns:
        A tensor of shape (B, T, D).

    Example:
    >>> block = EncoderBlock(hidden_dim=8, num_heads=2, mlp_dim=16)
    >>> block(np.ones((2, 5, 8), "float32")).shape
    (2, 5, 8)
    """

    def __init__(self, hidden_dim, num_heads, mlp_dim, layer_norm_epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        _check_positive(hidden_dim=hidden_dim, num_heads=num_heads, mlp_dim=mlp_dim)
        if hidden_dim % num_heads:
            raise ValueError(
                "Expected `hidden_dim` to be divisible by `num_heads`. "
                f"Received: hidden_dim={hidden_dim}, num_heads={num_heads}"
            )
        if not layer_norm_epsilon > 0:
            raise ValueError(
                f"Expected `layer_norm_epsilon` > 0. Received: layer_norm_epsilon={layer_norm_epsilon}"
            )
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layer_norm_epsilon = layer_norm_epsilon

    def _projection_initializer(self, fan_in, fan_out):
        # Glorot uniform over the equivalent 2-D (fan_in, fan_out) matrix, reshaped, because
        # Keras' fan computation for 3-D kernels treats the first axis as a receptive field.
        glorot = keras.initializers.GlorotUniform()

        def initialize(shape, dtype=None):
            return ops.reshape(glorot((fan_in, fan_out), dtype=dtype), shape)

        return initialize

    def build(self, input_shape):
        if input_shape[-1] != self.hidden_dim:
            raise ValueError(
                f"Expected tokens of width hidden_dim={self.hidden_dim}. "
                f"Received: input_shape={input_shape}"
            )
        d, n, m = self.hidden_dim, self.num_heads, self.mlp_dim
        hd = d // n
        projection = self._projection_initializer(d, d)

        def add(name, shape, initializer):
            return self.add_weight(name=name, shape=shape, initializer=initializer)

        self.ln_1_gamma = add("ln_1_gamma", (d,), "ones")
        self.ln_1_beta = add("ln_1_beta", (d,), "zeros")
        self.query_kernel = add("query_kernel", (d, n, hd), projection)
        self.query_bias = add("query_bias", (n, hd), "zeros")
        self.key_kernel = add("key_kernel", (d, n, hd), projection)
        self.key_bias = add("key_bias", (n, hd), "zeros")
        self.value_kernel = add("value_kernel", (d, n, hd), projection)
        self.value_bias = add("value_bias", (n, hd), "zeros")
        self.attention_output_kernel = add("attention_output_kernel", (n, hd, d), projection)
        self.attention_output_bias = add("attention_output_bias", (d,), "zeros")
        self.ln_2_gamma = add("ln_2_gamma", (d,), "ones")
        self.ln_2_beta = add("ln_2_beta", (d,), "zeros")
        # The MLP biases start at N(0, 1e-6) as in vit_jax.
        tiny_normal = keras.initializers.RandomNormal(stddev=1e-6)
        self.mlp_dense_1_kernel = add("mlp_dense_1_kernel", (d, m), "glorot_uniform")
        self.mlp_dense_1_bias = add("mlp_dense_1_bias", (m,), tiny_normal)
        self.mlp_dense_2_kernel = add("mlp_dense_2_kernel", (m, d), "glorot_uniform")
        self.mlp_dense_2_bias = add("mlp_dense_2_bias", (d,), tiny_normal)

    def _attention(self, x):
        # The projections run as 2-D matmuls on the kernels reshaped to (D, N * Hd). With
        # torch, `ops.dot_product_attention` (torch's fused kernel) trains this block about
        # 1.5 times faster than einsums; with TensorFlow and JAX it is slower on CPU than the
        # einsums, which XLA fuses (measured with benchmarks/step_time.py).
        d, n = self.hidden_dim, self.num_heads
        head_dim = d // n
        batch, length = ops.shape(x)[0], ops.shape(x)[1]

        def project(kernel, bias):
            flat = ops.matmul(x, ops.reshape(kernel, (d, d))) + ops.reshape(bias, (d,))
            return ops.reshape(flat, (batch, length, n, head_dim))

        query = project(self.query_kernel, self.query_bias)
        key = project(self.key_kernel, self.key_bias)
        value = project(self.value_kernel, self.value_bias)
        scale = 1.0 / math.sqrt(head_dim)
        if keras.backend.backend() == "torch":
            context = ops.dot_product_attention(query, key, value, scale=scale)
        else:
            scores = ops.einsum("bqnh,bknh->bnqk", query * ops.cast(scale, query.dtype), key)
            probabilities = ops.softmax(scores, axis=-1)
            context = ops.einsum("bnqk,bknh->bqnh", probabilities, value)
        context = ops.reshape(context, (batch, length, d))
        output_kernel = ops.reshape(self.attention_output_kernel, (d, d))
        return ops.matmul(context, output_kernel) + self.attention_output_bias

    def _mlp(self, x):
        hidden = ops.matmul(x, self.mlp_dense_1_kernel) + self.mlp_dense_1_bias
        hidden = ops.gelu(hidden, approximate=False)
        return ops.matmul(hidden, self.mlp_dense_2_kernel) + self.mlp_dense_2_bias

    def call(self, tokens):
        eps = self.layer_norm_epsilon
        x = tokens + self._attention(layer_norm(tokens, self.ln_1_gamma, self.ln_1_beta, eps))
        return x + self._mlp(layer_norm(x, self.ln_2_gamma, self.ln_2_beta, eps))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_dim=self.hidden_dim,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            layer_norm_epsilon=self.layer_norm_epsilon,
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class EncoderNorm(keras.layers.Layer):
    """Apply the final LayerNorm and return the class-token representation.

    LayerNorm acts on each token separately, so only token 0 is normalised.

    Weights: `gamma` (D,) and `beta` (D,).

    Args:
        epsilon: the LayerNorm epsilon.

    Call arguments:
        tokens: a tensor of shape (B, T, D) whose token 0 is the class token.

    Returns:
        A tensor of shape (B, D).

    Example:
    >>> EncoderNorm()(np.ones((2, 5, 8), "float32")).shape
    (2, 8)
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.number)) or (
            not epsilon > 0
        ):
            raise ValueError(f"Expected `epsilon` to be a number > 0. Received: epsilon={epsilon!r}")
        self.epsilon = epsilon

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"Expected tokens of rank 3 (B, T, D). Received: input_shape={input_shape}")
        width = input_shape[-1]
        self.gamma = self.add_weight(name="gamma", shape=(width,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(width,), initializer="zeros")

    def call(self, tokens):
        return layer_norm(tokens[:, 0], self.gamma, self.beta, self.epsilon)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Head(keras.layers.Layer):
    """Map a representation to class logits with a zero-initialised Dense layer.

    Weights: `kernel` (D, num_classes) and `bias` (num_classes,), both zero at init, so an
    untrained head predicts all-zero logits.

    Args:
        num_classes: the number of classes.

    Call arguments:
        representation: a tensor of shape (B, D).

    Returns:
        Logits of shape (B, num_classes).

    Example:
    >>> Head(num_classes=3)(np.ones((2, 8), "float32")).shape
    (2, 3)
    """

    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        _check_positive(num_classes=num_classes)
        self.num_classes = num_classes

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel", shape=(input_shape[-1], self.num_classes), initializer="zeros"
        )
        self.bias = self.add_weight(name="bias", shape=(self.num_classes,), initializer="zeros")

    def call(self, representation):
        return ops.matmul(representation, self.kernel) + self.bias

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes)
        return config


def make_vit_components(variant, image_size, num_classes, num_layers=None, name_prefix=""):
    """Create the unbuilt layers of one ViT path, keyed by component name.

    Args:
        variant: a variant name such as `"B/16"` or a dict, as accepted by `get_variant`.
        image_size: an int for square images, or `(height, width)`; both multiples of the
            patch size.
        num_classes: classes of the head; 0 leaves the head out (a headless path).
        num_layers: encoder blocks; `None` uses the variant's depth.
        name_prefix: prepended to each layer's name, so that several paths can live in one
            functional model (layer names must be unique there).

    Returns:
        A dict, in call order: `embedding`, `cls`, `posembed_input`, `encoderblock_0` ...
        `encoderblock_{num_layers-1}`, `encoder_norm` and, when `num_classes > 0`, `head`.

    Example:
    >>> components = make_vit_components("micro/4", 16, num_classes=10)
    >>> list(components)[:3]
    ['embedding', 'cls', 'posembed_input']
    """
    size = get_variant(variant)
    height, width = _as_pair(image_size, "image_size")
    depth = size["num_layers"] if num_layers is None else num_layers
    _check_positive(num_layers=depth)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
        raise ValueError(
            "Expected `num_classes` to be an int >= 0 (0 for a headless path). "
            f"Received: num_classes={num_classes!r}"
        )
    d, p = size["hidden_dim"], size["patch_size"]
    if height % p or width % p:
        raise ValueError(
            f"Expected image_size to be a multiple of the patch size {p}. "
            f"Received: image_size={image_size}"
        )

    components = {
        "embedding": PatchEmbedding(d, p, name=f"{name_prefix}embedding"),
        "cls": ClassToken(d, name=f"{name_prefix}cls"),
        "posembed_input": PositionEmbedding((height // p, width // p), d, name=f"{name_prefix}posembed_input"),
    }
    for i in range(depth):
        components[f"encoderblock_{i}"] = EncoderBlock(
            d, size["num_heads"], size["mlp_dim"], name=f"{name_prefix}encoderblock_{i}"
        )
    components["encoder_norm"] = EncoderNorm(name=f"{name_prefix}encoder_norm")
    if num_classes:
        components["head"] = Head(num_classes, name=f"{name_prefix}head")
    return components


def apply_vit_components(components, images, cache=None):
    """Run images through the layers of one ViT path.

    Args:
        components: a dict as returned by `make_vit_components`; blocks run in the order
            `encoderblock_0`, `encoderblock_1`, ...
        images: a tensor of shape (B, H, W, 3), values in [-1, 1].
        cache: optional dict shared by the calls that build one functional model. A layer
            whose inputs come from the same `images` through the same chain of layer
            objects is applied once, so paths that share a prefix of components compute it
            once. Use a new dict for every model.

    Returns:
        Logits (B, num_classes) when `components` has a `head`, else the class-token
        representation (B, D).
    """
    required = ("embedding", "cls", "posembed_input", "encoder_norm")
    missing = [name for name in required if name not in components]
    if missing:
        raise ValueError(
            f"Missing ViT components: {', '.join(missing)}. Received: {', '.join(components)}"
        )
    blocks = sorted(
        (name for name in components if name.startswith("encoderblock_")),
        key=lambda name: int(name.split("_")[-1]),
    )

    order = ["embedding", "cls", "posembed_input", *blocks, "encoder_norm"]
    if "head" in components:
        order.append("head")
    if cache is None:
        x = images
        for name in order:
            x = components[name](x)
        return x

    # Keys hold object ids, so the cache keeps `images` alive to keep its id unique.
    cache.setdefault(("images", id(images)), images)
    chain = (id(images),)
    x = images
    for name in order:
        layer = components[name]
        chain = chain + (id(layer),)
        if chain not in cache:
            cache[chain] = layer(x)
        x = cache[chain]
    return x

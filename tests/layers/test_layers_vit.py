"""ViT component layers: shapes, math against stock Keras layers, resampling, variants."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_multipath import layers
from layers_testing import JIT_COMPILE, SMALL_VIT, to_numpy

RNG = np.random.default_rng(5)


def test_patch_embedding_matches_row_major_patches():
    layer = layers.PatchEmbedding(hidden_dim=6, patch_size=4)
    images = RNG.normal(size=(2, 8, 12, 3)).astype("float32")

    tokens = to_numpy(layer(images))

    kernel, bias = [to_numpy(w) for w in layer.weights]
    assert kernel.shape == (4, 4, 3, 6)
    assert tokens.shape == (2, 6, 6)
    for row in range(2):
        for col in range(3):
            patch = images[:, 4 * row : 4 * row + 4, 4 * col : 4 * col + 4, :]
            expected = np.einsum("bhwc,hwcd->bd", patch, kernel) + bias
            np.testing.assert_allclose(tokens[:, row * 3 + col], expected, atol=1e-5)


def test_patch_embedding_rejects_indivisible_images():
    with pytest.raises(ValueError, match="multiples of patch_size=4"):
        layers.PatchEmbedding(8, 4)(np.zeros((1, 10, 8, 3), "float32"))


def test_class_token_is_prepended_and_zero():
    tokens = RNG.normal(size=(2, 4, 8)).astype("float32")
    layer = layers.ClassToken(8)

    output = to_numpy(layer(tokens))

    assert output.shape == (2, 5, 8)
    np.testing.assert_array_equal(output[:, 0], 0.0)
    np.testing.assert_array_equal(output[:, 1:], tokens)


def test_position_embedding_adds_weights():
    layer = layers.PositionEmbedding((2, 3), 8)
    tokens = RNG.normal(size=(2, 7, 8)).astype("float32")

    output = to_numpy(layer(tokens))

    embeddings = to_numpy(layer.embeddings)
    assert embeddings.shape == (1, 7, 8)
    assert 0.01 < embeddings.std() < 0.03
    np.testing.assert_allclose(output, tokens + embeddings, atol=1e-7)


def test_position_embedding_rejects_wrong_token_count():
    with pytest.raises(ValueError, match=r"Expected tokens of shape \(B, 5, 8\)"):
        layers.PositionEmbedding(2, 8)(np.zeros((1, 17, 8), "float32"))


def test_built_path_rejects_other_image_size():
    components = layers.make_vit_components("micro/4", 16, 10)
    layers.apply_vit_components(components, np.zeros((1, 16, 16, 3), "float32"))

    with pytest.raises(ValueError, match=r"Expected tokens of shape \(B, 17, 32\)") as info:
        layers.apply_vit_components(components, np.zeros((1, 32, 32, 3), "float32"))
    assert "Received: input_shape=(1, 65, 32)" in str(info.value)
    assert "PositionEmbedding.resample(new_grid_size)" in str(info.value)


def _reference_block(block, tokens):
    """Run `tokens` through a block made of stock Keras layers with `block`'s weights."""
    d, n, m = block.hidden_dim, block.num_heads, block.mlp_dim
    weights = [to_numpy(w) for w in block.weights]
    ln_1 = keras.layers.LayerNormalization(epsilon=1e-6)
    attention = keras.layers.MultiHeadAttention(num_heads=n, key_dim=d // n)
    ln_2 = keras.layers.LayerNormalization(epsilon=1e-6)
    dense_1 = keras.layers.Dense(m)
    dense_2 = keras.layers.Dense(d)
    x = keras.ops.convert_to_tensor(tokens)
    normed = ln_1(x)
    attention(normed, normed)
    ln_1.set_weights(weights[0:2])
    attention.set_weights(weights[2:10])
    ln_2.build(tokens.shape)
    ln_2.set_weights(weights[10:12])
    dense_1.build((None, d))
    dense_1.set_weights(weights[12:14])
    dense_2.build((None, m))
    dense_2.set_weights(weights[14:16])

    normed = ln_1(x)
    h = x + attention(normed, normed)
    hidden = keras.activations.gelu(dense_1(ln_2(h)), approximate=False)
    return to_numpy(h + dense_2(hidden))


def test_encoder_block_matches_stock_keras_layers():
    block = layers.EncoderBlock(hidden_dim=8, num_heads=2, mlp_dim=16)
    tokens = RNG.normal(size=(3, 5, 8)).astype("float32")
    block(tokens)
    block.set_weights([RNG.normal(0, 0.5, w.shape).astype("float32") for w in block.weights])

    output = to_numpy(block(tokens))

    shapes = [tuple(w.shape) for w in block.weights]
    assert shapes == [
        (8,), (8,), (8, 2, 4), (2, 4), (8, 2, 4), (2, 4), (8, 2, 4), (2, 4),
        (2, 4, 8), (8,), (8,), (8,), (8, 16), (16,), (16, 8), (8,),
    ]
    np.testing.assert_allclose(output, _reference_block(block, tokens), rtol=1e-5, atol=1e-5)


def test_encoder_block_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="Received: hidden_dim=10, num_heads=3"):
        layers.EncoderBlock(10, 3, 16)


@pytest.mark.parametrize("epsilon", ["x", None, True, 0.0, -1e-6])
def test_encoder_norm_rejects_bad_epsilon(epsilon):
    with pytest.raises(ValueError, match="Expected `epsilon` to be a number > 0"):
        layers.EncoderNorm(epsilon=epsilon)


def test_encoder_norm_returns_normalized_class_token():
    tokens = RNG.normal(size=(2, 5, 8)).astype("float32")

    output = to_numpy(layers.EncoderNorm()(tokens))

    first = tokens[:, 0]
    expected = (first - first.mean(-1, keepdims=True)) / np.sqrt(
        first.var(-1, keepdims=True) + 1e-6
    )
    np.testing.assert_allclose(output, expected, atol=1e-5)


def test_head_starts_at_zero():
    output = to_numpy(layers.Head(4)(RNG.normal(size=(3, 8)).astype("float32")))
    np.testing.assert_array_equal(output, np.zeros((3, 4)))


def _bilinear_by_hand(grid, new_h, new_w):
    """Half-pixel-centre bilinear resize of an (h, w, d) grid, one output pixel at a time."""
    h, w, _ = grid.shape
    result = np.zeros((new_h, new_w, grid.shape[-1]))
    for i in range(new_h):
        y = min(max((i + 0.5) * h / new_h - 0.5, 0), h - 1)
        y0, fy = int(np.floor(y)), y - np.floor(y)
        y1 = min(y0 + 1, h - 1)
        for j in range(new_w):
            x = min(max((j + 0.5) * w / new_w - 0.5, 0), w - 1)
            x0, fx = int(np.floor(x)), x - np.floor(x)
            x1 = min(x0 + 1, w - 1)
            result[i, j] = (
                (1 - fy) * (1 - fx) * grid[y0, x0]
                + (1 - fy) * fx * grid[y0, x1]
                + fy * (1 - fx) * grid[y1, x0]
                + fy * fx * grid[y1, x1]
            )
    return result


def test_resample_is_identity_on_same_grid():
    embeddings = RNG.normal(size=(1, 1 + 3 * 4, 5)).astype("float32")

    resampled = layers.resample_position_embedding(embeddings, (3, 4), grid_size=(3, 4))

    np.testing.assert_array_equal(resampled, embeddings)
    assert resampled is not embeddings


@pytest.mark.parametrize("new_grid", [(6, 6), (5, 7), (2, 3), (4, 4)])
def test_resample_matches_direct_bilinear(new_grid):
    embeddings = RNG.normal(size=(1, 1 + 16, 5)).astype("float32")

    resampled = layers.resample_position_embedding(embeddings, new_grid)

    grid = embeddings[0, 1:].reshape(4, 4, 5).astype("float64")
    expected = _bilinear_by_hand(grid, *new_grid).reshape(-1, 5)
    assert resampled.shape == (1, 1 + new_grid[0] * new_grid[1], 5)
    assert resampled.dtype == np.float32
    np.testing.assert_array_equal(resampled[0, 0], embeddings[0, 0])
    np.testing.assert_allclose(resampled[0, 1:], expected, rtol=1e-6, atol=1e-6)
    # The same convention as TensorFlow's bilinear resize (half-pixel centres, no antialias).
    tf_resized = tf.image.resize(grid, new_grid, method="bilinear").numpy().reshape(-1, 5)
    np.testing.assert_allclose(resampled[0, 1:], tf_resized, rtol=1e-5, atol=1e-6)
    # jax.image.resize antialiases when downsampling, so it agrees only when upsampling.
    if new_grid[0] >= 4 and new_grid[1] >= 4:
        import jax

        jax_resized = np.asarray(jax.image.resize(grid, (*new_grid, 5), "bilinear"))
        np.testing.assert_allclose(
            resampled[0, 1:], jax_resized.reshape(-1, 5), rtol=1e-5, atol=1e-6
        )


def test_resample_accepts_two_dimensional_embeddings():
    embeddings = RNG.normal(size=(1 + 4, 3))
    resampled = layers.resample_position_embedding(embeddings, 3)
    assert resampled.shape == (10, 3)


def test_resample_rejects_non_square_without_grid_size():
    with pytest.raises(ValueError, match="Pass grid_size"):
        layers.resample_position_embedding(np.zeros((1, 1 + 6, 4)), 3)


def test_position_embedding_resample_method():
    layer = layers.PositionEmbedding((4, 4), 8, name="posembed_input")
    layer.build((None, 17, 8))

    resized = layer.resample((6, 5))

    assert resized.name == "posembed_input"
    assert resized.grid_size == (6, 5)
    expected = layers.resample_position_embedding(to_numpy(layer.embeddings), (6, 5))
    np.testing.assert_array_equal(to_numpy(resized.embeddings), expected)
    assert resized(np.zeros((1, 31, 8), "float32")).shape == (1, 31, 8)


def test_variants_table_sizes():
    assert layers.get_variant("L/16") == dict(
        hidden_dim=1024, num_heads=16, mlp_dim=4096, num_layers=24, patch_size=16
    )
    assert layers.get_variant("Ti/16")["hidden_dim"] == 192
    assert layers.get_variant("S/16")["mlp_dim"] == 1536
    assert layers.get_variant("B/16")["num_heads"] == 12
    assert layers.get_variant("tiny/4") == dict(
        hidden_dim=64, num_heads=2, mlp_dim=128, num_layers=4, patch_size=4
    )
    assert layers.get_variant("micro/4")["num_layers"] == 2


def test_get_variant_lists_known_names():
    with pytest.raises(ValueError, match=r"Unknown ViT variant 'L/14'. Known variants: Ti/16"):
        layers.get_variant("L/14")


def test_count_params_vit_large():
    assert layers.count_vit_params("L/16", 224) == 303_301_632
    assert layers.count_vit_params("L/16", 384) == 303_690_752
    assert layers.count_vit_params("L/16", 224, num_classes=2) == 303_303_682


@pytest.mark.parametrize("num_classes, num_layers", [(10, None), (0, 3)])
def test_count_params_matches_built_components(num_classes, num_layers):
    components = layers.make_vit_components("micro/4", (8, 12), num_classes, num_layers)
    images = keras.Input((8, 12, 3))
    model = keras.Model(images, layers.apply_vit_components(components, images))

    expected = layers.count_vit_params("micro/4", (8, 12), num_classes, num_layers)

    assert model.count_params() == expected
    assert model.output.shape == (None, num_classes or 32)


@pytest.mark.parametrize("num_classes", [-1, 2.0, True])
def test_make_vit_components_rejects_num_classes(num_classes):
    with pytest.raises(ValueError, match="Expected `num_classes` to be an int >= 0") as info:
        layers.make_vit_components(SMALL_VIT, 8, num_classes)
    assert f"Received: num_classes={num_classes!r}" in str(info.value)


def test_make_vit_components_names():
    components = layers.make_vit_components(SMALL_VIT, 8, 3, name_prefix="a_")
    assert list(components) == [
        "embedding", "cls", "posembed_input", "encoderblock_0", "encoderblock_1",
        "encoder_norm", "head",
    ]
    assert components["encoderblock_1"].name == "a_encoderblock_1"
    assert "head" not in layers.make_vit_components(SMALL_VIT, 8, 0)


def _digits_images():
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 8x8 grey levels 0..16 -> 16x16 RGB in [-1, 1] by pixel repetition.
    images = digits.images.astype("float32") / 8.0 - 1.0
    images = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)
    images = np.repeat(images[..., None], 3, axis=-1)
    return images, digits.target.astype("int32")


def test_vit_path_learns_digits():
    images, labels = _digits_images()
    order = np.random.default_rng(0).permutation(len(labels))
    train, val = order[:1400], order[1400:]
    components = layers.make_vit_components("micro/4", 16, num_classes=10)
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, layers.apply_vit_components(components, inputs))
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=JIT_COMPILE,
    )

    model.fit(images[train], labels[train], batch_size=32, epochs=8, verbose=0)
    _, accuracy = model.evaluate(images[val], labels[val], verbose=0)

    # Chance is 10 %.
    assert accuracy > 0.5

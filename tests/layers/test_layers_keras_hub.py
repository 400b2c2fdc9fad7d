"""keras-hub's ViTBackbone weights load into the ViT component layers unchanged."""

import keras
import numpy as np
import pytest

from keras_multipath import layers
from layers_testing import to_numpy


@pytest.mark.slow
def test_keras_hub_vit_weights_match():
    # Imported here because keras_hub imports TensorFlow on every backend.
    import keras_hub

    rng = np.random.default_rng(0)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(16, 16, 3), patch_size=4, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64
    )
    backbone.set_weights([rng.normal(0, 0.2, w.shape).astype("float32") for w in backbone.weights])
    weights = [to_numpy(w) for w in backbone.weights]
    components = layers.make_vit_components("micro/4", 16, num_classes=0)
    images = keras.Input((16, 16, 3))
    model = keras.Model(images, layers.apply_vit_components(components, images))

    # keras-hub order: class token, patch kernel and bias, position embedding, 16 weights
    # per block, final LayerNorm gamma and beta.
    components["cls"].set_weights([weights[0]])
    components["embedding"].set_weights(weights[1:3])
    components["posembed_input"].set_weights([weights[3][None]])
    for i in range(2):
        components[f"encoderblock_{i}"].set_weights(weights[4 + 16 * i : 20 + 16 * i])
    components["encoder_norm"].set_weights(weights[36:38])
    inputs = rng.uniform(-1, 1, (3, 16, 16, 3)).astype("float32")

    expected = to_numpy(backbone(inputs))[:, 0]

    assert len(weights) == 38
    np.testing.assert_allclose(to_numpy(model(inputs)), expected, rtol=0, atol=1e-5)

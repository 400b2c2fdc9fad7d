"""Tests of root models: random init and import from keras-hub presets and .npz files."""

import keras
import numpy as np
import pytest

from keras_multipath.agents import root as root_module
from keras_multipath.agents.root import (
    build_vit_components,
    random_root,
    root_from_keras_hub_preset,
    root_from_npz,
)
from keras_multipath.layers.vit import resample_position_embedding

HUB_CONFIG = dict(image_shape=(16, 16, 3), patch_size=4, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)


@pytest.fixture(scope="module")
def hub_backbone():
    import keras_hub

    keras.utils.set_random_seed(7)
    backbone = keras_hub.models.ViTBackbone(**HUB_CONFIG)
    # Non-trivial biases and norms, so that a wrong mapping shows in the outputs.
    rng = np.random.default_rng(0)
    for variable in backbone.weights:
        variable.assign(keras.ops.convert_to_numpy(variable) + rng.normal(0, 0.05, variable.shape))
    return backbone


@pytest.fixture()
def images():
    return np.random.default_rng(1).uniform(-1, 1, (3, 16, 16, 3)).astype("float32")


def test_random_root_is_headless(images):
    root = random_root("micro/4", 16)
    assert list(root.components) == [
        "embedding", "cls", "posembed_input", "encoderblock_0", "encoderblock_1", "encoder_norm"
    ]
    assert root.task_name == "root_model/random_init"
    assert tuple(root.apply(images).shape) == (3, 32)
    assert root.position_embedding_for(24).shape == (1, 37, 32)


def test_build_components_zero_layers(images):
    components = build_vit_components("micro/4", 16, num_classes=5, num_layers=0)
    assert list(components) == ["embedding", "cls", "posembed_input", "encoder_norm", "head"]
    assert all(layer.built for layer in components.values())


def test_keras_hub_preset_matches_backbone(tmp_path, hub_backbone, images):
    preset = tmp_path / "tiny_vit"
    hub_backbone.save_to_preset(str(preset))
    root = root_from_keras_hub_preset(str(preset))
    expected = keras.ops.convert_to_numpy(hub_backbone(images))[:, 0]
    actual = keras.ops.convert_to_numpy(root.apply(images))
    assert root.task_name == "root_model/checkpoint"
    assert root.variant == dict(hidden_dim=32, num_heads=2, mlp_dim=64, num_layers=2, patch_size=4)
    np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_keras_hub_preset_resampled_and_truncated(tmp_path, hub_backbone):
    preset = tmp_path / "tiny_vit"
    hub_backbone.save_to_preset(str(preset))
    root = root_from_keras_hub_preset(str(preset), image_size=24, num_layers=1)
    hub_posembed = keras.ops.convert_to_numpy(
        hub_backbone.get_layer("vit_patching_and_embedding").position_embedding.embeddings
    )
    assert list(root.components)[3:] == ["encoderblock_0", "encoder_norm"]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(root.components["posembed_input"].embeddings),
        resample_position_embedding(hub_posembed[None], 6),
        atol=1e-6,
    )
    assert tuple(root.apply(np.zeros((1, 24, 24, 3), "float32")).shape) == (1, 32)


def write_npz_from_backbone(path, backbone):
    weights = {v.path: keras.ops.convert_to_numpy(v) for v in backbone.weights}
    embed = "vit_patching_and_embedding/"
    arrays = {
        "embedding/kernel": weights[embed + "patch_embedding/kernel"],
        "embedding/bias": weights[embed + "patch_embedding/bias"],
        "cls": weights[embed + "class_token"],
        "Transformer/posembed_input/pos_embedding": weights[embed + "position_embedding/embeddings"][None],
        "Transformer/encoder_norm/scale": weights["vit_encoder/ln/gamma"],
        "Transformer/encoder_norm/bias": weights["vit_encoder/ln/beta"],
        "head/kernel": np.zeros((32, 1000), "float32"),
        "head/bias": np.zeros((1000,), "float32"),
    }
    for i in range(2):
        hub = f"vit_encoder/transformer_block_{i + 1}/"
        for jax_name, hub_name in zip(root_module._BLOCK_NPZ_NAMES, root_module._BLOCK_HUB_NAMES):
            arrays[f"Transformer/encoderblock_{i}/{jax_name}"] = weights[hub + hub_name]
    np.savez(path, **arrays)


def test_npz_checkpoint_matches_backbone(tmp_path, hub_backbone, images):
    path = tmp_path / "ViT-micro.npz"
    write_npz_from_backbone(path, hub_backbone)
    root = root_from_npz(str(path))
    expected = keras.ops.convert_to_numpy(hub_backbone(images))[:, 0]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(root.apply(images)), expected, atol=1e-5)
    assert root.source_grid_size == (4, 4)
    assert root.position_embedding_for(32).shape == (1, 65, 32)


def test_npz_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="ViT checkpoint not found"):
        root_from_npz(str(tmp_path / "missing.npz"))
    bad = tmp_path / "bad.npz"
    np.savez(bad, other=np.zeros(3))
    with pytest.raises(ValueError, match="Not a vit_jax ViT checkpoint"):
        root_from_npz(str(bad))

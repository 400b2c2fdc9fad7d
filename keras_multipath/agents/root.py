"""Root models: the headless ViT every path descends from.

A root model is either randomly initialised or imported from pretrained weights, split into
the component layers `embedding`, `cls`, `posembed_input`, `encoderblock_<i>` and
`encoder_norm`. Two pretrained formats are read:

- a keras-hub `ViTBackbone` preset folder (`save_to_preset` output). Pass a local preset as a
  path (`./my_vit` or an absolute path). keras-hub treats a bare name that matches one of its
  built-in presets (for example `vit_base_patch16_224_imagenet`) as a download request, even
  when a local folder with that name exists.
- a vit_jax-style `.npz` file of named arrays (`embedding/kernel`, `cls`,
  `Transformer/posembed_input/pos_embedding`, `Transformer/encoderblock_<i>/...`,
  `Transformer/encoder_norm/...`); a pretrained `head` or `pre_logits` is ignored.

When the requested image size differs from the checkpoint's, the position embedding is
resampled bilinearly on the patch grid with the class-token entry kept. The checkpoint's own
position embedding stays available for later resolution changes.
"""

import dataclasses
import os

import keras
import numpy as np

from keras_multipath.layers.variants import get_variant
from keras_multipath.layers.vit import (
    apply_vit_components,
    make_vit_components,
    resample_position_embedding,
)

ROOT_TASK_RANDOM = "root_model/random_init"
ROOT_TASK_CHECKPOINT = "root_model/checkpoint"

# Weight order of `EncoderBlock.weights` and the matching vit_jax and keras-hub names.
_BLOCK_NPZ_NAMES = (
    "LayerNorm_0/scale",
    "LayerNorm_0/bias",
    "MultiHeadDotProductAttention_1/query/kernel",
    "MultiHeadDotProductAttention_1/query/bias",
    "MultiHeadDotProductAttention_1/key/kernel",
    "MultiHeadDotProductAttention_1/key/bias",
    "MultiHeadDotProductAttention_1/value/kernel",
    "MultiHeadDotProductAttention_1/value/bias",
    "MultiHeadDotProductAttention_1/out/kernel",
    "MultiHeadDotProductAttention_1/out/bias",
    "LayerNorm_2/scale",
    "LayerNorm_2/bias",
    "MlpBlock_3/Dense_0/kernel",
    "MlpBlock_3/Dense_0/bias",
    "MlpBlock_3/Dense_1/kernel",
    "MlpBlock_3/Dense_1/bias",
)
_BLOCK_HUB_NAMES = (
    "ln_1/gamma",
    "ln_1/beta",
    "mha/query/kernel",
    "mha/query/bias",
    "mha/key/kernel",
    "mha/key/bias",
    "mha/value/kernel",
    "mha/value/bias",
    "mha/attention_output/kernel",
    "mha/attention_output/bias",
    "ln_2/gamma",
    "ln_2/beta",
    "mlp/dense_1/kernel",
    "mlp/dense_1/bias",
    "mlp/dense_2/kernel",
    "mlp/dense_2/bias",
)


def _as_pair(image_size):
    if isinstance(image_size, (list, tuple)):
        if len(image_size) != 2:
            raise ValueError(f"Expected image_size as an int or (height, width). Received: {image_size}")
        return int(image_size[0]), int(image_size[1])
    return int(image_size), int(image_size)


def build_vit_components(variant, image_size, num_classes=0, num_layers=None):
    """Create and build the component layers of one ViT path with random weights.

    Unlike `make_vit_components`, `num_layers=0` is allowed (patch embedding, position
    embedding, final norm and head only).

    Args:
        variant: a variant name such as `"micro/4"` or a variant dict.
        image_size: an int or `(height, width)` in pixels.
        num_classes: head outputs; 0 for a headless path.
        num_layers: encoder blocks; `None` uses the variant's depth.

    Returns:
        An ordered dict {component name: built layer}.
    """
    size = get_variant(variant)
    depth = size["num_layers"] if num_layers is None else int(num_layers)
    if depth < 0:
        raise ValueError(f"Expected num_layers >= 0. Received: num_layers={num_layers}")
    components = make_vit_components(size, _as_pair(image_size), int(num_classes), max(depth, 1))
    if depth == 0:
        components.pop("encoderblock_0")
    height, width = _as_pair(image_size)
    apply_vit_components(components, np.zeros((1, height, width, 3), "float32"))
    return components


@dataclasses.dataclass
class RootModel:
    """A headless ViT split into built component layers, plus its origin.

    Attributes:
        variant: dict with `hidden_dim`, `num_heads`, `mlp_dim`, `num_layers`, `patch_size`.
        image_size: `(height, width)` the components are built for.
        components: ordered dict {component name: built layer}, without `head`.
        task_name: `root_model/random_init` or `root_model/checkpoint`.
        source_position_embedding: numpy array (1, 1 + gh * gw, D), the position embedding
            at the resolution of the source weights (the random init for a random root).
        source_grid_size: `(gh, gw)` of `source_position_embedding`.
    """

    variant: dict
    image_size: tuple
    components: dict
    task_name: str
    source_position_embedding: np.ndarray
    source_grid_size: tuple

    def position_embedding_for(self, image_size):
        """Return the source position embedding resampled to `image_size` (numpy)."""
        height, width = _as_pair(image_size)
        patch = self.variant["patch_size"]
        if height % patch or width % patch:
            raise ValueError(
                f"Image size {height}x{width} is not a multiple of the patch size {patch}."
            )
        return resample_position_embedding(
            self.source_position_embedding, (height // patch, width // patch), self.source_grid_size
        )

    def apply(self, images):
        """Return the class-token representation (B, D) of `images` in [-1, 1]."""
        return apply_vit_components(self.components, images)


def random_root(variant, image_size, num_layers=None):
    """Create a randomly initialised headless root model.

    Args:
        variant: a variant name or dict (see `keras_multipath.layers.variants`).
        image_size: an int or `(height, width)`.
        num_layers: encoder blocks; `None` uses the variant's depth.

    Returns:
        A `RootModel` with task name `root_model/random_init`.
    """
    size = get_variant(variant)
    if num_layers is not None:
        size["num_layers"] = int(num_layers)
    components = build_vit_components(size, image_size, 0)
    embeddings = keras.ops.convert_to_numpy(components["posembed_input"].embeddings)
    return RootModel(
        variant=size,
        image_size=_as_pair(image_size),
        components=components,
        task_name=ROOT_TASK_RANDOM,
        source_position_embedding=embeddings,
        source_grid_size=tuple(components["posembed_input"].grid_size),
    )


def _root_from_arrays(size, arrays, source_image_size, image_size, num_layers):
    """Build a checkpoint root from arrays named like the vit_jax tree."""
    depth = size["num_layers"] if num_layers is None else int(num_layers)
    if depth > size["num_layers"]:
        raise ValueError(
            f"The checkpoint has {size['num_layers']} encoder blocks. Received: num_layers={depth}"
        )
    size = dict(size, num_layers=depth)
    patch = size["patch_size"]
    source_grid = (source_image_size[0] // patch, source_image_size[1] // patch)
    source_posembed = np.asarray(arrays["posembed_input"], "float32").reshape(
        1, -1, size["hidden_dim"]
    )
    if source_posembed.shape[1] != 1 + source_grid[0] * source_grid[1]:
        raise ValueError(
            f"Position embedding has {source_posembed.shape[1]} tokens, expected "
            f"{1 + source_grid[0] * source_grid[1]} for image size {source_image_size} "
            f"and patch size {patch}."
        )
    image_size = source_image_size if image_size is None else _as_pair(image_size)
    components = build_vit_components(size, image_size, 0)

    components["embedding"].set_weights([arrays["embedding/kernel"], arrays["embedding/bias"]])
    components["cls"].set_weights([np.asarray(arrays["cls"]).reshape(1, 1, -1)])
    grid = tuple(components["posembed_input"].grid_size)
    components["posembed_input"].set_weights(
        [resample_position_embedding(source_posembed, grid, source_grid)]
    )
    for i in range(depth):
        components[f"encoderblock_{i}"].set_weights(arrays[f"encoderblock_{i}"])
    components["encoder_norm"].set_weights([arrays["encoder_norm/scale"], arrays["encoder_norm/bias"]])
    return RootModel(
        variant=size,
        image_size=image_size,
        components=components,
        task_name=ROOT_TASK_CHECKPOINT,
        source_position_embedding=source_posembed,
        source_grid_size=source_grid,
    )


def root_from_npz(path, image_size=None, num_layers=None):
    """Import a headless root model from a vit_jax-style `.npz` of named arrays.

    The sizes are read from the arrays: D and the patch size from `embedding/kernel`, the
    heads from the query kernel (D, N, Hd), the MLP width from `Dense_0`, the depth from the
    number of `encoderblock_<i>` groups. The source image size is inferred from the square
    position-embedding grid.

    Args:
        path: the `.npz` file.
        image_size: resolution of the root model; `None` keeps the checkpoint's.
        num_layers: keep only the first blocks; `None` keeps all.

    Returns:
        A `RootModel` with task name `root_model/checkpoint`.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"ViT checkpoint not found: {path}")
    with np.load(path, allow_pickle=False) as npz:
        named = {key: np.asarray(npz[key]) for key in npz.files}
    prefix = "Transformer/"
    required = ["embedding/kernel", "embedding/bias", "cls", prefix + "posembed_input/pos_embedding",
                prefix + "encoder_norm/scale", prefix + "encoder_norm/bias"]
    missing = [key for key in required if key not in named]
    if missing:
        raise ValueError(
            f"Not a vit_jax ViT checkpoint: {path} lacks {missing}. Found keys: {sorted(named)[:10]}..."
        )
    kernel = named["embedding/kernel"]
    depth = 0
    while f"{prefix}encoderblock_{depth}/LayerNorm_0/scale" in named:
        depth += 1
    if depth:
        block0 = f"{prefix}encoderblock_0/"
        num_heads = named[block0 + "MultiHeadDotProductAttention_1/query/kernel"].shape[1]
        mlp_dim = named[block0 + "MlpBlock_3/Dense_0/kernel"].shape[1]
    else:
        num_heads, mlp_dim = 1, 1
    size = get_variant(
        dict(hidden_dim=kernel.shape[-1], num_heads=num_heads, mlp_dim=mlp_dim,
             num_layers=depth, patch_size=kernel.shape[0])
    )
    posembed = named[prefix + "posembed_input/pos_embedding"]
    side = int(round(np.sqrt(posembed.shape[-2] - 1)))
    source_image_size = (side * size["patch_size"], side * size["patch_size"])

    arrays = {
        "embedding/kernel": kernel,
        "embedding/bias": named["embedding/bias"],
        "cls": named["cls"],
        "posembed_input": posembed,
        "encoder_norm/scale": named[prefix + "encoder_norm/scale"],
        "encoder_norm/bias": named[prefix + "encoder_norm/bias"],
    }
    for i in range(depth):
        arrays[f"encoderblock_{i}"] = [
            named[f"{prefix}encoderblock_{i}/{name}"] for name in _BLOCK_NPZ_NAMES
        ]
    return _root_from_arrays(size, arrays, source_image_size, image_size, num_layers)


def root_from_keras_hub_preset(preset, image_size=None, num_layers=None):
    """Import a headless root model from a keras-hub `ViTBackbone` preset.

    Args:
        preset: a local preset folder, passed as a path (`./name` or absolute). A bare name
            that matches a built-in keras-hub preset is downloaded by keras-hub instead.
        image_size: resolution of the root model; `None` keeps the preset's.
        num_layers: keep only the first blocks; `None` keeps all.

    Returns:
        A `RootModel` with task name `root_model/checkpoint`.
    """
    import keras_hub  # Imported here because it imports TensorFlow on every backend.

    backbone = keras_hub.models.ViTBackbone.from_preset(preset)
    config = backbone.get_config()
    if not config.get("use_class_token", True):
        raise ValueError(f"Preset {preset!r} has no class token; the root model needs one.")
    patch = config["patch_size"]
    patch = patch[0] if isinstance(patch, (list, tuple)) else patch
    size = get_variant(
        dict(hidden_dim=config["hidden_dim"], num_heads=config["num_heads"],
             mlp_dim=config["mlp_dim"], num_layers=config["num_layers"], patch_size=patch)
    )
    weights = {variable.path: keras.ops.convert_to_numpy(variable) for variable in backbone.weights}
    embed = "vit_patching_and_embedding/"
    arrays = {
        "embedding/kernel": weights[embed + "patch_embedding/kernel"],
        "embedding/bias": weights[embed + "patch_embedding/bias"],
        "cls": weights[embed + "class_token"],
        "posembed_input": weights[embed + "position_embedding/embeddings"],
        "encoder_norm/scale": weights["vit_encoder/ln/gamma"],
        "encoder_norm/bias": weights["vit_encoder/ln/beta"],
    }
    for i in range(size["num_layers"]):
        block = f"vit_encoder/transformer_block_{i + 1}/"
        arrays[f"encoderblock_{i}"] = [weights[block + name] for name in _BLOCK_HUB_NAMES]
    image_shape = config["image_shape"]
    source_image_size = (int(image_shape[0]), int(image_shape[1]))
    return _root_from_arrays(size, arrays, source_image_size, image_size, num_layers)


def publish_root(store, root, config=None, kind="singlepath"):
    """Publish a root model as the single path of its root agent, unless already published.

    The root agent is `<kind>~root_model~random_init` or `<kind>~root_model~checkpoint`.
    Its path is headless and has `num_classes = 0`; its hyperparameters are the agent
    defaults of `config` (when given) with the root's depth and resolution.

    Args:
        store: a `keras_multipath.system.Store`.
        root: a `RootModel`.
        config: an `AgentConfig` whose defaults fill the path's hyperparameters, or None.
        kind: agent kind of the root agent.

    Returns:
        The root `Path` (the published one when the root agent already has a state).
    """
    from keras_multipath.system import Component, Path, make_agent_id

    agent_id = make_agent_id(kind, root.task_name)
    state = store.resume(agent_id)
    if state.published:
        return state.paths[state.published[0]]

    records, weights = [], {}
    for name, layer in root.components.items():
        values = [keras.ops.convert_to_numpy(w) for w in layer.weights]
        record = Component(
            name=name,
            agent_id=agent_id,
            id=state.new_component_id(),
            num_params=int(sum(v.size for v in values)),
            layer_config=keras.saving.serialize_keras_object(layer),
            weight_shapes=[list(v.shape) for v in values],
        )
        records.append(record)
        weights[record.key] = values
    hparams = dict(config.hparams_defaults) if config is not None else {}
    hparams.update(
        num_layers=root.variant["num_layers"],
        ds_image_size=root.image_size[0],
        num_classes=0,
    )
    path = Path(
        agent_id=agent_id,
        task_name=root.task_name,
        id=state.new_path_id(),
        hparams=hparams,
        components=[record.key for record in records],
        metrics={"score": 0.0, "quality": 0.0, "offsprings": 0},
    )
    state.add_path(path)
    state.published = [path.key]
    state.population = [path.key]
    state.cycle = 1
    state.generation = 0
    state.config = {"variant": root.variant, "image_size": list(root.image_size)}
    store.publish(state, components=records, weights=weights)
    return path

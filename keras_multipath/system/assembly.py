"""Assembly of Keras models from paths, with one shared layer object per component.

The `Assembler` keeps a cache {component key: layer}. Every model built for a path uses the
cached layer objects, so N paths that share a frozen component hold its weights once, and a
component's weights are read from the store only when the first model needs them. Stored
components are frozen (`trainable=False`) because a published component never changes; new
and cloned components are trainable until they are published.
"""

import copy

import keras
import numpy as np

from keras_multipath.layers import apply_vit_components, make_vit_components
from keras_multipath.system import names
from keras_multipath.system.component import Component
from keras_multipath.system.path import Path

_VIT_FIXED_NAMES = ("embedding", "cls", "posembed_input", "encoder_norm", "head")


def layer_name(component):
    """Return the Keras layer name of `component`, unique in the system.

    TensorFlow name scopes accept only ``[A-Za-z0-9_.\\/>-]``, so the '~' of agent ids becomes
    '>', which agent ids never contain: ``"head-singlepath>mnist-3"``.
    """
    return f"{component.name}-{component.agent_id.replace('~', '>')}-{component.id}"


def image_shape_of(system, path):
    """Return ``(height, width)`` of `path`'s input images, from its ViT components' configs."""
    embedding = posembed = None
    for key in path.components:
        component = system.component(key)
        if component.name == "embedding":
            embedding = component
        elif component.name == "posembed_input":
            posembed = component
    if embedding is None or posembed is None:
        raise ValueError(
            f"Path {path.key!r} has no 'embedding' and 'posembed_input' components, so its "
            f"image size is unknown. Build models of other paths from Assembler.layer()."
        )
    patch = embedding.layer_config["config"]["patch_size"]
    patch_h, patch_w = (patch, patch) if isinstance(patch, int) else patch
    grid_h, grid_w = posembed.layer_config["config"]["grid_size"]
    return grid_h * patch_h, grid_w * patch_w


def resolution_key(image_shape):
    """Return the input name of a resolution: ``"16"`` for 16x16, ``"16x24"`` otherwise."""
    height, width = image_shape
    return str(height) if height == width else f"{height}x{width}"


def build_vit_template(variant, image_size, num_classes, num_layers=None):
    """Create the ViT layers of `make_vit_components`, built for `image_size` images.

    Built layers have weights, so they can be registered with `Assembler.create_component`
    or used as the shape reference of a candidate.
    """
    layers = make_vit_components(variant, image_size, num_classes, num_layers=num_layers)
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    apply_vit_components(layers, keras.Input((height, width, 3)))
    return layers


class Assembler:
    """Build Keras models for paths from one process-wide cache of component layers.

    Use one Assembler per process and store: two Assemblers would hold two copies of each
    component. Replace `system` at the start of every cycle; cached layers stay valid because
    stored components never change.

    Args:
        store: the `Store` that component weights are read from; None when every component
            is created in this process.
        system: the `System` that describes the components and paths.

    Example:

    >>> system = store.load_system(running_agent_id="singlepath~mnist")
    >>> assembler = Assembler(store, system)
    >>> model = assembler.build_model(system.published_paths("singlepath~mnist")[0])
    """

    def __init__(self, store, system):
        self.store = store
        self.system = system
        self._layers = {}

    @property
    def cached_keys(self):
        """Keys of the components whose layers exist in this process."""
        return sorted(self._layers)

    def layer(self, key):
        """Return the one layer object of component `key`, creating it on first use.

        A stored component's layer is created from its config, gets its weights from the
        store, and is frozen.
        """
        if key in self._layers:
            layer = self._layers[key]
            if self.system.is_stored(key):
                # A component published since this layer was created is frozen from now on.
                layer.trainable = False
            return layer
        component = self.system.component(key)
        if self.store is None or not self.system.is_stored(key):
            raise KeyError(
                f"Component {key!r} has no layer in this process and is not in the store. "
                f"Register new layers with Assembler.create_component, or give the layer its "
                f"weights with Assembler.restore."
            )
        layer = self._layer_from_config(component)
        weights = self.store.read_weights(key)
        try:
            layer.set_weights(weights)
        except ValueError as error:
            raise ValueError(
                f"Stored weights of component {key!r} do not fit its layer "
                f"{type(layer).__name__}: {error}"
            ) from error
        layer.trainable = False
        self._layers[key] = layer
        return layer

    def _layer_from_config(self, component):
        config = copy.deepcopy(component.layer_config)
        config.setdefault("config", {})["name"] = layer_name(component)
        layer = keras.saving.deserialize_keras_object(config, safe_mode=True)
        if not layer.built:
            raise ValueError(
                f"The config of component {component.key!r} has no build_config, so its layer "
                f"cannot be built. Register only built layers."
            )
        return layer

    def create_component(self, name, layer, state):
        """Register built `layer` as a new component of `state`'s agent.

        The id comes from `state.new_component_id()`; `state` is an `AgentState` or any
        object with `agent_id` and `new_component_id()`. The cached layer is a new object made
        from `layer`'s config with copied weights and a unique name, so use
        `assembler.layer(component.key)` afterwards, not `layer`.

        Returns:
            The new `Component`, already added to `system`.
        """
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(f"Expected a Keras layer for component {name!r}. Received: {layer!r}")
        if not layer.built:
            raise ValueError(
                f"Layer {layer.name!r} for component {name!r} is not built. Build it first, "
                f"e.g. with build_vit_template or by calling it on a keras.Input."
            )
        config = keras.saving.serialize_keras_object(layer)
        return self._register(name, config, layer.get_weights(), state)

    def clone(self, key, state):
        """Clone component `key` for `state`'s agent: a new layer from the same config with
        copied weights, a new id, owned by the cloning agent and trainable.

        Returns:
            The new `Component`, already added to `system`.
        """
        source = self.system.component(key)
        weights = self.layer(key).get_weights()
        return self._register(source.name, source.layer_config, weights, state)

    def _register(self, name, config, weights, state):
        names.validate_agent_id(state.agent_id)
        config = copy.deepcopy(config)
        config.get("config", {}).pop("trainable", None)
        component = Component(
            name=name,
            agent_id=state.agent_id,
            id=state.new_component_id(),
            num_params=int(sum(np.size(w) for w in weights)),
            layer_config=config,
            weight_shapes=[list(np.shape(w)) for w in weights],
        )
        layer = self._layer_from_config(component)
        layer.set_weights([np.array(w, copy=True) for w in weights])
        layer.trainable = True
        self.system.add_component(component)
        self._layers[component.key] = layer
        return component

    def restore(self, key, weights):
        """Create the layer of registered, unstored component `key` with `weights`.

        Use it for a component whose weights exist outside the store, e.g. staged by an
        earlier process of the same agent. The layer is trainable, like a new component's.

        Returns:
            The layer, now the one cached for `key`.
        """
        component = self.system.component(key)
        if self.system.is_stored(key):
            raise ValueError(
                f"Component {key!r} is in the store; get its layer with Assembler.layer."
            )
        if key in self._layers:
            raise ValueError(
                f"Component {key!r} already has a layer in this process. Call "
                f"Assembler.forget({key!r}) first to replace it."
            )
        layer = self._layer_from_config(component)
        layer.set_weights([np.array(w, copy=True) for w in weights])
        layer.trainable = True
        self._layers[key] = layer
        return layer

    def forget(self, key):
        """Drop the layer and the system record of unstored component `key` (e.g. of a
        candidate that was discarded); an unknown key is ignored."""
        if self.system.is_stored(key):
            raise ValueError(
                f"Component {key!r} is in the store and may be shared by other models; only "
                f"components created in this process can be forgotten."
            )
        self._layers.pop(key, None)
        self.system.components.pop(key, None)

    def weights(self, keys):
        """Return {key: list of numpy arrays} of components `keys`, for `Store.publish`."""
        return {key: [np.array(w) for w in self.layer(key).get_weights()] for key in keys}

    def path_layers(self, path):
        """Return {component name: layer} of `path`, in the path's order."""
        layers = {}
        for key in path.components:
            component = self.system.component(key)
            if component.name in layers:
                raise ValueError(
                    f"Path {path.key!r} has two components named {component.name!r}."
                )
            layers[component.name] = self.layer(key)
        return layers

    def apply_path(self, path, images, cache=None):
        """Apply `path`'s ViT components to `images`; return logits, or the representation
        (B, D) for a headless path. `cache` is passed to `apply_vit_components`, so paths
        applied with one cache compute their shared prefix once."""
        layers = self.path_layers(path)
        unknown = [n for n in layers
                   if n not in _VIT_FIXED_NAMES and not n.startswith("encoderblock_")]
        if unknown:
            raise ValueError(
                f"Path {path.key!r} has components {unknown} that are not ViT components; "
                f"build its model from Assembler.layer() and Assembler.apply_path of its "
                f"sub-paths."
            )
        return apply_vit_components(layers, images, cache=cache)

    def make_inputs(self, paths):
        """Return {resolution key: keras.Input} for the image sizes of `paths`."""
        inputs = {}
        for path in paths:
            shape = image_shape_of(self.system, path)
            key = resolution_key(shape)
            if key not in inputs:
                inputs[key] = keras.Input((*shape, 3), name=key)
        return inputs

    def build_model(self, paths, name=None):
        """Build a `keras.Model` for one path or several.

        Args:
            paths: a `Path` (a path key works too), or a list of them.
            name: model name; by default derived from the path key.

        Returns:
            For one path: a model from images (B, H, W, 3) at the path's resolution to its
            logits or representation. For one multipath path (see
            `keras_multipath.system.multipath_model`): a model from {resolution key: images}
            to the mixed logits. For a list: a model from {resolution key: images},
            e.g. ``{"8": ..., "16": ...}``, to the list of the paths' outputs, in order.
        """
        single = not isinstance(paths, (list, tuple))
        path_list = [paths] if single else list(paths)
        for p in path_list:
            if not isinstance(p, (str, Path)):
                raise TypeError(
                    f"Expected a Path, a path key such as 'singlepath~mnist:0', or a list of "
                    f"them. Received: {p!r} of type {type(p).__name__}"
                )
        path_list = [self.system.path(p) if isinstance(p, str) else p for p in path_list]
        if single and isinstance(path_list[0].hparams.get("paths"), dict):
            # A multipath path: frozen subpaths mixed by its router (imported here because
            # multipath_model imports this module).
            from keras_multipath.system.multipath_model import build_multipath_model

            return build_multipath_model(self, path_list[0], name=name)
        if not path_list:
            raise ValueError("Expected at least one path. Received an empty list.")
        inputs = self.make_inputs(path_list)
        outputs = []
        prefix_cache = {}
        for path in path_list:
            shape = image_shape_of(self.system, path)
            outputs.append(
                self.apply_path(path, inputs[resolution_key(shape)], cache=prefix_cache)
            )
        if name is None:
            name = _model_name(path_list[0].key if single else f"{len(path_list)}_paths")
        if single:
            return keras.Model(next(iter(inputs.values())), outputs[0], name=name)
        return keras.Model(inputs, outputs, name=name)


def _model_name(text):
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in text)

"""Multipath models: frozen published paths mixed by a trainable per-sample router.

A multipath path describes its model in `hparams["paths"]`, a dict
``{"path_0": record, "path_1": record, ...}``. Each record is a copy of one published
singlepath path (`agent_id`, `task_name`, `id`, `hparams`, `components`), so the model can
be rebuilt after the path's owner has replaced it: the store lists a published component
forever. `path_0` is the main path, the task's own singlepath model with its head. The
others are paths of other tasks used headless: their record omits the head and has
``num_classes = 0``, so they output the class-token representation (B, D).

The path's `components` list every component of the subpaths (each once, in path order)
followed by the agent's own `router` and `connector_<k>` components. The model is

    L0 = path_0(images[res_0])                      main logits (B, C), frozen
    Lk = connector_k(path_k(images[res_k])), k >= 1  (B, C); path_k frozen
    w  = router(L0)                                  (B, n)
    y  = MultipathMixture()([L0, L1, ...], w)

with one input per distinct resolution, a dict ``{resolution key: images}`` such as
``{"16": ..., "8": ...}``. Frozen layers are the Assembler's shared layer objects, so a
multipath model holds no copy of another path's weights.
"""

import copy

import keras
import numpy as np

from keras_multipath.layers import Connector, MultipathMixture, MultipathRouter
from keras_multipath.layers.vit import apply_vit_components
from keras_multipath.system.assembly import image_shape_of, resolution_key
from keras_multipath.system.path import Path

PATHS_KEY = "paths"
ROUTER_NAME = "router"
CONNECTOR_PREFIX = "connector_"


def is_multipath(path):
    """Return whether `path` describes a multipath model (its hparams have a `paths` dict)."""
    return isinstance(path.hparams.get(PATHS_KEY), dict)


def connector_name(index):
    """Return the component name of the connector of subpath `index` (>= 1)."""
    return f"{CONNECTOR_PREFIX}{index}"


def subpath_name(index):
    """Return the key of subpath `index` in `hparams["paths"]`: ``"path_<index>"``."""
    return f"path_{index}"


def make_subpath_record(system, path, headless):
    """Return the JSON-able record of `path` stored in a multipath path's `hparams["paths"]`.

    Args:
        system: the `System` that holds `path`'s components.
        path: a published singlepath `Path`.
        headless: drop the `head` component and set `num_classes` to 0.
    """
    components = list(path.components)
    hparams = copy.deepcopy(path.hparams)
    if headless:
        components = [key for key in components if system.component(key).name != "head"]
        hparams["num_classes"] = 0
    return {
        "agent_id": path.agent_id,
        "task_name": path.task_name,
        "id": path.id,
        "hparams": hparams,
        "components": components,
    }


def subpaths(path):
    """Return the subpaths of multipath `path` as `Path` objects, `path_0` first.

    Raises:
        ValueError: when `path` is not a multipath path or its `paths` are not numbered
            ``path_0 .. path_<n-1>``.
    """
    if not is_multipath(path):
        raise ValueError(
            f"Path {path.key!r} is not a multipath path: its hparams have no 'paths' dict."
        )
    return subpaths_from_records(path.hparams[PATHS_KEY], where=f"Path {path.key!r}")


def subpaths_from_records(records, where="The candidate"):
    """Return `Path` objects for the subpath records ``{"path_0": record, ...}``, in order."""
    expected = [subpath_name(i) for i in range(len(records))]
    if sorted(records) != sorted(expected) or len(records) < 2:
        raise ValueError(
            f"{where} has subpaths {sorted(records)}; expected at least two, named "
            f"path_0 .. path_<n-1>."
        )
    return [
        Path(
            agent_id=records[name]["agent_id"],
            task_name=records[name]["task_name"],
            id=int(records[name]["id"]),
            hparams=copy.deepcopy(records[name]["hparams"]),
            components=list(records[name]["components"]),
        )
        for name in expected
    ]


def subpath_image_sizes(system, paths):
    """Return the distinct square image sizes of `paths`, in path order.

    Raises:
        ValueError: for a path whose images are not square (the input pipeline resizes to
            square images only).
    """
    sizes = []
    for path in paths:
        height, width = image_shape_of(system, path)
        if height != width:
            raise ValueError(
                f"Path {path.key!r} takes {height}x{width} images; multipath models take "
                f"square images only."
            )
        if height not in sizes:
            sizes.append(height)
    return sizes


def own_components(system, path):
    """Return `(router key, {subpath index: connector key})` of multipath `path`."""
    router, connectors = None, {}
    for key in path.components:
        component = system.component(key)
        if component.agent_id != path.agent_id:
            continue
        if component.name == ROUTER_NAME:
            router = key
        elif component.name.startswith(CONNECTOR_PREFIX):
            connectors[int(component.name[len(CONNECTOR_PREFIX):])] = key
    return router, connectors


def build_multipath_graph(assembler, paths, router, connectors, name="multipath"):
    """Build the multipath `keras.Model` from subpaths, a router and connectors.

    Args:
        assembler: the `Assembler` whose shared layers the subpaths use.
        paths: subpath `Path` objects; `paths[0]` keeps its head, the others are headless.
        router: a `MultipathRouter` with `num_paths == len(paths)`.
        connectors: a list of `len(paths) - 1` `Connector` layers, one per headless path.
        name: model name.

    Returns:
        A `keras.Model` from ``{resolution key: images}`` to mixed logits (B, C).
    """
    if len(connectors) != len(paths) - 1 or router.num_paths != len(paths):
        raise ValueError(
            f"Expected a router for {len(paths)} paths and {len(paths) - 1} connectors. "
            f"Received: router.num_paths={router.num_paths}, {len(connectors)} connectors."
        )
    inputs = assembler.make_inputs(paths)
    logits = []
    # Subpaths that share a prefix of frozen components (children of one root) compute it
    # once per resolution.
    prefix_cache = {}
    for index, path in enumerate(paths):
        images = inputs[resolution_key(image_shape_of(assembler.system, path))]
        layers = assembler.path_layers(path)
        has_head = "head" in layers
        if has_head != (index == 0):
            raise ValueError(
                f"Subpath {index} ({path.key!r}) {'has' if has_head else 'has no'} head; the "
                f"main path (index 0) needs its head and the other paths must be headless."
            )
        output = apply_vit_components(layers, images, cache=prefix_cache)
        logits.append(output if index == 0 else connectors[index - 1](output))
    weights = router(logits[0])
    mixed = MultipathMixture(name=f"{name}_mixture")(logits, weights)
    return keras.Model(inputs, mixed, name=name)


def build_multipath_model(assembler, path, name=None):
    """Build the `keras.Model` of multipath `path` from the Assembler's layers.

    `Assembler.build_model` calls this for multipath paths.
    """
    system = assembler.system
    router_key, connector_keys = own_components(system, path)
    parts = subpaths(path)
    missing = [connector_name(i) for i in range(1, len(parts)) if i not in connector_keys]
    if router_key is None or missing:
        raise ValueError(
            f"Multipath path {path.key!r} lacks components "
            f"{(['router'] if router_key is None else []) + missing}."
        )
    router = assembler.layer(router_key)
    connectors = [assembler.layer(connector_keys[i]) for i in range(1, len(parts))]
    if name is None:
        name = "".join(c if c.isalnum() or c in "_-." else "_" for c in path.key)
    return build_multipath_graph(assembler, parts, router, connectors, name=name)


class _PreallocatedId:
    """Id source for `Assembler.create_component` that returns an id already allocated."""

    def __init__(self, agent_id, id_):
        self.agent_id = agent_id
        self._id = id_

    def new_component_id(self):
        return self._id


def assemble_candidate(assembler, candidate, ensure_layer=None):
    """Build the model of a multipath candidate description.

    The subpaths use the Assembler's shared, frozen layers. The router and connectors are
    registered as new components under the keys the oracle allocated: `clone` entries
    start from their source's weights (the router with the candidate's `router_lr_mult`),
    `new` entries from the layers' initialisers. A component registered by an earlier
    attempt of the same trial is replaced.

    Args:
        assembler: the `Assembler` of the cycle.
        candidate: the dict made by `keras_multipath.agents.multipath.sample_multipath`,
            with component keys allocated.
        ensure_layer: optional callable run on a clone source's key before its layer is
            read, so that a source staged by an earlier process can be restored.

    Returns:
        `(model, trainable_layers)`: the `keras.Model` from {resolution key: images} to
        mixed logits, and {component key: layer} of the router and connectors, the only
        trainable layers of the model.
    """
    hparams = candidate["hparams"]
    num_classes = int(hparams["num_classes"])
    parts = subpaths_from_records(hparams[PATHS_KEY])
    agent_id = candidate["agent_id"]
    system = assembler.system
    trainable = {}
    for entry in candidate["components"]:
        if entry["action"] == "share":
            continue
        key, name = entry["key"], entry["name"]
        weights = None
        if entry["action"] == "clone":
            if ensure_layer is not None:
                ensure_layer(entry["source"])
            weights = [np.array(w) for w in assembler.layer(entry["source"]).get_weights()]
        if name == ROUTER_NAME:
            layer = new_router(
                num_classes, len(parts), hparams["router_init_main_path_weight"],
                hparams["router_lr_mult"], weights,
            )
        elif name.startswith(CONNECTOR_PREFIX):
            index = int(name[len(CONNECTOR_PREFIX):])
            layer = new_connector(representation_dim(system, parts[index]), num_classes, weights)
        else:
            raise ValueError(
                f"Unexpected trainable component {name!r} in a multipath candidate; only "
                f"'router' and 'connector_<k>' are trained."
            )
        if key in system.components:
            assembler.forget(key)
        _, id_ = key.split(":")
        component = assembler.create_component(name, layer, _PreallocatedId(agent_id, int(id_)))
        if component.key != key:
            raise RuntimeError(f"Component id mismatch: {component.key!r} != {key!r}.")
        trainable[key] = assembler.layer(key)

    by_name = {entry["name"]: entry["key"] for entry in candidate["components"]
               if entry["action"] != "share"}
    router = trainable[by_name[ROUTER_NAME]]
    connectors = [trainable[by_name[connector_name(i)]] for i in range(1, len(parts))]
    model = build_multipath_graph(
        assembler, parts, router, connectors,
        name="".join(c if c.isalnum() else "_" for c in candidate.get("path_key", "candidate")),
    )
    return model, trainable


def new_router(num_classes, num_paths, main_path_weight, lr_mult, weights=None):
    """Create a built `MultipathRouter` for `num_classes` main logits, optionally with
    `weights` (a list in `layer.weights` order)."""
    router = MultipathRouter(num_paths, main_path_weight=main_path_weight, lr_mult=lr_mult)
    router.build((None, int(num_classes)))
    if weights is not None:
        router.set_weights(weights)
    return router


def new_connector(representation_dim, num_classes, weights=None):
    """Create a built `Connector` from (B, representation_dim) to `num_classes` logits."""
    connector = Connector(int(num_classes))
    connector.build((None, int(representation_dim)))
    if weights is not None:
        connector.set_weights(weights)
    return connector


def representation_dim(system, path):
    """Return the width D of `path`'s class-token representation (its encoder norm)."""
    for key in path.components:
        component = system.component(key)
        if component.name == "encoder_norm":
            return int(component.weight_shapes[0][0])
    raise ValueError(f"Path {path.key!r} has no 'encoder_norm' component.")


# --------------------------------------------------------------------------------------------
# Inspection.


def _find_router_output(model):
    """Return the tensor of `model`'s graph that a `MultipathRouter` outputs."""
    seen = set()
    stack = list(model.outputs)
    while stack:
        tensor = stack.pop()
        history = getattr(tensor, "_keras_history", None)
        if history is None or id(tensor) in seen:
            continue
        seen.add(id(tensor))
        operation, node_index, _ = history
        if isinstance(operation, MultipathRouter):
            return tensor
        stack.extend(operation._inbound_nodes[node_index].input_tensors)
    raise ValueError(f"Model {model.name!r} has no MultipathRouter layer.")


def router_weights_model(model):
    """Return a `keras.Model` from `model`'s inputs to its router weights (B, num_paths).

    Works on models built by `build_multipath_model` and on the same models loaded from a
    `.keras` file.
    """
    return keras.Model(model.inputs, _find_router_output(model), name=f"{model.name}_router")


def router_weights(model, images, batch_size=64):
    """Return the per-sample router weights of multipath `model` on `images`.

    Args:
        model: a multipath `keras.Model`.
        images: ``{resolution key: images}`` numpy arrays, or a `tf.data.Dataset` of such
            dicts (or of `(dict, labels)` pairs).
        batch_size: prediction batch size for numpy inputs.

    Returns:
        A numpy array (num_samples, num_paths); each row sums to 1.
    """
    return np.asarray(router_weights_model(model).predict(images, batch_size=batch_size, verbose=0))


def parameter_counts(system, path):
    """Return `(trained_params, activated_params)` of multipath `path`.

    Trained parameters are those of the path's router and connectors. Activated parameters
    are the distinct parameters one forward pass uses: every component of every subpath
    (counted once when shared by several subpaths) plus the router and connectors.
    """
    router_key, connector_keys = own_components(system, path)
    own = [router_key, *connector_keys.values()]
    trained = sum(system.component(key).num_params for key in own if key is not None)
    activated = sum(system.component(key).num_params for key in dict.fromkeys(path.components))
    return int(trained), int(activated)


def multipath_metrics(model, trained_params, activated_params, dataset=None):
    """Return the metrics of a multipath model as a dict of floats.

    Keys: `trained_params`, `activated_params`, `trained_fraction` (their ratio) and, when
    `dataset` (for example the validation pipeline) is given, `router_weight_mean_<k>`, the
    mean router weight of path k over the dataset.
    """
    metrics = {
        "trained_params": float(trained_params),
        "activated_params": float(activated_params),
        "trained_fraction": float(trained_params) / float(activated_params),
    }
    if dataset is not None:
        weights = router_weights(model, dataset)
        for index, mean in enumerate(weights.mean(axis=0)):
            metrics[f"router_weight_mean_{index}"] = float(mean)
    return metrics

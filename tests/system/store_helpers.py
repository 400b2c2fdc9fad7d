"""Helpers that build store content from numpy arrays only (no Keras), for tests and scripts."""

import numpy as np

from keras_multipath.system import Component, Path, Store

ROOT = "singlepath~root_model~random_init"


def dense_config(name, units):
    """A small serialized Keras Dense config; the store treats it as opaque JSON."""
    return {
        "module": "keras.layers",
        "class_name": "Dense",
        "config": {"name": name, "units": units},
        "registered_name": None,
    }


def weights_for(component_id, shapes=((3, 2), (2,))):
    """Deterministic weights whose values encode the component id."""
    return [
        np.full(shape, component_id + 0.25 * i, dtype=np.float32) for i, shape in enumerate(shapes)
    ]


def new_component(state, name, shapes=((3, 2), (2,))):
    """Allocate a component of `state`'s agent and return (Component, weights)."""
    id_ = state.new_component_id()
    weights = weights_for(id_, shapes)
    component = Component(
        name=name,
        agent_id=state.agent_id,
        id=id_,
        num_params=int(sum(np.prod(s) for s in shapes)),
        layer_config=dense_config(f"{name}_{id_}", shapes[-1][0]),
    )
    return component, weights


def publish_path(store, state, task_name, shared=(), new_names=("head",), parent=None,
                 cycle=None, generation=0, metrics=None):
    """Publish one path made of `shared` component keys plus new components of `state`."""
    components, weights = [], {}
    for name in new_names:
        component, values = new_component(state, name)
        components.append(component)
        weights[component.key] = values
    path = Path(
        agent_id=state.agent_id,
        task_name=task_name,
        id=state.new_path_id(),
        hparams={"num_layers": 1, "ds_image_size": 8},
        components=list(shared) + [c.key for c in components],
        parent=parent,
        metrics=dict(metrics or {"quality": 0.5}),
    )
    state.add_path(path)
    state.published = [path.key]
    state.population = [path.key]
    state.history = [path]
    state.cycle = state.cycle + 1 if cycle is None else cycle
    state.generation = generation
    store.publish(state, components=components, weights=weights)
    return path


def publish_root(store):
    """Publish a root path with components embedding, encoderblock_0 and encoder_norm."""
    state = store.resume(ROOT)
    return publish_path(
        store, state, "root_model/random_init",
        new_names=("embedding", "encoderblock_0", "encoder_norm"),
    ), state


__all__ = ["ROOT", "Store", "new_component", "publish_path", "publish_root", "weights_for"]

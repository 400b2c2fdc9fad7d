"""Measure how long loading a large store takes when no weights are read.

Builds a store of --agents agents (default 100) with --components components in total
(default 1,000): a root agent, then agents whose published path shares components of earlier
agents and adds new ones. Then it times `Store.load_system()` in a fresh `Store` object,
which reads every agent's metadata and checks file sizes and checksums but reads no weights.
Uses only the store (numpy, no Keras).

Usage: python benchmarks/store_load.py [--agents 100] [--components 1000] [--root DIR]
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_multipath.system import Component, Path, Store  # noqa: E402

# A serialized EncoderBlock config, so that the metadata has a realistic size.
_LAYER_CONFIG = {
    "module": "keras_multipath.layers.vit",
    "class_name": "EncoderBlock",
    "config": {
        "name": "encoderblock_0", "hidden_dim": 32, "num_heads": 2, "mlp_dim": 64,
        "layer_norm_epsilon": 1e-06,
        "dtype": {"module": "keras", "class_name": "DTypePolicy",
                  "config": {"name": "float32"}, "registered_name": None},
    },
    "registered_name": "keras_multipath>EncoderBlock",
    "build_config": {"input_shape": [None, 5, 32]},
}


def build_store(root, num_agents, num_components, seed=0):
    """Publish one end-of-cycle state per agent; return the number of components written."""
    rng = np.random.default_rng(seed)
    store = Store(root)
    per_agent = max(1, num_components // num_agents)
    published_keys = []
    written = 0
    for index in range(num_agents):
        task = "root_model/random_init" if index == 0 else f"task_{index:03d}"
        agent_id = "singlepath~" + task.replace("/", "~")
        state = store.resume(agent_id)
        count = per_agent if index < num_agents - 1 else num_components - written
        components, weights = [], {}
        for position in range(count):
            id_ = state.new_component_id()
            values = [rng.standard_normal((4, 4)).astype("float32"),
                      np.zeros(4, "float32")]
            config = dict(_LAYER_CONFIG, config=dict(_LAYER_CONFIG["config"],
                                                    name=f"encoderblock_{position}"))
            component = Component(f"encoderblock_{position}", agent_id, id_, 20, config)
            components.append(component)
            weights[component.key] = values
        shared = []
        if published_keys:
            picks = rng.choice(len(published_keys), size=min(4, len(published_keys)),
                               replace=False)
            shared = [published_keys[i] for i in sorted(picks)]
        path = Path(agent_id, task, state.new_path_id(),
                    hparams={"num_layers": count, "ds_image_size": 8},
                    components=shared + [c.key for c in components],
                    metrics={"quality": float(rng.uniform())})
        state.add_path(path)
        state.published = [path.key]
        state.population = [path.key]
        state.cycle = 1
        store.publish(state, components, weights)
        published_keys.extend(c.key for c in components)
        written += count
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=100, help="number of agents")
    parser.add_argument("--components", type=int, default=1000,
                        help="total number of components")
    parser.add_argument("--root", default=None,
                        help="store folder (default: a temporary folder, deleted afterwards)")
    args = parser.parse_args()
    if args.agents < 1 or args.components < args.agents:
        parser.error("Expected --agents >= 1 and --components >= --agents.")

    root = args.root or tempfile.mkdtemp(prefix="store_load_")
    try:
        start = time.perf_counter()
        written = build_store(root, args.agents, args.components)
        build_seconds = time.perf_counter() - start

        start = time.perf_counter()
        reader = Store(root)
        system = reader.load_system()
        load_seconds = time.perf_counter() - start

        if system.load_errors or len(system.components) != written:
            raise SystemExit(f"Load mismatch: {len(system.components)} components, "
                             f"errors {system.load_errors}")
        print(f"store: {root}")
        print(f"built {args.agents} agents, {written} components, "
              f"{len(system.paths)} paths in {build_seconds:.2f} s")
        print(f"load_system (no weights read): {load_seconds:.3f} s, "
              f"{len(reader.verified_weights_files)} weights files read")
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

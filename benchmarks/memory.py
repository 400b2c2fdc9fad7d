"""Resident memory of many task models that share frozen components, against weight bytes.

Setup (a child process): a random root ViT is published to a fresh `Store`, then one agent
per task publishes a path that shares the root's components up to the second-to-last encoder
block and owns a fine-tuned copy of the last block, the encoder norm and a head, as
singlepath children of the root do.

Measurement (another child process, so that setup allocations do not count): the system is
loaded from the store and an `Assembler` builds every task's model and runs one prediction.
The script records the resident set size (VmRSS) growth, the bytes of the distinct weights
(each component counted once), the bytes if every model held its own copy, and whether the
models' distinct variables are exactly the distinct components' weights.

    .venv/bin/python benchmarks/memory.py --backend jax
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common  # noqa: E402

BACKEND = _common.select_backend()


def resident_bytes():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status.")


def setup(store_dir, variant, image_size, num_tasks, num_classes):
    import numpy as np

    from keras_multipath.agents.root import publish_root, random_root
    from keras_multipath.system import Component, Path, Store
    from keras_multipath.system.assembly import build_vit_template

    store = Store(store_dir)
    root_path = publish_root(store, random_root(variant, image_size))
    system = store.load_system()
    root_by_name = {system.component(k).name: k for k in root_path.components}
    template = build_vit_template(variant, image_size, num_classes)
    blocks = [n for n in template if n.startswith("encoderblock_")]
    own_names = [blocks[-1], "encoder_norm", "head"]
    rng = np.random.default_rng(0)
    for task in range(num_tasks):
        import keras

        state = store.resume(f"singlepath~task{task}")
        records, weights, keys = [], {}, []
        for name, layer in template.items():
            if name not in own_names:
                keys.append(root_by_name[name])
                continue
            values = [
                np.asarray(keras.ops.convert_to_numpy(w))
                + rng.normal(0, 0.01, tuple(w.shape)).astype("float32")
                for w in layer.weights
            ]
            record = Component(
                name=name, agent_id=state.agent_id, id=state.new_component_id(),
                num_params=int(sum(v.size for v in values)),
                layer_config=keras.saving.serialize_keras_object(layer),
                weight_shapes=[list(v.shape) for v in values],
            )
            records.append(record)
            weights[record.key] = values
            keys.append(record.key)
        path = Path(agent_id=state.agent_id, task_name=f"task{task}", id=state.new_path_id(),
                    hparams={"ds_image_size": image_size, "num_classes": num_classes},
                    components=keys, parent=root_path.key)
        state.add_path(path)
        state.published = [path.key]
        state.population = [path.key]
        state.cycle, state.generation = 1, 0
        store.publish(state, components=records, weights=weights)


def measure(store_dir, image_size, batch_size):
    import keras
    import numpy as np

    from keras_multipath.system import Store
    from keras_multipath.system.assembly import Assembler

    images = np.zeros((batch_size, image_size, image_size, 3), "float32")
    store = Store(store_dir)
    system = store.load_system()
    paths = [p for p in system.published_paths() if p.task_name.startswith("task")]
    paths.sort(key=lambda p: p.task_name)
    assembler = Assembler(store, system)

    # Warm the framework up (kernels, allocator) on a throwaway model of the same shapes so
    # that the growth below is the models', not the first call's.
    warm = keras.models.clone_model(assembler.build_model(paths[0]))
    warm.predict_on_batch(images)
    del warm
    assembler = Assembler(store, system)
    start = resident_bytes()
    models, growth = [], []
    for path in paths:
        model = assembler.build_model(path)
        model.predict_on_batch(images)
        models.append(model)
        growth.append(resident_bytes() - start)

    component_keys = {key for path in paths for key in path.components}
    unique = sum(system.component(k).num_params for k in component_keys) * 4
    naive = sum(system.component(k).num_params for p in paths for k in p.components) * 4
    variables = {id(v) for model in models for v in model.weights}
    expected = sum(len(system.component(k).weight_shapes) for k in component_keys)
    layers = {id(assembler.layer(k)) for k in component_keys}
    return {
        "num_tasks": len(paths),
        "growth": growth,
        "unique_bytes": unique,
        "naive_bytes": naive,
        "distinct_variables": len(variables),
        "expected_variables": expected,
        "distinct_layers": len(layers),
        "distinct_components": len(component_keys),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=BACKEND, help="Keras backend (sets KERAS_BACKEND).")
    parser.add_argument("--variant", default="S/16", help="ViT size of the root.")
    parser.add_argument("--image-size", type=int, default=64, help="Image side in pixels.")
    parser.add_argument("--num-tasks", type=int, default=8)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--phase", choices=["all", "setup", "measure"], default="all",
                        help="Internal: the child processes run one phase each.")
    parser.add_argument("--store", help="Internal: the store folder of the child processes.")
    parser.add_argument("--no-write", action="store_true", help="Do not update RESULTS.md.")
    args = parser.parse_args()

    if args.phase == "setup":
        setup(args.store, args.variant, args.image_size, args.num_tasks, args.num_classes)
        return
    if args.phase == "measure":
        print(json.dumps(measure(args.store, args.image_size, args.batch_size)))
        return

    with tempfile.TemporaryDirectory() as folder:
        store_dir = os.path.join(folder, "store")
        common = [sys.executable, os.path.abspath(__file__), "--backend", BACKEND,
                  "--store", store_dir, "--variant", args.variant,
                  "--image-size", str(args.image_size), "--num-tasks", str(args.num_tasks),
                  "--num-classes", str(args.num_classes), "--batch-size", str(args.batch_size)]
        subprocess.run(common + ["--phase", "setup"], check=True)
        output = subprocess.run(common + ["--phase", "measure"], check=True,
                                capture_output=True, text=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    mib = 1024 * 1024
    final = result["growth"][-1]
    print(f"{BACKEND}: {result['num_tasks']} tasks, RSS growth {final / mib:.1f} MiB, unique "
          f"weights {result['unique_bytes'] / mib:.1f} MiB, one copy per model "
          f"{result['naive_bytes'] / mib:.1f} MiB; distinct variables "
          f"{result['distinct_variables']} (expected {result['expected_variables']}), layers "
          f"{result['distinct_layers']} for {result['distinct_components']} components; growth "
          f"after each model (MiB): {[round(g / mib, 1) for g in result['growth']]}")
    if args.no_write:
        return
    intro = """
## Memory of many tasks sharing frozen components

Command, once per backend: `.venv/bin/python benchmarks/memory.py --backend <backend>`
(defaults: a random S/16 root at 64 px, 8 tasks, 10 classes, batch 8).

Each task's path shares the root's components up to the second-to-last encoder block and
owns its last block, encoder norm and head. A fresh process loads the system from the
store, builds every task's model with one `Assembler` and runs one prediction per model.
"RSS growth" is VmRSS after the last model minus VmRSS before the first (after a warm-up
model); "unique weights" counts each component once; "one copy per model" is what
separate models would hold. "held once" is yes when the models' distinct variables are
exactly the distinct components' weights and each component has one layer object.
"""
    header = ["backend", "tasks", "RSS growth MiB", "unique weights MiB",
              "one copy per model MiB", "growth / unique", "held once", "date", "load average"]
    held_once = (result["distinct_variables"] == result["expected_variables"]
                 and result["distinct_layers"] == result["distinct_components"])
    row = [BACKEND, str(result["num_tasks"]), f"{final / mib:.1f}",
           f"{result['unique_bytes'] / mib:.1f}", f"{result['naive_bytes'] / mib:.1f}",
           f"{final / result['unique_bytes']:.2f}", "yes" if held_once else "no",
           _common.utc_now(), _common.load_average()]
    notes = f"Machine: {_common.machine_line()}."
    _common.update_results("memory", intro, header, [row], key_columns=2, notes=notes)


if __name__ == "__main__":
    main()

"""No forgetting: earlier agents' published models predict bit-identically as the system grows.

The script creates one store with a random micro/4 root. Then, for each task in order, it
runs one singlepath agent cycle and, from the second task on, one multipath agent cycle of
that task. A multipath model's main path is the task's singlepath model, and its secondary
paths are other tasks' singlepath models or the root. Right after its cycle, each agent's
published model is rebuilt from a fresh `Store` and `Assembler`, with weights read from
disk. The model predicts a fixed batch of its task's test images, at each of its subpaths'
resolutions for a multipath model. After every later cycle, every earlier model is
rebuilt the same way and its logits are compared bit for bit with the recorded ones. Later
agents reuse (share) earlier agents' frozen components, which is what could change an
earlier model.

    .venv/bin/python benchmarks/forgetting.py --backend tensorflow
"""

import argparse
import dataclasses
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common  # noqa: E402

BACKEND = _common.select_backend()

import numpy as np  # noqa: E402

from keras_multipath.agents.multipath import MultipathOracle, multipath_config  # noqa: E402
from keras_multipath.agents.singlepath import SinglepathOracle  # noqa: E402
from keras_multipath.data import get_task, make_dataset  # noqa: E402
from keras_multipath.system import Store  # noqa: E402
from keras_multipath.system.assembly import Assembler  # noqa: E402
from keras_multipath.training.tuner import PathTuner  # noqa: E402

NUM_TEST_IMAGES = 64


@dataclasses.dataclass
class PublishedModel:
    """The published path of one agent and its model's logits right after publication.

    Attributes:
        agent_id: the agent.
        path_key: key of the agent's published path.
        components: the path's component keys.
        images: the fixed test batch, an array or a dict {resolution key: array}.
        logits: the model's logits on `images` (numpy).
    """

    agent_id: str
    path_key: str
    components: list
    images: object
    logits: np.ndarray


def rebuild_and_predict(store_dir, agent_id, images):
    """Rebuild the published path of `agent_id` from disk; return `(path, logits)`."""
    store = Store(store_dir)
    system = store.load_system()
    path = system.published_paths(agent_id)[0]
    model = Assembler(store, system).build_model(path)
    return path, np.asarray(model.predict_on_batch(images))


def fixed_test_batch(task, image_sizes):
    """Return the first `NUM_TEST_IMAGES` test images of `task` at `image_sizes` (an int, or
    a list of ints for a dict {str(size): images})."""
    batch = next(iter(make_dataset(task, "test", NUM_TEST_IMAGES, image_sizes=image_sizes)))[0]
    if isinstance(batch, dict):
        return {key: value.numpy() for key, value in batch.items()}
    return batch.numpy()


def run_cycle(oracle, task, folder):
    """Run one cycle of `oracle`'s agent on `task`; return its wall time in seconds."""
    start = time.perf_counter()
    tuner = PathTuner(oracle, task, directory=folder, project_name=oracle.agent_id)
    tuner.search(verbose=0)
    return time.perf_counter() - start


def record(store_dir, agent_id, task):
    """Rebuild `agent_id`'s newly published model and record its logits."""
    store = Store(store_dir)
    path = store.load_system().published_paths(agent_id)[0]
    images = fixed_test_batch(task, path.hparams["ds_image_size"])
    path, logits = rebuild_and_predict(store_dir, agent_id, images)
    return PublishedModel(agent_id, path.key, list(path.components), images, logits)


def check_earlier(store_dir, added, models, step):
    """Rebuild every model in `models` except `added`'s and compare its logits.

    Returns:
        A list of dicts, one per earlier model: `step`, `added` and `earlier` agent ids,
        `shared` (components of `added`'s path that are in the earlier path), `same_path`
        (the agent still publishes the recorded path), `identical` (bit-identical logits)
        and `max_abs_diff`.
    """
    new = models[added]
    checks = []
    for earlier in models.values():
        if earlier.agent_id == added:
            continue
        path, logits = rebuild_and_predict(store_dir, earlier.agent_id, earlier.images)
        identical = np.array_equal(logits, earlier.logits)
        diff = float("inf")
        if logits.shape == earlier.logits.shape:
            diff = float(np.max(np.abs(logits - earlier.logits)))
        checks.append({
            "step": step,
            "added": added,
            "earlier": earlier.agent_id,
            "shared": len(set(new.components) & set(earlier.components)),
            "same_path": path.key == earlier.path_key,
            "identical": identical,
            "max_abs_diff": diff,
        })
        print(f"step {step}, after {added}: {earlier.agent_id} ({earlier.path_key}) "
              f"bit-identical={identical}, same published path={path.key == earlier.path_key}, "
              f"max |diff|={diff:.3g}", flush=True)
    return checks


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=BACKEND, help="Keras backend (sets KERAS_BACKEND).")
    parser.add_argument("--tasks", nargs="+",
                        default=["digits", "mnist_5k", "animal_mnist", "fashion_mnist"],
                        help="Offline tasks, in the order their agents run.")
    parser.add_argument("--num-samples", type=int, default=2,
                        help="Candidates per cycle of every agent.")
    parser.add_argument("--examples-cap", type=int, default=500,
                        help="Training examples between validations (sets the step budget).")
    parser.add_argument("--no-write", action="store_true", help="Do not update RESULTS.md.")
    args = parser.parse_args()

    started = time.perf_counter()
    models, checks, cycles = {}, [], []
    with tempfile.TemporaryDirectory() as folder:
        store, config = _common.new_store(folder, args.num_samples, args.examples_cap,
                                          validation_examples=256)
        store_dir = store.root
        mp_config = multipath_config(config)
        for index, task_name in enumerate(args.tasks):
            task = get_task(task_name)
            # For the first task, only the root model could be a secondary path, so
            # multipath agents start at the second task.
            agents = [(SinglepathOracle, config)]
            if index > 0:
                agents.append((MultipathOracle, mp_config))
            for oracle_class, agent_config in agents:
                oracle = oracle_class(Store(store_dir), task_name, task.num_classes,
                                      task.num_examples("train"), agent_config, max_cycles=1,
                                      seed=0)
                seconds = run_cycle(oracle, task, folder)
                agent_id = oracle.agent_id
                model = models[agent_id] = record(store_dir, agent_id, task)
                reused = sum(1 for key in model.components if not key.startswith(agent_id + ":"))
                cycles.append((agent_id, model.path_key, seconds, reused, len(model.components)))
                print(f"{agent_id}: cycle {seconds:.0f} s, published {model.path_key} with "
                      f"{len(model.components)} components, {reused} of them other agents'",
                      flush=True)
                checks += check_earlier(store_dir, agent_id, models, len(cycles))
    wall = time.perf_counter() - started

    all_same = all(c["identical"] and c["same_path"] for c in checks)
    print(f"{BACKEND}: {len(cycles)} agent cycles, {len(checks)} checks, all bit-identical: "
          f"{all_same}, wall {wall:.0f} s")
    if args.no_write:
        return
    write_results(args, cycles, checks, wall)


def write_results(args, cycles, checks, wall):
    """Write this backend's rows of the `forgetting` section of RESULTS.md."""
    intro = f"""
## No forgetting: earlier agents' models after new agents are added

Command, once per backend: `.venv/bin/python benchmarks/forgetting.py --backend <backend>`.
Tasks, in order: {', '.join(args.tasks)}. Per task, the script runs one singlepath agent
cycle, then, from the second task on, one multipath agent cycle. The agents use the `cpu`
configuration with {args.num_samples} candidates per cycle and {args.examples_cap} training
examples between validations, on a fresh store with a random micro/4 root.

Right after each agent's cycle, its published model is rebuilt from disk with a fresh
`Store` and `Assembler` and predicts {NUM_TEST_IMAGES} fixed test images of its task, at
each of its subpaths' resolutions for a multipath model. After every later cycle (step),
each earlier model is rebuilt the same way. "bit-identical" means that its logits equal the
recorded ones bit for bit and that the agent still publishes the same path. "shared" counts
the frozen components that the added agent's path and the earlier agent's path both use.
"""
    header = ["backend", "agent added", "earlier agent", "step", "shared", "bit-identical",
              "date"]
    date = _common.utc_now()
    rows = []
    for check in checks:
        if not check["same_path"]:
            same = "no (the agent publishes another path)"
        elif not check["identical"]:
            same = f"no (max abs diff {check['max_abs_diff']:.3g})"
        else:
            same = "yes"
        rows.append([BACKEND, check["added"], check["earlier"], str(check["step"]),
                     str(check["shared"]), same, date])
    cycle_text = ", ".join(
        f"{key} ({reused} of {total} components from other agents)"
        for _, key, _, reused, total in cycles)
    notes = (f"Paths published in the latest run ({BACKEND}, {wall:.0f} s in all, in order): "
             f"{cycle_text}. Machine: {_common.machine_line()}.")
    _common.update_results("forgetting", intro, header, rows, key_columns=3, notes=notes)


if __name__ == "__main__":
    main()

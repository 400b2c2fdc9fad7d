"""No forgetting: earlier tasks' published models predict bit-identically after new tasks.

One store, a random micro/4 root, then one singlepath agent cycle per task, in order. After
each cycle, every task published so far is rebuilt from a fresh `Store` and `Assembler`
(weights read from disk) and predicts a fixed batch of its test images; the logits are
compared bit for bit with those recorded right after the task was published. Later tasks
may reuse (share) the earlier tasks' frozen components, which is what could break them.

    .venv/bin/python benchmarks/forgetting.py --backend tensorflow
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common  # noqa: E402

BACKEND = _common.select_backend()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_multipath.agents.config import get_agent_config  # noqa: E402
from keras_multipath.agents.root import publish_root, random_root  # noqa: E402
from keras_multipath.agents.singlepath import SinglepathOracle  # noqa: E402
from keras_multipath.data import get_task, make_dataset  # noqa: E402
from keras_multipath.system import Store  # noqa: E402
from keras_multipath.system.assembly import Assembler  # noqa: E402
from keras_multipath.training.tuner import PathTuner  # noqa: E402


def published_logits(store_dir, agent_id, images_by_size):
    """Rebuild the published path of `agent_id` from disk and return its logits."""
    store = Store(store_dir)
    system = store.load_system()
    path = system.published_paths(agent_id)[0]
    model = Assembler(store, system).build_model(path)
    size = int(path.hparams["ds_image_size"])
    return path.key, np.asarray(model.predict_on_batch(images_by_size(size)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=BACKEND, help="Keras backend (sets KERAS_BACKEND).")
    parser.add_argument("--tasks", nargs="+", default=["digits", "mnist_5k", "fashion_mnist"],
                        help="Offline tasks, trained in this order.")
    parser.add_argument("--num-samples", type=int, default=2, help="Candidates per cycle.")
    parser.add_argument("--examples-cap", type=int, default=500,
                        help="Training examples between validations (sets the step budget).")
    parser.add_argument("--no-write", action="store_true", help="Do not update RESULTS.md.")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    config = get_agent_config("cpu").replace(
        num_samples_per_cycle=args.num_samples,
        num_train_examples_between_validations_max=args.examples_cap,
        num_validation_examples_max=256,
    )
    recorded, checks, shared = {}, [], {}
    with tempfile.TemporaryDirectory() as folder:
        store_dir = os.path.join(folder, "store")
        publish_root(Store(store_dir), random_root(config.variant, config.root_image_size), config)
        for task_name in args.tasks:
            task = get_task(task_name)

            def images_by_size(size, task=task):
                dataset = make_dataset(task, "test", 64, image_sizes=size)
                return next(iter(dataset))[0].numpy()

            store = Store(store_dir)
            oracle = SinglepathOracle(store, task_name, task.num_classes,
                                      task.num_examples("train"), config, max_cycles=1, seed=0)
            tuner = PathTuner(oracle, task, directory=folder, project_name=task_name)
            tuner.search(verbose=0)
            agent_id = oracle.agent_id
            recorded[agent_id] = (images_by_size, *published_logits(store_dir, agent_id, images_by_size))

            system = Store(store_dir).load_system()
            path = system.published_paths(agent_id)[0]
            others = {k for a, (_, key, _) in recorded.items() if a != agent_id
                      for k in system.path(key).components}
            shared[agent_id] = len(set(path.components) & others)
            for earlier, (images, key, logits) in recorded.items():
                if earlier == agent_id:
                    continue
                key_now, logits_now = published_logits(store_dir, earlier, images)
                same = key_now == key and np.array_equal(logits_now, logits)
                checks.append((task_name, earlier, same))
                print(f"after {task_name}: {earlier} identical={same}", flush=True)
            print(f"{task_name}: path {path.key} shares {shared[agent_id]} components with "
                  f"earlier tasks", flush=True)

    all_same = all(same for _, _, same in checks)
    print(f"{len(checks)} checks, all bit-identical: {all_same}")
    if args.no_write:
        return
    intro = f"""
## No forgetting: earlier tasks' models after new tasks are added

Command: `{_common.command_line()}` (one singlepath cycle per task, `cpu` configuration
with {args.num_samples} candidates and {args.examples_cap} examples between validations).
Date: {_common.utc_now()}. After each new task, every earlier task's published model is
rebuilt from disk with a fresh `Store` and `Assembler` and predicts 64 fixed test images;
"bit-identical" compares those logits with the ones recorded when it was published.
"""
    header = ["task added", "earlier task's agent", "bit-identical"]
    rows = [[added, earlier, "yes" if same else "no"] for added, earlier, same in checks]
    notes = "Components each task's path shares with earlier tasks' paths: " + ", ".join(
        f"{agent} {count}" for agent, count in shared.items()) + f". Machine: {_common.machine_line()}."
    _common.update_results("forgetting", intro, header, rows, key_columns=2, notes=notes)


if __name__ == "__main__":
    main()

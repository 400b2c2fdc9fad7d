"""Build a small system of real tasks and run a multipath search on it.

Usage: python multipath_search.py DIRECTORY TASK NUM_SAMPLES EXAMPLES_CAP SEED [LOG]

`prepare_system` publishes (once) a random micro/4 root and one-candidate singlepath models
of `SINGLEPATH_TASKS` in DIRECTORY/store. `run` then runs one cycle of the multipath agent
of TASK. Run as a script, both happen; with LOG, every trial start is appended to that file
as "start <trial id>" and every trial end as "end <trial id>".
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
from singlepath_search import LoggingTuner, make_config  # noqa: E402
from singlepath_search import run as run_singlepath  # noqa: E402

from keras_multipath.agents.multipath import MultipathOracle, multipath_config  # noqa: E402
from keras_multipath.data import get_task  # noqa: E402
from keras_multipath.system import Store  # noqa: E402

SINGLEPATH_TASKS = ("digits", "mnist_5k")


def prepare_system(directory, tasks=SINGLEPATH_TASKS, examples_cap=64):
    """Publish the root model and one singlepath model per task (skipped when published)."""
    store = Store(os.path.join(directory, "store"))
    for task_name in tasks:
        state = store.read_state(f"singlepath~{task_name}", include_intermediate=False)
        if state is None or not state.published:
            run_singlepath(directory, task_name, num_samples=1, examples_cap=examples_cap, seed=1)
    return store


def make_multipath_config(num_samples, examples_cap, **overrides):
    return multipath_config(make_config(num_samples, examples_cap), **overrides)


def run(directory, task_name, num_samples, examples_cap, seed, log=None, max_cycles=1,
        tuner_class=None, **config_overrides):
    """Run the multipath agent of `task_name`; return `(store, oracle, tuner)`."""
    keras.utils.set_random_seed(0)
    config = make_multipath_config(num_samples, examples_cap, **config_overrides)
    store = Store(os.path.join(directory, "store"))
    task = get_task(task_name)
    oracle = MultipathOracle(
        store, task_name, task.num_classes, task.num_examples("train"), config,
        max_cycles=max_cycles, seed=seed,
    )
    tuner = (tuner_class or LoggingTuner)(oracle, task, directory=directory, project_name=f"multipath_{task_name}")
    tuner.log = log
    tuner.search(verbose=0)
    return store, oracle, tuner


if __name__ == "__main__":
    directory, task_name, num_samples, cap, seed = sys.argv[1:6]
    prepare_system(directory)
    run(directory, task_name, int(num_samples), int(cap), int(seed),
        log=sys.argv[6] if len(sys.argv) > 6 else None)

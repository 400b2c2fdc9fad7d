"""Run one singlepath search; used by the resume test as a separate process.

Usage: python singlepath_search.py DIRECTORY TASK NUM_SAMPLES EXAMPLES_CAP SEED [LOG]

Creates (once) a random micro/4 root in DIRECTORY/store, then runs one cycle of the agent of
TASK with the `cpu` configuration. With LOG, every trial start is appended to that file as
"start <trial id>" and every trial end as "end <trial id>".
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402

from keras_multipath.agents.config import get_agent_config  # noqa: E402
from keras_multipath.agents.root import publish_root, random_root  # noqa: E402
from keras_multipath.agents.singlepath import SinglepathOracle  # noqa: E402
from keras_multipath.data import get_task  # noqa: E402
from keras_multipath.system import Store  # noqa: E402
from keras_multipath.training.tuner import PathTuner  # noqa: E402


def make_config(num_samples, examples_cap):
    return get_agent_config("cpu").replace(
        num_samples_per_cycle=num_samples,
        num_train_examples_between_validations_max=examples_cap,
        num_validation_examples_max=256,
    )


class LoggingTuner(PathTuner):
    log = None

    def run_trial(self, trial, *args, **kwargs):
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"start {trial.trial_id}\n")
        result = super().run_trial(trial, *args, **kwargs)
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"end {trial.trial_id}\n")
        return result


def run(directory, task_name, num_samples, examples_cap, seed, log=None, max_cycles=1):
    keras.utils.set_random_seed(0)
    config = make_config(num_samples, examples_cap)
    store = Store(os.path.join(directory, "store"))
    publish_root(store, random_root(config.variant, config.root_image_size), config)
    task = get_task(task_name)
    oracle = SinglepathOracle(
        store, task_name, task.num_classes, task.num_examples("train"), config,
        max_cycles=max_cycles, seed=seed,
    )
    tuner = LoggingTuner(oracle, task, directory=directory, project_name=task_name)
    tuner.log = log
    tuner.search(verbose=0)
    return store, oracle, tuner


if __name__ == "__main__":
    directory, task_name, num_samples, cap, seed = sys.argv[1:6]
    run(directory, task_name, int(num_samples), int(cap), int(seed),
        log=sys.argv[6] if len(sys.argv) > 6 else None)

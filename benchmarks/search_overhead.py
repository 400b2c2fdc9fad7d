"""Wall time of a singlepath agent cycle against its candidates' pure training and evaluation.

Runs one cycle of the singlepath agent (`SinglepathOracle` + `PathTuner`, the `cpu`
configuration) on an offline task with a fresh store and a random micro/4 root. Every call
of `keras.Model.fit` and `keras.Model.evaluate` in the process is timed (training with its
per-validation evaluations, and the end-of-cycle test evaluation), and the cycle's wall
time, from `tuner.search` to its return, is compared with their sum. The difference is the
search's own cost: candidate sampling, model assembly, input pipelines, snapshots, staging,
publishing and state saves.

    .venv/bin/python benchmarks/search_overhead.py --backend jax
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common  # noqa: E402

BACKEND = _common.select_backend()

import keras  # noqa: E402

from keras_multipath.agents.singlepath import SinglepathOracle  # noqa: E402
from keras_multipath.data import get_task  # noqa: E402
from keras_multipath.training.tuner import PathTuner  # noqa: E402


class _Timer:
    """Accumulate the wall time spent inside wrapped methods.

    A call made inside another timed call (`fit` runs its validations through `evaluate`)
    counts only in the outer one.
    """

    def __init__(self):
        self.seconds = {}
        self.depth = 0

    def wrap(self, owner, name):
        original = getattr(owner, name)
        timer = self

        def timed(*args, **kwargs):
            start = time.perf_counter()
            timer.depth += 1
            try:
                return original(*args, **kwargs)
            finally:
                timer.depth -= 1
                if timer.depth == 0:
                    elapsed = time.perf_counter() - start
                    timer.seconds[name] = timer.seconds.get(name, 0.0) + elapsed

        setattr(owner, name, timed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=BACKEND, help="Keras backend (sets KERAS_BACKEND).")
    parser.add_argument("--task", default="digits", help="Offline task name.")
    parser.add_argument("--num-samples", type=int, default=4, help="Candidates per cycle.")
    parser.add_argument("--examples-cap", type=int, default=2000,
                        help="Training examples between validations (sets the step budget).")
    parser.add_argument("--no-write", action="store_true", help="Do not update RESULTS.md.")
    args = parser.parse_args()

    timer = _Timer()
    with tempfile.TemporaryDirectory() as folder:
        store, config = _common.new_store(folder, args.num_samples, args.examples_cap,
                                          validation_examples=500)
        task = get_task(args.task)
        oracle = SinglepathOracle(store, args.task, task.num_classes, task.num_examples("train"),
                                  config, max_cycles=1, seed=0)
        tuner = PathTuner(oracle, task, directory=folder, project_name=args.task)
        timer.wrap(keras.Model, "fit")
        timer.wrap(keras.Model, "evaluate")
        start = time.perf_counter()
        tuner.search(verbose=0)
        wall = time.perf_counter() - start
        trials = len(oracle.trials)
        num_train = task.num_examples("train")
        between = config.steps_between_validations(num_train)
        validations = config.total_steps(num_train) // between
    pure = timer.seconds.get("fit", 0.0) + timer.seconds.get("evaluate", 0.0)
    ratio = wall / pure
    print(f"{BACKEND}: {trials} trials, cycle wall {wall:.1f} s, fit {timer.seconds.get('fit', 0):.1f}"
          f" s, evaluate {timer.seconds.get('evaluate', 0):.1f} s, wall / (fit + evaluate) "
          f"{ratio:.3f}")
    if args.no_write:
        return
    intro = f"""
## Search overhead of a singlepath agent cycle

Command, once per backend: `.venv/bin/python benchmarks/search_overhead.py --backend
<backend>` (defaults: task digits, `cpu` configuration (micro/4 at 8-24 px, batch 32) with
{args.num_samples} candidates of {validations} x {between} steps, 500 validation examples,
fresh store with a random root).

"pure" is the time spent inside `keras.Model.fit` (training and its validations, first-call
compilation included) and, outside `fit`, `keras.Model.evaluate` (the test evaluation of the
cycle's best path); the wall time covers the whole `tuner.search` call of one cycle.
"""
    header = ["backend", "task", "candidates", "cycle wall s", "fit s", "evaluate s",
              "wall / pure", "date", "load average"]
    row = [BACKEND, args.task, str(trials), f"{wall:.1f}", f"{timer.seconds.get('fit', 0):.1f}",
           f"{timer.seconds.get('evaluate', 0):.1f}", f"{ratio:.3f}", _common.utc_now(),
           _common.load_average()]
    notes = f"Machine: {_common.machine_line()}."
    _common.update_results("search_overhead", intro, header, [row], key_columns=2, notes=notes)


if __name__ == "__main__":
    main()

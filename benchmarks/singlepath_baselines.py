"""Singlepath agent against fine-tuning the root with a head and against keras-tuner.

Per seed, on one offline task (default `mnist_5k`: 4,000 / 500 / 500 images, 10 classes,
the split fixed across seeds) with the `cpu` agent configuration (micro/4 ViT, batch 32,
16 px root, image sizes 8 to 24):

1. Root. A micro/4 ViT with a 10-class head is trained on another offline task (default
   `fashion_mnist`, 16 px, `--root-steps` Adam steps at learning rate 1e-3, batch 64). Its
   head is dropped, and the rest is published as the root model of a fresh store
   (`--random-root` publishes an untrained root instead). All methods start from this root.
2. Singlepath agent: `--cycles` cycles (default 1) of `SinglepathOracle` + `PathTuner`,
   with `--num-samples` candidates per cycle, each trained for 4 validations x
   `ceil(min(train, cap) / 32)` steps. The budget is B = the sum of its candidates'
   `total_steps` (a candidate whose loss became non-finite is counted in full) and N = its
   number of candidates. Its test accuracy is the one the agent records for the path it
   publishes.
3. Root + head: every root component cloned and trained with a new zero-initialised head.
   It uses the root path's hyperparameters, which are the `cpu` defaults (SGD, learning
   rate 0.02 with warm-up and cosine decay, momentum 0.8, Nesterov, no augmentation, 16 px,
   2 blocks). One row trains for B steps, a second row for the steps of one candidate. A
   third row trains for B steps only the root components that the agent's published path
   trained and keeps the components it shares frozen, which separates the cost of freezing
   from the cost of splitting B over candidates. Validation runs every
   `steps_between_validations` steps as in a candidate, and the best validation snapshot
   is tested.
4. keras-tuner `RandomSearch` with a `HyperModel` that builds the same root + head model.
   Its space is the agent's mutation grids (`config.hparams_grids` without the mutation
   probabilities: learning rate, warm-up, momentum, Nesterov, image size, number of root
   blocks kept, the eight augmentations) plus one boolean per root component, trained or
   frozen, the counterpart of the agent's clone or share choice. `encoder_norm` and the
   head are always trained, as in the agent, and a position embedding resampled to another
   image size is always trained, as the agent's `resample` action is. Batch size is fixed
   at 32 in every method because the agent does not mutate it. `max_trials = N`, each
   trial trained for one candidate's steps (so N x those steps = B in total), selection by
   the best validation accuracy over the trial's validations (keras-tuner's best-epoch
   checkpoint), and the best trial's checkpoint is tested.

The test split is the task's whole test split in every method. Wall times cover training,
validation, model building and the test evaluation of each method. The root training is
shared by all methods, so its time is only printed per seed, with each agent candidate's
parent, trained components and hyperparameters.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/singlepath_baselines.py --backend tensorflow --seeds 5
    .venv/bin/python benchmarks/singlepath_baselines.py --backend jax --seeds 1 --quick --no-write
"""

import argparse
import json
import os
import sys
import tempfile
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common  # noqa: E402

BACKEND = _common.select_backend()

import keras  # noqa: E402
import keras_tuner  # noqa: E402
import numpy as np  # noqa: E402

from keras_multipath.agents import hparams as hp_lib  # noqa: E402
from keras_multipath.agents.config import get_agent_config  # noqa: E402
from keras_multipath.agents.root import (  # noqa: E402
    ROOT_TASK_CHECKPOINT,
    RootModel,
    build_vit_components,
    publish_root,
    random_root,
)
from keras_multipath.agents.singlepath import CANDIDATE_VALUE, SinglepathOracle  # noqa: E402
from keras_multipath.data import get_task, make_dataset  # noqa: E402
from keras_multipath.layers.variants import get_variant  # noqa: E402
from keras_multipath.layers.vit import (  # noqa: E402
    apply_vit_components,
    resample_position_embedding,
)
from keras_multipath.system import Store  # noqa: E402
from keras_multipath.training.schedule import make_optimizer  # noqa: E402
from keras_multipath.training.tuner import PathTuner  # noqa: E402

AGENT = "singlepath agent"
ROOT_HEAD_B = "root + head, B steps"
ROOT_HEAD_ONE = "root + head, one candidate's steps"
ROOT_HEAD_FROZEN = "root + head, B steps, the agent's shared components frozen"
RANDOM_SEARCH = "keras-tuner RandomSearch, N trials"
METHODS = (AGENT, ROOT_HEAD_B, ROOT_HEAD_ONE, ROOT_HEAD_FROZEN, RANDOM_SEARCH)


# ------------------------------------------------------------------------------------------
# Root model.


def train_root(config, task_name, steps, seed):
    """Train a micro/4 ViT with a head on `task_name` and return it headless as a root."""
    task = get_task(task_name)
    size = config.root_image_size
    components = build_vit_components(config.variant, size, task.num_classes)
    inputs = keras.Input((size, size, 3))
    model = keras.Model(inputs, apply_vit_components(components, inputs))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    train = make_dataset(task, "train", 64, image_sizes=size, seed=seed)
    model.fit(train, epochs=1, steps_per_epoch=steps, verbose=0)
    test = make_dataset(task, "test", 500, image_sizes=size)
    accuracy = float(model.evaluate(test, verbose=0, return_dict=True)["accuracy"])
    components.pop("head")
    position = keras.ops.convert_to_numpy(components["posembed_input"].embeddings)
    root = RootModel(
        variant=get_variant(config.variant),
        image_size=(size, size),
        components=components,
        task_name=ROOT_TASK_CHECKPOINT,
        source_position_embedding=position,
        source_grid_size=tuple(components["posembed_input"].grid_size),
    )
    return root, accuracy


def root_weights(root):
    """Return {component name: list of numpy weights} of a root model."""
    return {
        name: [np.array(keras.ops.convert_to_numpy(w)) for w in layer.weights]
        for name, layer in root.components.items()
    }


def build_root_head_model(root, weights, image_size, num_layers, num_classes, trained):
    """Build root components (the first `num_layers` blocks) + a zero head at `image_size`.

    `trained` maps a component name to whether it trains, and missing names train. The
    position embedding is the root's, resampled to the patch grid of `image_size` (trained
    whenever the grid differs, like the agent's `resample` action).
    """
    components = build_vit_components(root.variant, image_size, num_classes, num_layers)
    for name, layer in components.items():
        if name == "head":
            continue
        if name == "posembed_input":
            grid = tuple(layer.grid_size)
            layer.set_weights([resample_position_embedding(
                root.source_position_embedding, grid, root.source_grid_size)])
            layer.trainable = trained.get(name, True) or grid != tuple(root.source_grid_size)
            continue
        layer.set_weights(weights[name])
        layer.trainable = trained.get(name, True)
    inputs = keras.Input((image_size, image_size, 3))
    return keras.Model(inputs, apply_vit_components(components, inputs))


def compile_model(model, hparams, total_steps):
    model.compile(
        optimizer=make_optimizer(hparams, total_steps),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )


def count_trained_parameters(model):
    return int(sum(np.prod(weight.shape) for weight in model.trainable_weights))


def evaluate_test_accuracy(model, task, config, image_size):
    test = make_dataset(task, "test", config.batch_size, image_sizes=int(image_size))
    return float(model.evaluate(test, verbose=0, return_dict=True)["accuracy"])


def training_data(task, config, hparams, seed):
    size = int(hparams["ds_image_size"])
    train = make_dataset(task, "train", config.batch_size, image_sizes=size, ds_hparams=hparams,
                         seed=seed)
    validation = make_dataset(task, "validation", config.batch_size, image_sizes=size,
                              max_validation_examples=config.num_validation_examples_max)
    return train, validation


# ------------------------------------------------------------------------------------------
# Singlepath agent.


def agent_candidates(oracle, config, seed):
    """Print each candidate of the agent; return (candidate dicts, validation accuracies)."""
    candidates, lines, qualities = [], [], []
    for trial in oracle.trials.values():
        if CANDIDATE_VALUE not in trial.hyperparameters.values:
            continue
        candidate = json.loads(trial.hyperparameters.values[CANDIDATE_VALUE])
        candidates.append(candidate)
        trained = [e["name"] for e in candidate["components"] if e["action"] != "share"]
        changed = {key: value for key, value in candidate["hparams"].items()
                   if key in config.hparams_defaults and not key.startswith(hp_lib.MU_KEY)
                   and value != config.hparams_defaults[key]}
        quality = (trial.metrics.get_last_value("quality")
                   if trial.metrics.exists("quality") else float("nan"))
        qualities.append(float(quality))
        lines.append(f"  {candidate['path_key']} from {candidate['parent']}: validation "
                     f"{quality:.4f}, trains {trained}, hparams off default {changed}")
    print(f"seed {seed}: agent candidates\n" + "\n".join(lines), flush=True)
    return candidates, qualities


def run_agent(store_dir, folder, task, config, cycles, seed):
    """Run the agent's cycles; return (test accuracy, steps, candidates, summary dict)."""
    store = Store(store_dir)
    oracle = SinglepathOracle(store, task.name, task.num_classes, task.num_examples("train"),
                              config, max_cycles=cycles, seed=seed)
    tuner = PathTuner(oracle, task, directory=folder, project_name=f"agent_{seed}")
    tuner.search(verbose=0)
    candidates, qualities = agent_candidates(oracle, config, seed)
    steps = sum(int(candidate["total_steps"]) for candidate in candidates)

    system = Store(store_dir).load_system()
    path = system.published_paths(oracle.agent_id)[0]
    own_keys = [key for key in path.components if key.startswith(oracle.agent_id + ":")]
    own = [system.component(key).name for key in own_keys]

    # Steps that went into the published model: its own and its ancestors' within the agent.
    by_key = {candidate["path_key"]: candidate for candidate in candidates}
    lineage_steps, key = 0, path.key
    while key in by_key:
        lineage_steps += int(by_key[key]["total_steps"])
        key = by_key[key]["parent"]

    summary = {
        "path": path.key,
        "trained components": own,
        "shared components": len(path.components) - len(own),
        "trained parameters": sum(system.component(key).num_params for key in own_keys),
        "lineage steps": lineage_steps,
        "candidate validation": qualities,
        "validation accuracy": path.metrics.get("quality"),
        "opt_lr": path.hparams["opt_lr"],
        "ds_image_size": path.hparams["ds_image_size"],
        "num_layers": path.hparams["num_layers"],
    }
    return float(path.metrics["test_quality"]), steps, len(candidates), summary


# ------------------------------------------------------------------------------------------
# Root + head.


class _BestSnapshot(keras.callbacks.Callback):
    """Keep the weights of the epoch with the strictly best validation accuracy."""

    def __init__(self):
        super().__init__()
        self.best = -np.inf
        self.weights = None

    def on_epoch_end(self, epoch, logs=None):
        accuracy = float((logs or {}).get("val_accuracy", np.nan))
        if accuracy > self.best:
            self.best = accuracy
            self.weights = [np.array(w) for w in self.model.get_weights()]


def run_root_head(root, weights, task, config, hparams, total_steps, seed, trained):
    """Train root + new head for `total_steps`; return (test accuracy, trained parameters).

    `trained` maps a root component name to whether it trains (see
    `build_root_head_model`), and an empty dict trains every component.
    """
    steps = config.steps_between_validations(task.num_examples("train"))
    size = int(hparams["ds_image_size"])
    model = build_root_head_model(root, weights, size, int(hparams["num_layers"]),
                                  task.num_classes, trained)
    compile_model(model, hparams, total_steps)
    train, validation = training_data(task, config, hparams, seed)
    snapshot = _BestSnapshot()
    model.fit(train, epochs=max(1, total_steps // steps), steps_per_epoch=steps,
              validation_data=validation, callbacks=[snapshot], verbose=0)
    if snapshot.weights is not None:
        model.set_weights(snapshot.weights)
    return evaluate_test_accuracy(model, task, config, size), count_trained_parameters(model)


# ------------------------------------------------------------------------------------------
# keras-tuner RandomSearch.


class RootHeadHyperModel(keras_tuner.HyperModel):
    """Root + head over the agent's mutation grids and per-component train/freeze choices."""

    def __init__(self, root, weights, task, config, trial_steps, seed):
        super().__init__(name="root_head")
        self.root, self.weights, self.task, self.config = root, weights, task, config
        self.trial_steps = trial_steps
        self.steps = config.steps_between_validations(task.num_examples("train"))
        self.seed = seed

    def hparams(self, hp):
        """Register the space in `hp` and return the trial's values as agent hparams."""
        values = {}
        for key, grid in sorted(self.config.hparams_grids.items()):
            if key == hp_lib.MU_KEY:
                continue
            if all(isinstance(value, bool) for value in grid):
                values[key] = hp.Boolean(key)
            else:
                values[key] = hp.Choice(key, list(grid))
        values["opt_lr_schedule"] = self.config.hparams_defaults.get("opt_lr_schedule", "cosine")
        trained = {}
        for name in self.root.components:
            forced = hp_lib.CLONE_PREFIX + name in self.config.force_mutations
            trained[name] = True if forced else hp.Boolean(f"train_{name}")
        return values, trained

    def build(self, hp):
        values, trained = self.hparams(hp)
        model = build_root_head_model(self.root, self.weights, int(values["ds_image_size"]),
                                      int(values["num_layers"]), self.task.num_classes, trained)
        compile_model(model, values, self.trial_steps)
        return model

    def fit(self, hp, model, *args, **kwargs):
        values, _ = self.hparams(hp)
        train, validation = training_data(self.task, self.config, values, self.seed)
        return model.fit(train, epochs=max(1, self.trial_steps // self.steps),
                         steps_per_epoch=self.steps, validation_data=validation, **kwargs)


def run_random_search(root, weights, task, config, max_trials, trial_steps, folder, seed):
    """Run the search and test the best trial's checkpoint; return a dict of results."""
    hypermodel = RootHeadHyperModel(root, weights, task, config, trial_steps, seed)
    tuner = keras_tuner.RandomSearch(
        hypermodel,
        objective=keras_tuner.Objective("val_accuracy", "max"),
        max_trials=max_trials,
        seed=seed,
        directory=folder,
        project_name=f"random_search_{seed}",
        max_consecutive_failed_trials=max_trials,
    )
    tuner.search(verbose=0)
    best_trial = tuner.oracle.get_best_trials(1)[0]
    model = tuner.get_best_models(1)[0]
    values = best_trial.hyperparameters.values
    accuracy = evaluate_test_accuracy(model, task, config, values["ds_image_size"])
    return {
        "test accuracy": accuracy,
        "validation accuracy": float(best_trial.score),
        "values": values,
        "trials": len(tuner.oracle.trials),
        "trial validation": [float(trial.score) for trial in tuner.oracle.trials.values()
                             if trial.score is not None],
        "trained parameters": count_trained_parameters(model),
    }


# ------------------------------------------------------------------------------------------
# Driver.


def run_seed(args, config, task, seed):
    """Run every method from one root; return a dict of per-method and agent measurements."""
    accuracy, seconds, steps, params = {}, {}, {}, {}
    with tempfile.TemporaryDirectory() as folder:
        keras.utils.set_random_seed(seed)
        start = time.perf_counter()
        if args.random_root:
            root = random_root(config.variant, config.root_image_size)
            root_accuracy = float("nan")
        else:
            root, root_accuracy = train_root(config, args.root_task, args.root_steps, seed)
        root_seconds = time.perf_counter() - start
        weights = root_weights(root)
        store_dir = os.path.join(folder, "store")
        root_path = publish_root(Store(store_dir), root, config)

        keras.utils.set_random_seed(seed)
        start = time.perf_counter()
        accuracy[AGENT], budget, num_candidates, summary = run_agent(
            store_dir, folder, task, config, args.cycles, seed)
        seconds[AGENT] = time.perf_counter() - start
        steps[AGENT] = budget
        params[AGENT] = summary["trained parameters"]
        one_candidate = config.total_steps(task.num_examples("train"))

        hparams = dict(root_path.hparams, num_classes=task.num_classes)
        agent_trained = {name: name in summary["trained components"] for name in root.components}
        for method, total, trained in ((ROOT_HEAD_B, budget, {}),
                                       (ROOT_HEAD_ONE, one_candidate, {}),
                                       (ROOT_HEAD_FROZEN, budget, agent_trained)):
            keras.utils.set_random_seed(seed)
            start = time.perf_counter()
            accuracy[method], params[method] = run_root_head(
                root, weights, task, config, hparams, total, seed, trained)
            seconds[method] = time.perf_counter() - start
            steps[method] = total

        keras.utils.set_random_seed(seed)
        start = time.perf_counter()
        search = run_random_search(root, weights, task, config, num_candidates, one_candidate,
                                   folder, seed)
        seconds[RANDOM_SEARCH] = time.perf_counter() - start
        accuracy[RANDOM_SEARCH] = search["test accuracy"]
        steps[RANDOM_SEARCH] = search["trials"] * one_candidate
        params[RANDOM_SEARCH] = search["trained parameters"]

    print(f"seed {seed}: root test accuracy on {args.root_task} {root_accuracy:.4f} "
          f"({root_seconds:.0f} s); agent budget B={budget} steps over N={num_candidates} "
          f"candidates; agent published {summary}; RandomSearch best trial validation "
          f"{search['validation accuracy']:.4f} with {search['values']}", flush=True)
    print(f"seed {seed}: " + ", ".join(
        f"{m} {accuracy[m]:.4f} ({steps[m]} steps, {params[m]} trained parameters, "
        f"{seconds[m]:.0f} s)" for m in METHODS), flush=True)
    return {"accuracy": accuracy, "seconds": seconds, "steps": steps, "params": params,
            "root accuracy": root_accuracy,
            "agent": summary, "search values": search["values"],
            "search trial validation": search["trial validation"]}


def sample_std(values):
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def summarize(per_seed):
    """Return {method: dict of mean/std statistics over seeds} and the per-seed arrays."""
    stats = {}
    baseline = np.array([seed["accuracy"][ROOT_HEAD_B] for seed in per_seed])
    for method in METHODS:
        values = np.array([seed["accuracy"][method] for seed in per_seed])
        stats[method] = {
            "values": values,
            "mean": float(values.mean()),
            "std": sample_std(values),
            "diff mean": float((values - baseline).mean()),
            "diff std": sample_std(values - baseline),
            "steps": float(np.mean([seed["steps"][method] for seed in per_seed])),
            "params": float(np.mean([seed["params"][method] for seed in per_seed])),
            "seconds": float(np.mean([seed["seconds"][method] for seed in per_seed])),
        }
    return stats


def reflow(markdown, width=92):
    """Rewrap each paragraph of `markdown` to `width` columns; headings stay as they are."""
    paragraphs = []
    for paragraph in markdown.strip().split("\n\n"):
        if paragraph.startswith("#"):
            paragraphs.append(paragraph)
        else:
            paragraphs.append(textwrap.fill(" ".join(paragraph.split()), width,
                                            break_on_hyphens=False, break_long_words=False))
    return "\n\n".join(paragraphs)


def findings(stats, per_seed, config, cycles):
    """Return the notes below the table: what the measurements show, computed from them."""
    agent, full, short = stats[AGENT], stats[ROOT_HEAD_B], stats[ROOT_HEAD_ONE]
    frozen, search = stats[ROOT_HEAD_FROZEN], stats[RANDOM_SEARCH]
    freezing = full["values"] - frozen["values"]
    splitting = frozen["values"] - agent["values"]
    lineage = np.mean([seed["agent"]["lineage steps"] for seed in per_seed])
    wins = int(np.sum(agent["values"] > full["values"]))
    verdict = "beats" if agent["diff mean"] > 0 else "does not beat"
    steep = (", so accuracy still grows fast with steps and one training run over the whole "
             "budget is hard to beat" if full["mean"] - short["mean"] > 0.05 else "")
    learning_rates = [seed["search values"]["opt_lr"] for seed in per_seed]
    scope = "One cycle on one task does" if cycles == 1 else f"{cycles} cycles on one task do"
    cause = (
        "Both parts follow from how the method spends a budget, not from a defect found in "
        f"the code. {scope} not measure what the method gains from: "
        "reusing frozen components across tasks, fewer trained and accounted parameters, and "
        "hyperparameters that keep evolving over many cycles."
        if agent["diff mean"] < 0 else ""
    )
    agent_validation = [q for seed in per_seed for q in seed["agent"]["candidate validation"]]
    search_validation = [q for seed in per_seed for q in seed["search trial validation"]]
    grids = config.hparams_grids
    lr_grid = grids["opt_lr"]
    return reflow(f"""
The agent {verdict} fine-tuning the root with a head for the same {full['steps']:.0f} steps
({agent['diff mean']:+.4f} +- {agent['diff std']:.4f}, higher in {wins} of {len(per_seed)}
seeds), while the model it publishes trains {agent['params']:.0f} parameters on average
against {full['params']:.0f}. It beats root + head trained for one candidate's steps by
{agent['mean'] - short['mean']:+.4f}, and keras-tuner's RandomSearch by
{agent['mean'] - search['mean']:+.4f}.

Decomposition, from the per-seed output: root + head reaches {short['mean']:.4f} after
{short['steps']:.0f} steps and {full['mean']:.4f} after {full['steps']:.0f}{steep}. Freezing
the components the agent shares, with the same steps, changes root + head's test accuracy
by {-freezing.mean():+.4f} +- {sample_std(freezing):.4f}. Spending those steps on
{agent['steps'] / short['steps']:.0f} candidates instead of one run changes it by a further
{-splitting.mean():+.4f} +- {sample_std(splitting):.4f}: each candidate restarts the
warm-up and cosine schedule, a candidate that does not improve on its parent is discarded,
and the published model's lineage received {lineage:.0f} of the {agent['steps']:.0f} steps
on average. {cause}

RandomSearch draws each hyperparameter uniformly from the agent's grids ({len(lr_grid)}
learning rates from {min(lr_grid)} to {max(lr_grid)}, crops down to
{min(grids['ds_area_range_min']):.0%} of the area, colour changes up to
{max(grids['ds_brightness_delta'])}, each root component frozen with probability 1/2),
while the agent starts from the defaults and mutates one grid step at a time. The median
best validation accuracy of a RandomSearch trial is {np.nanmedian(search_validation):.4f},
against {np.nanmedian(agent_validation):.4f} for an agent candidate; the best trials'
learning rates were {learning_rates}. "training steps" are per seed, and "trained
parameters" (mean over seeds) counts the weights the tested model trained.
""")


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=BACKEND, help="Keras backend (sets KERAS_BACKEND).")
    parser.add_argument("--task", default="mnist_5k", help="Offline task of the compared methods.")
    parser.add_argument("--root-task", default="fashion_mnist",
                        help="Offline task the root model is trained on.")
    parser.add_argument("--root-steps", type=int, default=600,
                        help="Adam steps (batch 64) of the root training.")
    parser.add_argument("--random-root", action="store_true",
                        help="Publish an untrained root instead of training one.")
    parser.add_argument("--seeds", type=int, default=5, help="Number of seeds (0, 1, ...).")
    parser.add_argument("--num-samples", type=int, default=4, help="Agent candidates per cycle.")
    parser.add_argument("--cycles", type=int, default=1, help="Agent cycles.")
    parser.add_argument("--examples-cap", type=int, default=2000,
                        help="Training examples between validations (sets the step budget).")
    parser.add_argument("--quick", action="store_true",
                        help="Tiny budgets (2 candidates of 4 x 5 steps, 50 root steps) to "
                             "check that the script runs.")
    parser.add_argument("--no-write", action="store_true", help="Do not update RESULTS.md.")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1. Received: {args.seeds}")
    if args.cycles < 1:
        parser.error(f"--cycles must be at least 1. Received: {args.cycles}")
    if args.quick:
        args.num_samples, args.examples_cap, args.root_steps = 2, 160, 50
    return args


def main():
    args = parse_arguments()
    config = get_agent_config("cpu").replace(
        num_samples_per_cycle=args.num_samples,
        num_train_examples_between_validations_max=args.examples_cap,
    )
    task = get_task(args.task)
    started = time.perf_counter()
    per_seed = [run_seed(args, config, task, seed) for seed in range(args.seeds)]
    total_minutes = (time.perf_counter() - started) / 60

    stats = summarize(per_seed)
    rows = []
    for method in METHODS:
        entry = stats[method]
        rows.append([BACKEND, args.task, method, str(args.seeds), f"{entry['mean']:.4f}",
                     f"{entry['std']:.4f}", f"{entry['diff mean']:+.4f}",
                     f"{entry['diff std']:.4f}", f"{entry['steps']:.0f}",
                     f"{entry['params']:,.0f}", f"{entry['seconds']:.0f}", _common.utc_now()])
        print(f"{method}: {entry['mean']:.4f} +- {entry['std']:.4f} (vs {ROOT_HEAD_B} "
              f"{entry['diff mean']:+.4f} +- {entry['diff std']:.4f}); {entry['steps']:.0f} steps, "
              f"{entry['params']:.0f} trained parameters, {entry['seconds']:.0f} s per seed")
    notes = findings(stats, per_seed, config, args.cycles)
    print(notes)
    print(f"total {total_minutes:.1f} minutes")
    if not args.no_write:
        write_results(args, config, task, per_seed, rows, notes, total_minutes)


def write_results(args, config, task, per_seed, rows, notes, total_minutes):
    """Write the section `singlepath_baselines` of RESULTS.md."""
    root_line = (
        "an untrained (random) micro/4 root" if args.random_root else
        f"a micro/4 root trained for {args.root_steps} Adam steps (batch 64, 16 px) on "
        f"{args.root_task} (test accuracy there "
        f"{np.mean([seed['root accuracy'] for seed in per_seed]):.4f} on average), head dropped"
    )
    grids = config.hparams_grids
    candidate_steps = config.total_steps(task.num_examples("train"))
    intro = reflow(f"""
## Singlepath agent against root + head and keras-tuner RandomSearch

Command: `{_common.command_line()}`. Date: {_common.utc_now()}. Backend: {BACKEND}.
Total time {total_minutes:.1f} minutes for {args.seeds} seeds.

Task {args.task} ({task.num_examples('train')} / {task.num_examples('validation')} /
{task.num_examples('test')} images, the split fixed across seeds 0..{args.seeds - 1}) with
the `cpu` agent configuration (micro/4, batch 32). For each seed, every method starts from
the same root: {root_line}. The agent runs {args.cycles} cycle(s) of {args.num_samples}
candidates of {candidate_steps} steps, with a validation every
{config.steps_between_validations(task.num_examples('train'))} steps. B is the sum of its
candidates' steps and N the number of its candidates. "root + head" trains every root
component and a new zero head with the root path's hyperparameters (the `cpu` defaults),
for B steps or for one candidate's steps, and tests the best validation snapshot. The row
"the agent's shared components frozen" trains, with the same defaults and B steps, only the
components that the agent's published path trained, and keeps the others frozen as the
agent shares them. keras-tuner {keras_tuner.__version__} `RandomSearch` samples the agent's
mutation grids (learning rate, warm-up, momentum, Nesterov, image size
{min(grids['ds_image_size'])}-{max(grids['ds_image_size'])}, root blocks kept
{min(grids['num_layers'])}-{max(grids['num_layers'])}, eight augmentations) and one
train-or-freeze boolean per root component. It runs N trials of one candidate's steps and
tests the best trial's best-epoch checkpoint. Test accuracy is measured on the whole test
split and given as mean and sample standard deviation over seeds. "diff" is the difference
to root + head with B steps within each seed. Steps and wall time are per seed, and the
agent's wall time includes its store writes and test evaluation. Details in the script's docstring.
""")
    header = ["backend", "task", "method", "seeds", "test accuracy mean", "std",
              "diff to root + head (B) mean", "diff std", "training steps",
              "trained parameters", "wall s", "date"]
    notes = notes + f"\n\nMachine: {_common.machine_line()}."
    _common.update_results("singlepath_baselines", intro, header, rows, key_columns=3,
                           notes=notes)


if __name__ == "__main__":
    main()

"""Run one agent on one task against a store: root model, oracle, tuner, progress and logs.

`run_agent` is what the `keras-multipath run` command and the main job's agent processes
call. It creates the random root model when the store has none, continues the agent from
its latest state for `cycles` more cycles, and returns the paths the agent publishes.

The keras-tuner project of the agent (oracle and trial folders, TensorBoard logs, and the
`trials.jsonl` record of every trial's score) lives in ``<work_dir>/<agent id>/``. The work
folder defaults to ``<store>-trials`` beside the store, because the store root may contain
agent namespaces only. NOTE: `trials.jsonl` is written with `open`, so the work folder must
be a local or mounted folder even when the store is a ``gs://`` URL.

Multi-machine search: when ``KERASTUNER_ORACLE_IP``, ``KERASTUNER_ORACLE_PORT`` and
``KERASTUNER_TUNER_ID`` are set, keras-tuner runs the oracle in the process whose tuner id
contains "chief" and the trials in the other processes (workers). Every process must see the
same store and the same work folder (shared storage), because workers stage the weights of
improved candidates in their trial folders and the chief publishes them.
"""

import json
import os
import time

from absl import logging

from keras_multipath.data.registry import FOLDER_PREFIX, TFDS_PREFIX
from keras_multipath.system import Store, make_agent_id

AGENT_KINDS = ("singlepath", "multipath")
TRIALS_FILE = "trials.jsonl"
_IDLE_WAIT_SECONDS = 1.0


def default_work_dir(store_root):
    """Return the default work folder of `store_root`: ``<store>-trials`` beside it."""
    root = os.fspath(store_root).rstrip("/")
    return f"{root}-trials"


def agent_task_name(task_name):
    """Return the task name that agent ids and paths use for data task `task_name`.

    TFDS tasks ("tfds:cifar100") drop the prefix, so the agent is "singlepath~cifar100";
    image folder tasks ("folder:/data/flowers") use the folder's base name ("flowers").
    """
    if task_name.startswith(TFDS_PREFIX):
        return task_name[len(TFDS_PREFIX):]
    if task_name.startswith(FOLDER_PREFIX):
        return os.path.basename(task_name[len(FOLDER_PREFIX):].rstrip("/"))
    return task_name


def is_worker():
    """Return whether this process is a keras-tuner worker (a tuner id without "chief")."""
    from keras_tuner.src.distribute import utils as dist_utils

    return dist_utils.has_chief_oracle() and not dist_utils.is_chief_oracle()


def make_agent_config(config="cpu", variant=None, candidates=None,
                      train_examples_per_validation=None, validation_examples=None,
                      candidates_per_generation=None):
    """Return an `AgentConfig` by name, with optional overrides.

    Args:
        config: a name of `keras_multipath.agents.config.get_agent_config`, or an
            `AgentConfig`.
        variant: ViT variant of the root model, e.g. "tiny/4"; the `num_layers` grid and
            default follow the variant's depth.
        candidates: candidates per cycle (`num_samples_per_cycle`).
        train_examples_per_validation: cap on the training examples between two validations
            (sets the training steps of every candidate).
        validation_examples: cap on the validation subset.
        candidates_per_generation: candidates trained at the same time, on as many
            keras-tuner workers; the default 1 trains them one after another.
    """
    from keras_multipath.agents.config import AgentConfig, get_agent_config
    from keras_multipath.layers.variants import get_variant

    agent_config = config if isinstance(config, AgentConfig) else get_agent_config(config)
    changes = {}
    if variant is not None and variant != agent_config.variant:
        depth = get_variant(variant)["num_layers"]
        changes.update(
            variant=variant,
            hparams_defaults=dict(agent_config.hparams_defaults, num_layers=depth),
            hparams_grids=dict(agent_config.hparams_grids, num_layers=tuple(range(depth + 1))),
        )
    if candidates is not None:
        changes["num_samples_per_cycle"] = int(candidates)
    if train_examples_per_validation is not None:
        changes["num_train_examples_between_validations_max"] = int(train_examples_per_validation)
    if validation_examples is not None:
        changes["num_validation_examples_max"] = int(validation_examples)
    if candidates_per_generation is not None:
        changes["candidates_per_generation"] = int(candidates_per_generation)
    return agent_config.replace(**changes) if changes else agent_config


def ensure_root(store, agent_config, seed=0, root=None):
    """Publish the root model unless the store has one; return the root `Path`.

    Args:
        store: a `Store`.
        agent_config: the `AgentConfig` whose variant and resolution a random root gets.
        seed: Keras seed of the random initialisation.
        root: None or "random" for a random root, a `.npz` file of vit_jax arrays, or a local
            keras-hub `ViTBackbone` preset folder.
    """
    import keras

    from keras_multipath.agents import root as root_lib

    if root in (None, "random"):
        agent_id = make_agent_id("singlepath", root_lib.ROOT_TASK_RANDOM)
    else:
        agent_id = make_agent_id("singlepath", root_lib.ROOT_TASK_CHECKPOINT)
    state = store.resume(agent_id)
    if state.published:
        return state.paths[state.published[0]]
    if root in (None, "random"):
        keras.utils.set_random_seed(seed)
        model = root_lib.random_root(agent_config.variant, agent_config.root_image_size)
    elif os.fspath(root).endswith(".npz"):
        model = root_lib.root_from_npz(root, image_size=agent_config.root_image_size)
    elif os.path.isdir(root):
        model = root_lib.root_from_keras_hub_preset(root, image_size=agent_config.root_image_size)
    else:
        raise ValueError(
            f"Invalid root model {root!r}. Pass 'random', a .npz file of vit_jax arrays, or a "
            f"local keras-hub ViT preset folder."
        )
    path = root_lib.publish_root(store, model, agent_config)
    logging.info("Published the root model %s (%s).", path.key, root or "random")
    return path


def _agent_tuner_class(tuner_class):
    """Return a subclass of `tuner_class` that records trials, shows progress and logs."""
    import keras
    from keras_tuner.errors import FailedTrialError

    class AgentTuner(tuner_class):
        """`tuner_class` plus a `trials.jsonl` record, TensorBoard logs and a progress bar."""

        def __init__(self, *args, progress_bar=None, tensorboard=True, **kwargs):
            super().__init__(*args, **kwargs)
            self.progress_bar = progress_bar
            self.tensorboard = tensorboard
            self._trial_callbacks = []

        def assemble(self, *args, **kwargs):
            result = super().assemble(*args, **kwargs)
            model = result[0] if isinstance(result, tuple) else result
            if self._trial_callbacks:
                # NOTE: the base tuner's run_trial passes no callbacks of its caller to
                # `fit`, so the model's `fit` gets them added here.
                fit, extra = model.fit, list(self._trial_callbacks)

                def fit_with_callbacks(*fit_args, callbacks=None, **fit_kwargs):
                    return fit(*fit_args, callbacks=list(callbacks or []) + extra, **fit_kwargs)

                model.fit = fit_with_callbacks
            return result

        def run_trial(self, trial, *args, **kwargs):
            self._trial_callbacks = []
            if self.tensorboard:
                log_dir = os.path.join(self.project_dir, "tensorboard", f"trial_{trial.trial_id}")
                self._trial_callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir))
            started = time.time()
            logging.info("Trial %s of agent %s starts.", trial.trial_id, self.project_name)
            try:
                results = super().run_trial(trial, *args, **kwargs)
            except FailedTrialError as error:
                self._record(trial, "FAILED", {}, started, str(error))
                raise
            except Exception as error:
                logging.exception("Trial %s of agent %s raised an error.", trial.trial_id,
                                  self.project_name)
                self._record(trial, "FAILED", {}, started, repr(error))
                raise
            self._record(trial, "COMPLETED", results, started, "")
            return results

        def _record(self, trial, status, metrics, started, message):
            record = {
                "agent_id": self.project_name,
                "trial_id": trial.trial_id,
                "tuner_id": self.tuner_id,
                "status": status,
                "seconds": round(time.time() - started, 3),
                "time": time.time(),
                "metrics": {key: float(value) for key, value in metrics.items()},
                "message": message[-500:],
            }
            with open(os.path.join(self.project_dir, TRIALS_FILE), "a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")
            if status == "COMPLETED":
                logging.info(
                    "Trial %s of agent %s ends: quality %.4f, score %.4f, improved %s, %.1f s.",
                    trial.trial_id, self.project_name, metrics.get("quality", float("nan")),
                    metrics.get("score", float("nan")), bool(metrics.get("improved", 0.0)),
                    record["seconds"],
                )
            else:
                logging.warning("Trial %s of agent %s failed: %s", trial.trial_id,
                                self.project_name, message.strip().splitlines()[-1:])

        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            if self.progress_bar is not None:
                self.progress_bar.update(1)

    return AgentTuner


class _WorkerOracle:
    """The oracle of a keras-tuner worker: trial requests go to the chief over gRPC, and the
    system (components, paths, search state) is read from the shared store.

    The local oracle re-reads the store before every trial, so a worker loads what the chief
    published at the end of the previous generation.
    """

    def __init__(self, client, local):
        self._client = client
        self._local = local

    def create_trial(self, tuner_id):
        from keras_tuner.src.engine import trial as trial_module

        trial = self._client.create_trial(tuner_id)
        if trial.status == trial_module.TrialStatus.IDLE:
            # The chief waits for the other trials of the generation; ask again shortly.
            time.sleep(_IDLE_WAIT_SECONDS)
        elif trial.status == trial_module.TrialStatus.RUNNING:
            # NOTE: SinglepathOracle has no public reload; dropping its cached system makes
            # the next access re-read the store.
            self._local._system = None
        return trial

    def __getattr__(self, name):
        try:
            return getattr(self._client, name)
        except AttributeError:
            return getattr(self._local, name)


def _make_singlepath(store, task, task_name, agent_config, max_cycles, seed, work_dir,
                     agent_id, verbose, progress_bar, tensorboard):
    from keras_multipath.agents.singlepath import SinglepathOracle
    from keras_multipath.training.tuner import PathTuner

    oracle = SinglepathOracle(
        store, task_name, task.num_classes, task.num_examples("train"), agent_config,
        max_cycles=max_cycles, seed=seed,
    )
    tuner = _agent_tuner_class(PathTuner)(
        oracle, task, directory=work_dir, project_name=agent_id, verbose=verbose,
        progress_bar=progress_bar, tensorboard=tensorboard,
    )
    return oracle, tuner


def _make_multipath(store, task, task_name, agent_config, max_cycles, seed, work_dir,
                    agent_id, verbose, progress_bar, tensorboard):
    try:
        from keras_multipath.agents import multipath
    except ImportError as error:
        raise ValueError(
            f"Agent kind 'multipath' is not available in this installation ({error})."
        ) from error
    if not isinstance(agent_config, multipath.MultipathConfig):
        agent_config = multipath.multipath_config(agent_config)
    oracle = multipath.MultipathOracle(
        store, task_name, task.num_classes, task.num_examples("train"), agent_config,
        max_cycles=max_cycles, seed=seed,
    )
    tuner_class = getattr(multipath, "MultipathTuner", None)
    if tuner_class is None:
        from keras_multipath.training.tuner import PathTuner as tuner_class
    tuner = _agent_tuner_class(tuner_class)(
        oracle, task, directory=work_dir, project_name=agent_id, verbose=verbose,
        progress_bar=progress_bar, tensorboard=tensorboard,
    )
    return oracle, tuner


def completed_cycles(store, agent_id):
    """Return the number of cycles `agent_id` has completed in `store` (0 when new)."""
    state = store.read_state(agent_id, include_intermediate=False)
    return 0 if state is None else state.cycle


def run_agent(store, task, kind="singlepath", cycles=1, config="cpu", seed=0, work_dir=None,
              root=None, verbose=1, progress=True, tensorboard=True, task_options=None,
              **config_overrides):
    """Run the agent of `kind` on `task` for `cycles` more cycles, publishing into `store`.

    A rerun with the same store continues the agent: its cycle counter, ids and population
    come from its latest state, and an interrupted cycle is finished first.

    Args:
        store: a `Store` or a store root (folder or URL).
        task: a task name for `keras_multipath.data.get_task`, or a `Task`.
        kind: "singlepath" or "multipath".
        cycles: cycles to run in this call.
        config: agent configuration name or `AgentConfig`.
        seed: seed of the agent's search and of a new random root model.
        work_dir: folder of keras-tuner projects; defaults to ``<store>-trials``.
        root: root model for a new store (see `ensure_root`).
        verbose: Keras `fit` verbosity inside trials (1: a progress bar per trial).
        progress: whether to show a tqdm progress bar over this call's trials.
        tensorboard: whether to write TensorBoard logs per trial.
        task_options: keyword arguments of `get_task`, e.g. ``{"data_dir": ...}``.
        **config_overrides: `variant`, `candidates`, `train_examples_per_validation`,
            `validation_examples`, `candidates_per_generation` (see `make_agent_config`).

    Returns:
        The agent's published paths after the run (one `Path` per agent, the best), read
        back from the store.
    """
    from keras_multipath.data import Task, get_task

    if kind not in AGENT_KINDS:
        raise ValueError(f"Unknown agent kind {kind!r}. Known kinds: {', '.join(AGENT_KINDS)}.")
    if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 0:
        raise ValueError(f"Expected cycles to be a non-negative integer. Received: {cycles!r}")
    store = store if isinstance(store, Store) else Store(store)
    if work_dir is None:
        work_dir = default_work_dir(store.root)
    agent_config = make_agent_config(config, **config_overrides)
    task = task if isinstance(task, Task) else get_task(task, **(task_options or {}))
    task_name = agent_task_name(task.name)
    agent_id = make_agent_id(kind, task_name)
    worker = is_worker()
    if not worker:
        ensure_root(store, agent_config, seed=seed, root=root)

    done = completed_cycles(store, agent_id)
    max_cycles = done + cycles
    num_trials = cycles * agent_config.num_samples_per_cycle
    progress_bar = None
    if progress and not worker and num_trials:
        from tqdm import tqdm

        progress_bar = tqdm(total=num_trials, desc=agent_id, unit="trial")
    if done:
        logging.info("Agent %s resumes after %d completed cycles; runs up to cycle %d.",
                     agent_id, done, max_cycles)
    else:
        logging.info("Agent %s starts: %d cycles of %d candidates on task %s.", agent_id,
                     cycles, agent_config.num_samples_per_cycle, task_name)
    make = _make_singlepath if kind == "singlepath" else _make_multipath
    oracle, tuner = make(store, task, task_name, agent_config, max_cycles, seed, work_dir,
                         agent_id, verbose, progress_bar, tensorboard)
    if worker:
        tuner.oracle = _WorkerOracle(tuner.oracle, oracle)
    try:
        # verbose=0 keeps keras-tuner from printing each candidate's JSON description.
        tuner.search(verbose=0)
    finally:
        if progress_bar is not None:
            progress_bar.close()
    system = store.load_system()
    published = system.published_paths(agent_id) if agent_id in system.published else []
    for path in published:
        logging.info("Agent %s publishes %s: quality %s, test %s.", agent_id, path.key,
                     path.metrics.get("quality"), path.metrics.get("test_quality"))
    return published

"""The singlepath agent as a keras-tuner Oracle.

One trial is one candidate. `populate_space` selects a parent, mutates it into a candidate
(`keras_multipath.agents.candidate`) and returns it as the single trial value `candidate`,
a JSON string. The tuner trains it and reports `score`, `quality` and `improved`. After
every generation the improved candidates join the population, which is pruned to the best
`max_task_population_size`, and the agent saves an intermediate state in the store. After
the last generation of a cycle the best path is evaluated on the test split, locked and
published. The next cycle reloads the whole system.

The search state (population, offspring counts, cycle and generation counters, id
counters, random generator) is part of `get_state()`, so keras-tuner's `oracle.json` contains
it, and it is also written into every store state. A rerun resumes from whichever of the
two is newer, so a search killed at any moment continues without repeating a finished trial
or reusing an id.
"""

import copy
import json
import math

import keras_tuner
import numpy as np
from absl import logging
from keras_tuner.src.engine import trial as trial_module

from keras_multipath.agents import candidate as candidate_lib
from keras_multipath.agents import hparams as hp
from keras_multipath.agents import staging
from keras_multipath.agents.selection import rank_paths, select_parent
from keras_multipath.system import Component, Path, make_agent_id, parse_key

CANDIDATE_VALUE = "candidate"
FINAL_STATUSES = (trial_module.TrialStatus.COMPLETED, trial_module.TrialStatus.FAILED)


def _new_search_state(seed):
    return {
        "initialized": False,
        "seed": int(seed),
        "rng": np.random.default_rng(seed).bit_generator.state,
        "cycle": 0,
        "generation": 0,
        "next_path_id": 0,
        "next_component_id": 0,
        "store_state_name": None,
        "population": [],
        "generation_trials": [],
        "ds_hparams": None,
        "candidates": {},
        "results": {},
        "finished_trials": [],
        "new_components": {},
        "component_trials": {},
        "history": [],
        "done": False,
    }


class SinglepathOracle(keras_tuner.Oracle):
    """Evolve the model of one task by reusing, cloning and fine-tuning system components.

    Args:
        store: the `keras_multipath.system.Store` shared by all agents.
        task_name: the agent's task, e.g. "mnist".
        num_classes: classes of the task.
        num_train_examples: size of the task's training split (sets the step budget).
        config: an `AgentConfig`.
        max_cycles: cycles to run; a rerun with a larger value continues a finished agent.
        seed: seed of the agent's random generator.
        kind: agent kind; the agent id is `<kind>~<task>`. Only agents of this kind are
            visible.
        **kwargs: other `keras_tuner.Oracle` arguments (`max_retries_per_trial`,
            `max_consecutive_failed_trials`). Failed candidates (for example a non-finite
            loss) do not stop the search unless `max_consecutive_failed_trials` is given.

    The attribute `test_evaluator`, a callable from a `Path` to its test accuracy, is set by
    the tuner; without it the end-of-cycle test evaluation is skipped.
    """

    def __init__(self, store, task_name, num_classes, num_train_examples, config,
                 max_cycles=1, seed=0, kind="singlepath", **kwargs):
        kwargs.setdefault("max_consecutive_failed_trials", None)
        super().__init__(
            objective=keras_tuner.Objective("score", "max"), max_trials=None, seed=seed, **kwargs
        )
        if int(num_classes) < 1 or int(num_train_examples) < 1:
            raise ValueError(
                "Expected num_classes >= 1 and num_train_examples >= 1. Received: "
                f"num_classes={num_classes}, num_train_examples={num_train_examples}"
            )
        self.store = store
        self.task_name = task_name
        self.kind = kind
        self.agent_id = make_agent_id(kind, task_name)
        self.num_classes = int(num_classes)
        self.num_train_examples = int(num_train_examples)
        self.config = config
        self.max_cycles = int(max_cycles)
        self.scorer = config.make_scorer()
        self.test_evaluator = None
        self.search = _new_search_state(seed)
        self._system = None
        self._rng = None

    # ----------------------------------------------------------------------------------------
    # State.

    def get_state(self):
        state = super().get_state()
        self._save_rng()
        state["search"] = copy.deepcopy(self.search)
        return state

    def set_state(self, state):
        super().set_state(state)
        self.search = copy.deepcopy(state["search"])
        self._system = None
        self._rng = None

    def _save_rng(self):
        if self._rng is not None:
            self.search["rng"] = self._rng.bit_generator.state

    @property
    def rng(self):
        if self._rng is None:
            self._rng = np.random.default_rng()
            self._rng.bit_generator.state = self.search["rng"]
        return self._rng

    @property
    def system(self):
        """The `System` of the current cycle (loaded from the store on first use)."""
        self._ensure_loaded()
        return self._system

    def _ensure_loaded(self):
        if self._system is not None:
            return
        stored = self.store.resume(self.agent_id)
        search = self.search
        if stored.state_name is not None and stored.state_name != search["store_state_name"]:
            if stored.oracle_state.get("search") and (
                not search["initialized"] or self._is_newer(stored.state_name)
            ):
                logging.info(
                    "Agent %s resumes its search from store state %s.", self.agent_id,
                    stored.state_name,
                )
                adopted = copy.deepcopy(stored.oracle_state["search"])
                if not search["initialized"]:
                    # A new keras-tuner project numbers its trials from 0 again, so results
                    # keyed by the old project's trial ids must not match its trials.
                    for key in ("results", "candidates", "component_trials"):
                        adopted[key] = {}
                    adopted["finished_trials"] = []
                self.search = adopted
                self._rng = None
            elif not search["initialized"]:
                self._init_from_state(stored)
        elif not search["initialized"]:
            self._init_from_state(stored)
        self.search["initialized"] = True
        self._system = self.store.load_system(
            kinds=self.visible_kinds(), running_agent_id=self.agent_id
        )
        self._restore_own_paths()
        self._rescore_population()

    def _rescore_population(self):
        """Recompute accounted parameters and scores of the own population, because other
        agents may have started sharing its components since they were scored."""
        population = self.population()
        for path in population:
            metrics = path.metrics
            if "quality" not in metrics or "flops" not in metrics:
                continue
            accounted = self._system.accounted_params(path, self.agent_id)
            metrics["accounted_params"] = accounted
            metrics["score"] = self.scorer.score(metrics["quality"], accounted, metrics["flops"])
        self._sync_population(population)

    def visible_kinds(self):
        """Return the agent kinds loaded at each cycle (subclasses may add kinds)."""
        return [self.kind]

    def _is_newer(self, state_name):
        """Return whether store state `state_name` is newer than the search state's."""
        mine = self.search["store_state_name"]
        if mine is None:
            return True
        counters = tuple(int(x) for x in state_name.split("_")[1:])
        return counters > tuple(int(x) for x in mine.split("_")[1:])

    def _init_from_state(self, stored):
        """Start the search from a store state written without a search state."""
        search = self.search
        search["cycle"] = stored.cycle
        search["generation"] = 0
        search["next_path_id"] = stored.next_path_id
        search["next_component_id"] = stored.next_component_id
        search["store_state_name"] = stored.state_name
        search["population"] = [
            stored.paths[key].to_json() for key in stored.population if key in stored.paths
        ]

    def _restore_own_paths(self):
        """Put the search state's own paths and new components into the loaded system."""
        system = self._system
        for key, data in self.search["new_components"].items():
            if key not in system.components:
                system.add_component(Component.from_json(data))
        for data in self.search["population"]:
            path = Path.from_json(data)
            if path.key in system.paths:
                system.paths[path.key].metrics = path.metrics
            else:
                system.add_path(path)

    def population(self):
        """Return the agent's own population as `Path` objects of the current system."""
        system = self.system  # Loading may replace the search state, so load first.
        return [system.paths[f"{data['agent_id']}:{data['id']}"]
                for data in self.search["population"]]

    def _sync_population(self, paths):
        self.search["population"] = [path.to_json() for path in paths]

    # ----------------------------------------------------------------------------------------
    # Proposing candidates.

    def visible_paths(self):
        """Return every path a candidate may start from: other agents' published paths of
        this kind (the root model included) and the agent's own population, restricted to
        paths built on the agent's ViT size."""
        system = self.system
        own = self.population()
        own_keys = {path.key for path in own}
        paths = [p for p in system.published_paths() if p.agent_id != self.agent_id]
        paths += own
        seen, visible = set(), []
        for path in paths:
            if path.key in seen:
                continue
            seen.add(path.key)
            if path.key in own_keys or candidate_lib.is_compatible(system, path, self.config.variant):
                visible.append(path)
        return visible

    def _best_own_path(self):
        ranked = rank_paths(self.population())
        return ranked[0] if ranked else None

    def _start_proposal(self):
        """Load the agent's state and check that a candidate may be proposed now.

        Draws the generation's data hyperparameters when its first candidate is proposed.

        Returns:
            None when a candidate may be proposed, else the keras-tuner response: STOPPED
            once `max_cycles` cycles have ended, IDLE while the generation is full.
        """
        # Loading may replace `self.search` with the stored search state, so it comes first.
        self._ensure_loaded()
        search = self.search
        if search["cycle"] >= self.max_cycles:
            search["done"] = True
            return {"status": trial_module.TrialStatus.STOPPED, "values": None}
        if len(search["generation_trials"]) >= self.config.candidates_per_generation:
            # The generation's pipeline is full; wait for its trials to end.
            return {"status": trial_module.TrialStatus.IDLE, "values": None}
        if not search["generation_trials"]:
            best = self._best_own_path()
            search["ds_hparams"] = hp.sample_ds_hparams(
                self.config.hparams_defaults, self.config.hparams_grids, self.rng,
                self.num_classes, best_hparams=best.hparams if best is not None else None,
                force_mutations=self.config.force_mutations,
                default_mu=self.config.hparams_defaults.get(hp.MU_KEY, hp.DEFAULT_MU),
            )
        return None

    def populate_space(self, trial_id):
        response = self._start_proposal()
        if response is not None:
            return response
        search = self.search
        rng = self.rng
        population = self.population()
        parent = select_parent(population, self.visible_paths(), rng)
        self._sync_population(population)
        candidate = candidate_lib.make_candidate(
            self.system, parent, self.agent_id, self.config, search["ds_hparams"], rng
        )
        self._register_candidate(trial_id, candidate)
        logging.info(
            "Agent %s cycle %d generation %d: candidate %s from parent %s.", self.agent_id,
            search["cycle"], search["generation"], candidate["path_key"], parent.key,
        )
        return {
            "status": trial_module.TrialStatus.RUNNING,
            "values": {CANDIDATE_VALUE: json.dumps(candidate, sort_keys=True)},
        }

    def _data_seed(self):
        """Seed of the generation's training stream: one stream per (seed, cycle, generation)."""
        search = self.search
        return int(np.random.SeedSequence(
            [search["seed"], search["cycle"], search["generation"]]
        ).generate_state(1)[0] % (2**31 - 1))

    def _allocate_ids(self, candidate):
        search = self.search
        path_id = search["next_path_id"]
        search["next_path_id"] += 1
        candidate["path_key"] = f"{self.agent_id}:{path_id}"
        for entry in candidate["components"]:
            if entry["action"] == candidate_lib.SHARE:
                entry["key"] = entry["source"]
            else:
                entry["key"] = f"{self.agent_id}:{search['next_component_id']}"
                search["next_component_id"] += 1

    # ----------------------------------------------------------------------------------------
    # Ending trials and generations.

    @keras_tuner.synchronized
    def create_trial(self, tuner_id):
        # A trial that ended in a store state newer than oracle.json must not run again.
        self._ensure_loaded()
        finished = set(self.search["finished_trials"])
        if finished:
            for trial_id in [t for t in self._retry_queue if t in finished]:
                self._retry_queue.remove(trial_id)
                trial = self.trials[trial_id]
                result = self.search["results"].get(trial_id)
                trial.status = (
                    trial_module.TrialStatus.COMPLETED
                    if result is not None and result.get("status") == "COMPLETED"
                    else trial_module.TrialStatus.FAILED
                )
                if result is not None and "score" in result.get("metrics", {}):
                    trial.score = result["metrics"]["score"]
                if trial_id not in self.end_order:
                    self.end_order.append(trial_id)
        return super().create_trial(tuner_id)

    def score_trial(self, trial):
        super().score_trial(trial)
        if trial.score is None or not math.isfinite(trial.score):
            trial.score = float("-inf")

    def finished_result(self, trial_id):
        """Return the recorded result of a trial that already ended, or None."""
        if trial_id in self.search["finished_trials"]:
            return self.search["results"].get(trial_id, {"status": "FAILED"})
        return None

    @keras_tuner.synchronized
    def end_trial(self, trial):
        trial_id = trial.trial_id
        status = trial.status
        final = status in FINAL_STATUSES or (
            status == trial_module.TrialStatus.INVALID
            and self._run_times[trial_id] + 1 >= self.max_retries_per_trial + 1
        )
        self._ensure_loaded()
        search = self.search
        if final and trial_id in search["generation_trials"] and trial_id not in search["results"]:
            self._record_result(trial_id, self.trials[trial_id], status, trial.message)
            if all(t in search["results"] for t in search["generation_trials"]):
                self._end_generation()
        super().end_trial(trial)

    def _record_result(self, trial_id, trial, status, message):
        metrics = {}
        if status == trial_module.TrialStatus.COMPLETED:
            for name in ("score", "quality", "improved", "accounted_params", "flops",
                         "num_params", "num_trainable_params", "train_seconds"):
                if trial.metrics.exists(name):
                    metrics[name] = float(trial.metrics.get_last_value(name))
        result = {
            "status": "COMPLETED" if status == trial_module.TrialStatus.COMPLETED else "FAILED",
            "metrics": metrics,
            "message": (message or "")[-2000:],
        }
        if result["status"] == "FAILED":
            logging.warning(
                "Agent %s: candidate of trial %s failed: %s", self.agent_id, trial_id,
                (message or "").strip().splitlines()[-1:] or "no message",
            )
        self.search["results"][trial_id] = result
        self.search["finished_trials"].append(trial_id)

    def _candidate_path(self, trial_id, result):
        candidate = self.search["candidates"][trial_id]
        agent_id, path_id = parse_key(candidate["path_key"])
        metrics = dict(result["metrics"])
        metrics.update(
            offsprings=0,
            improved=bool(metrics.get("improved", 0.0)),
            cycle=candidate["cycle"],
            generation=candidate["generation"],
            trial_id=trial_id,
        )
        return Path(
            agent_id=agent_id,
            task_name=self.task_name,
            id=path_id,
            hparams=candidate["hparams"],
            components=[entry["key"] for entry in candidate["components"]],
            parent=candidate["parent"],
            metrics=metrics,
        )

    def _register_candidate(self, trial_id, candidate):
        """Allocate `candidate`'s ids, add the training settings it carries, and record
        it as a trial of the current generation."""
        search = self.search
        self._allocate_ids(candidate)
        candidate.update(
            agent_id=self.agent_id,
            task_name=self.task_name,
            trial_id=trial_id,
            cycle=search["cycle"],
            generation=search["generation"],
            data_seed=self._data_seed(),
            accounted_params=candidate_lib.accounted_params(self.system, candidate, self.agent_id),
            scorer=self.scorer.get_config(),
            total_steps=self.config.total_steps(self.num_train_examples),
            steps_between_validations=self.config.steps_between_validations(
                self.num_train_examples
            ),
            batch_size=self.config.batch_size,
            num_validation_examples_max=self.config.num_validation_examples_max,
        )
        search["generation_trials"].append(trial_id)
        search["candidates"][trial_id] = candidate
        for entry in candidate["components"]:
            if entry["action"] != candidate_lib.SHARE:
                search["component_trials"][entry["key"]] = trial_id
        self._save_rng()

    def _end_generation(self):
        system = self.system
        search = self.search
        population = self.population()
        history = []

        for trial_id in search["generation_trials"]:
            result = search["results"][trial_id]
            if result["status"] != "COMPLETED":
                continue
            path = self._candidate_path(trial_id, result)
            history.append(path.to_json())
            if not path.metrics["improved"]:
                continue
            records, _ = staging.read_staged_components(self._get_trial_dir(trial_id))
            for key, record in records.items():
                if key not in system.components:
                    system.add_component(record)
                search["new_components"][key] = record.to_json()
            system.add_path(path)
            population.append(path)

        population = rank_paths(population)[: self.config.max_task_population_size]
        self._sync_population(population)
        search["history"].extend(history)
        search["generation"] += 1
        search["generation_trials"] = []
        search["ds_hparams"] = None
        search["candidates"] = {}
        if search["generation"] < self.config.num_generations:
            self._publish(population, published=None, generation=search["generation"])
        else:
            self._end_cycle(population)

    def _end_cycle(self, population):
        search = self.search
        ranked = rank_paths(population)
        best = ranked[0] if ranked else None
        if best is not None:
            if self.test_evaluator is None:
                logging.warning(
                    "Agent %s: no test evaluator is set, so %s gets no test_quality.",
                    self.agent_id, best.key,
                )
            elif "test_quality" not in best.metrics:
                best.metrics["test_quality"] = float(self.test_evaluator(best))
            self.system.lock_path(best, self.agent_id)
            best.metrics["published_cycle"] = search["cycle"]
            logging.info(
                "Agent %s ends cycle %d: publishes %s (quality %.4f, score %.4f, test %s, "
                "accounted parameters %.0f).", self.agent_id, search["cycle"], best.key,
                best.metrics.get("quality", float("nan")), best.metrics.get("score", float("nan")),
                best.metrics.get("test_quality"), best.metrics.get("accounted_params", 0.0),
            )
        population = [best] if best is not None else []
        self._sync_population(population)
        search["cycle"] += 1
        search["generation"] = 0
        self._publish(population, published=[p.key for p in population], generation=0)
        # The next cycle re-reads the whole system, which removes the agent's own locks.
        self._system = None
        if search["cycle"] >= self.max_cycles:
            search["done"] = True

    def _publish(self, population, published, generation):
        """Write the agent's state into the store: intermediate, or end of cycle."""
        search = self.search
        state = self.store.resume(self.agent_id)
        if state.state_name != search["store_state_name"]:
            raise RuntimeError(
                f"The store state of agent {self.agent_id!r} is {state.state_name}, but this "
                f"search continues from {search['store_state_name']}. Run one process per agent."
            )
        kept = {key: state.paths[key] for key in state.published if key in state.paths}
        if published is not None:
            kept = {}
        for path in population:
            kept[path.key] = path
        state.paths = kept
        if published is not None:
            state.published = list(published)
        state.population = [path.key for path in population]
        state.cycle = search["cycle"]
        state.generation = generation
        state.next_path_id = search["next_path_id"]
        state.next_component_id = search["next_component_id"]
        state.history = [Path.from_json(data) for data in search["history"]]
        state.config = self.config.to_dict()

        used = {key for path in kept.values() for key in path.components}
        new_records = [
            Component.from_json(data) for key, data in search["new_components"].items()
            if key in used and key not in state.components
        ]
        staged_cache = {}
        component_trials = dict(search["component_trials"])

        def weights(key):
            trial_id = component_trials[key]
            if trial_id not in staged_cache:
                staged_cache[trial_id] = staging.read_staged_components(
                    self._get_trial_dir(trial_id)
                )[1]
            return staged_cache[trial_id][key]

        name = f"state_{state.cycle}_{state.generation}"
        search["store_state_name"] = name
        search["new_components"] = {}
        search["component_trials"] = {}
        if published is not None:
            # Intermediate states are deleted by the end-of-cycle publish, so the history
            # accumulates over the cycle and the end-of-cycle state contains all of it.
            search["history"] = []
        self._save_rng()
        state.oracle_state = {"search": copy.deepcopy(search)}
        self.store.publish(state, components=new_records, weights=weights)

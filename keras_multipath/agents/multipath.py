"""The multipath agent: frozen published models mixed by a trainable router.

A multipath candidate of task T runs in parallel

- `path_0`, the best published singlepath model of T, with its head, frozen;
- 1 or 2 published singlepath models of other tasks (the root model included), headless
  and frozen, each at its own resolution;

and trains only a `Connector` per headless path (its representation to T's logits) and a
`MultipathRouter` that mixes the logits per sample from `path_0`'s logits. Secondary paths
are inherited from the parent candidate. New ones are drawn uniformly from the other
singlepath agents' published paths, which happens when the parent is the main model or when
`num_paths` grows. The router and connectors are cloned from the parent when their shapes match; the
router is re-initialised when `num_paths` changed. The score is the validation accuracy
alone (no size or compute penalty).

The subpaths are copied into the candidate's `hparams["paths"]` (see
`keras_multipath.system.multipath_model`), so a published multipath model stays loadable
after the subpaths' owners publish newer models.

`MultipathOracle` reuses the singlepath agent's search loop: decay parent selection,
hyperparameter mutation, generations, resumable state and publication. `PathTuner` trains
its candidates with the same protocol.
"""

import copy
import dataclasses
import json
import math
import numbers
import re

from absl import logging
from keras_tuner.src.engine import trial as trial_module

from keras_multipath.agents import candidate as candidate_lib
from keras_multipath.agents.config import AgentConfig, get_agent_config
from keras_multipath.agents.scoring import (
    LAYER_NORM_FLOPS_PER_ELEMENT,
    SOFTMAX_FLOPS_PER_ELEMENT,
    vit_forward_flops,
)
from keras_multipath.agents.selection import select_parent
from keras_multipath.agents.singlepath import CANDIDATE_VALUE, SinglepathOracle
from keras_multipath.system import make_agent_id, names
from keras_multipath.system import multipath_model as mp
from keras_multipath.system.assembly import image_shape_of

MULTIPATH_KIND = "multipath"
SINGLEPATH_KIND = "singlepath"
DEFAULT_EXCLUDE_PATTERN = r"~1k$"

NUM_PATHS_GRID = (2, 3)
ROUTER_LR_MULT_GRID = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
MULTIPATH_DEFAULTS = {
    "num_paths": 2,
    "router_lr_mult": 0.05,
    "router_init_main_path_weight": 0.8,
}

# Metrics the tuner reports for multipath candidates, besides the singlepath ones.
MULTIPATH_METRICS = ("trained_params", "activated_params", "trained_fraction")
ROUTER_WEIGHT_METRIC_PREFIX = "router_weight_mean_"


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


_ROUTER_HPARAM_RULES = {
    "num_paths": (
        "an int >= 2",
        lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 2,
    ),
    "router_lr_mult": ("a finite number > 0", lambda v: _is_number(v) and 0 < v < math.inf),
    "router_init_main_path_weight": (
        "a number strictly between 0 and 1", lambda v: _is_number(v) and 0 < v < 1
    ),
}


@dataclasses.dataclass
class MultipathConfig(AgentConfig):
    """Settings of a multipath agent: an `AgentConfig` plus the secondary-path rule.

    Attributes:
        secondary_exclude_pattern: regular expression; singlepath agents whose id matches
            it (`re.search`) never provide secondary paths. The default excludes the
            VTAB-1k agents, whose ids end in "~1k". An empty string excludes none.
    """

    secondary_exclude_pattern: str = DEFAULT_EXCLUDE_PATTERN

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.secondary_exclude_pattern, str):
            raise TypeError(
                "Expected secondary_exclude_pattern to be a regular expression string. "
                f"Received: {self.secondary_exclude_pattern!r}"
            )
        try:
            re.compile(self.secondary_exclude_pattern)
        except re.error as error:
            raise ValueError(
                f"Invalid secondary_exclude_pattern {self.secondary_exclude_pattern!r}: {error}"
            ) from None
        for key in ("num_paths", "router_lr_mult", "router_init_main_path_weight"):
            if key not in self.hparams_defaults:
                raise ValueError(
                    f"A multipath config needs a default for {key!r}. Build it with "
                    f"multipath_config(singlepath_config)."
                )
        # Checked here, because a mutation to an invalid value would otherwise fail only when
        # a later trial builds its MultipathRouter.
        for key, (expected, is_valid) in _ROUTER_HPARAM_RULES.items():
            values = [self.hparams_defaults[key], *self.hparams_grids.get(key, ())]
            invalid = [value for value in values if not is_valid(value)]
            if invalid:
                raise ValueError(
                    f"Expected the default and every grid value of {key!r} to be {expected}. "
                    f"Received: {key}={invalid[0]!r}"
                )

    def excludes(self, agent_id):
        """Return whether agent `agent_id` may not provide secondary paths."""
        pattern = self.secondary_exclude_pattern
        return bool(pattern) and re.search(pattern, agent_id) is not None


def multipath_config(singlepath_config, **overrides):
    """Derive the multipath configuration from a singlepath `AgentConfig`.

    Batch size, step budget, validation protocol, candidates per cycle, population size and
    the `opt_*`, `ds_*` (augmentation) and `_mu_` grids and defaults stay the same. The
    architecture hyperparameters `num_layers` and `ds_image_size` are removed (the
    resolutions come from the subpaths), no mutation is forced, the score has no penalty,
    and `num_paths` (default 2, grid 2, 3), `router_lr_mult` (default 0.05, grid 0.01 ..
    1) and `router_init_main_path_weight` (0.8, not mutated) are added.

    Args:
        singlepath_config: an `AgentConfig`, e.g. `get_agent_config("cpu")`.
        **overrides: `MultipathConfig` fields to change, e.g.
            `secondary_exclude_pattern=""`.
    """
    removed = ("num_layers", "ds_image_size")
    defaults = {k: v for k, v in singlepath_config.hparams_defaults.items() if k not in removed}
    defaults.update(MULTIPATH_DEFAULTS)
    grids = {k: v for k, v in singlepath_config.hparams_grids.items() if k not in removed}
    grids.update(num_paths=NUM_PATHS_GRID, router_lr_mult=ROUTER_LR_MULT_GRID)
    settings = {field.name: getattr(singlepath_config, field.name)
                for field in dataclasses.fields(AgentConfig)}
    settings.update(
        name=f"multipath_{singlepath_config.name}",
        force_mutations=(),
        scorer=dict(scale_factor=1.0),
        hparams_defaults=defaults,
        hparams_grids=grids,
    )
    settings.update(overrides)
    return MultipathConfig(**settings)


def get_multipath_config(name):
    """Return the multipath configuration derived from singlepath config `name`
    ("Vit", "VitB", "VitT3" or "cpu")."""
    return multipath_config(get_agent_config(name))


# --------------------------------------------------------------------------------------------
# Sampling a candidate.


class MissingMainPathError(ValueError):
    """The task has no published singlepath model to use as the main path."""


def main_path_of(system, task_name, singlepath_kind=SINGLEPATH_KIND):
    """Return the best published path of the singlepath agent of `task_name`.

    Raises:
        MissingMainPathError: when that agent has published no path.
    """
    agent_id = make_agent_id(singlepath_kind, task_name)
    paths = system.published_paths(agent_id)
    if not paths:
        raise MissingMainPathError(
            f"Task {task_name!r} has no published singlepath model (agent {agent_id!r}); the "
            f"multipath agent uses it as its main path. Run the singlepath agent for task "
            f"{task_name!r} first."
        )
    return sorted(paths, key=lambda p: (-float(p.metrics.get("quality", 0.0)), p.id))[0]


def secondary_candidates(system, excluded_agents, config, singlepath_kind=SINGLEPATH_KIND):
    """Return the published paths that may become new secondary paths, sorted by key.

    A path qualifies when its agent is of `singlepath_kind` (the root-model agent
    included), is not in `excluded_agents` (the agents already selected, so never the
    main task's) and is not excluded by `config.secondary_exclude_pattern`.
    """
    paths = []
    for agent_id in sorted(system.published):
        if names.agent_kind(agent_id) != singlepath_kind or agent_id in excluded_agents:
            continue
        if config.excludes(agent_id):
            continue
        paths.extend(system.published_paths(agent_id))
    return sorted(paths, key=lambda p: (p.agent_id, p.id))


def _record_is_loadable(system, record):
    return all(key in system.components for key in record["components"])


def _router_shapes(num_classes, num_paths):
    return [[num_classes], [num_classes], [num_classes, num_paths], [num_paths]]


def _connector_shapes(dim, num_classes):
    return [[dim, num_classes], [num_classes]]


def path_forward_flops(system, path):
    """Count the FLOPs of one forward pass of ViT `path` at batch size 1, from the
    configs of its components (see `vit_forward_flops`)."""
    configs = {}
    num_layers, num_classes = 0, 0
    for key in path.components:
        component = system.component(key)
        configs.setdefault(component.name.split("_")[0], component.layer_config["config"])
        if component.name.startswith("encoderblock_"):
            num_layers += 1
        elif component.name == "head":
            num_classes = int(component.weight_shapes[1][0])
    embedding = configs["embedding"]
    block = configs.get("encoderblock", {"num_heads": 1, "mlp_dim": 0})
    patch = embedding["patch_size"]
    patch = patch if isinstance(patch, int) else patch[0]
    return vit_forward_flops(
        image_shape_of(system, path), patch, embedding["hidden_dim"], block["num_heads"],
        block["mlp_dim"], num_layers, num_classes,
    )


def _router_and_connector_flops(system, parts, num_classes):
    """Count the FLOPs of the connectors, the router and the mixture at batch size 1."""
    num_paths = len(parts)
    connectors = sum(
        2 * mp.representation_dim(system, part) * num_classes + num_classes for part in parts[1:]
    )
    router = (
        LAYER_NORM_FLOPS_PER_ELEMENT * num_classes
        + 2 * num_classes * num_paths + num_paths
        + SOFTMAX_FLOPS_PER_ELEMENT * num_paths
    )
    mixture = 2 * num_paths * num_classes
    return connectors + router + mixture


def sample_multipath(system, agent_id, main_path, parent, config, ds_hparams, rng,
                     own_best=None, singlepath_kind=SINGLEPATH_KIND):
    """Describe a multipath candidate for the running agent.

    Args:
        system: the `System` of the cycle, with the singlepath agents and the running
            agent's own paths loaded.
        agent_id: the running multipath agent.
        main_path: the task's best published singlepath `Path` (`main_path_of`).
        parent: the parent `Path`: one of the agent's own multipath paths, or `main_path`
            when decay selection picked none.
        config: the agent's `MultipathConfig`.
        ds_hparams: the generation's data hyperparameters, including `num_classes`.
        rng: `numpy.random.Generator`.
        own_best: the agent's best own path, whose hyperparameters seed a candidate whose
            parent is `main_path`; None uses the defaults.
        singlepath_kind: kind of the agents whose models are the subpaths.

    Returns:
        A JSON-able dict like `make_candidate`'s. Its keys are `kind` ("multipath"),
        `parent`, `hparams` (with `paths`, `num_paths` and the list `ds_image_size`),
        `threshold`, `flops`, `trained_params`, `activated_params` and `components`.
        `threshold` is the parent's score when the parent is the agent's own path, else
        None. `components` lists every subpath component once as a `share` entry, then
        `router` and `connector_<k>` as `clone` or `new` entries.

    Raises:
        ValueError: when no other singlepath agent has a published path to use.
    """
    own_parent = parent.agent_id == agent_id
    if own_parent:
        base = parent.hparams
    else:
        base = own_best.hparams if own_best is not None else {}
    base = {k: v for k, v in copy.deepcopy(base).items() if k not in (mp.PATHS_KEY, "ds_image_size")}
    hparams = candidate_lib.mutate_candidate_hparams(base, config, ds_hparams, rng)
    num_classes = int(hparams["num_classes"])
    num_paths = int(hparams["num_paths"])

    inherited = parent.hparams.get(mp.PATHS_KEY, {}) if own_parent else {}
    records = {mp.subpath_name(0): mp.make_subpath_record(system, main_path, headless=False)}
    selected_agents = {main_path.agent_id}
    inherited_indices = set()
    for index in range(1, num_paths):
        name = mp.subpath_name(index)
        record = inherited.get(name)
        if record is not None and record["agent_id"] not in selected_agents:
            if _record_is_loadable(system, record):
                records[name] = copy.deepcopy(record)
                selected_agents.add(record["agent_id"])
                inherited_indices.add(index)
                continue
            logging.warning(
                "Agent %s: inherited subpath %s:%s uses components that are not loaded; "
                "drawing a new one.", agent_id, record["agent_id"], record["id"],
            )
        choices = secondary_candidates(system, selected_agents, config, singlepath_kind)
        if not choices:
            if index == 1:
                raise ValueError(
                    f"Agent {agent_id!r} found no secondary path: no singlepath agent other "
                    f"than {main_path.agent_id!r} has published a model that the exclusion "
                    f"pattern {config.secondary_exclude_pattern!r} allows. Publish a root "
                    f"model or run the singlepath agent of another task first."
                )
            logging.warning(
                "Agent %s: only %d secondary paths are available; using num_paths=%d.",
                agent_id, index - 1, index,
            )
            hparams["num_paths"] = num_paths = index
            break
        choice = choices[int(rng.integers(len(choices)))]
        records[name] = mp.make_subpath_record(system, choice, headless=True)
        selected_agents.add(choice.agent_id)
    hparams[mp.PATHS_KEY] = records
    parts = mp.subpaths_from_records(records)
    hparams["ds_image_size"] = mp.subpath_image_sizes(system, parts)

    components, seen = [], set()
    for part in parts:
        for key in part.components:
            if key in seen:
                continue
            seen.add(key)
            entry = {"name": system.component(key).name, "action": candidate_lib.SHARE,
                     "source": key, "shapes": system.component(key).weight_shapes}
            components.append(entry)
    activated = sum(system.component(key).num_params for key in seen)

    parent_router, parent_connectors = (
        mp.own_components(system, parent) if own_parent else (None, {})
    )
    own_entries = [(mp.ROUTER_NAME, parent_router, _router_shapes(num_classes, num_paths))]
    for index in range(1, num_paths):
        dim = mp.representation_dim(system, parts[index])
        # A connector is reused only with the subpath it was trained on.
        source = parent_connectors.get(index) if index in inherited_indices else None
        own_entries.append((mp.connector_name(index), source, _connector_shapes(dim, num_classes)))
    trained = 0
    for name, source, shapes in own_entries:
        reuse = source is not None and system.component(source).weight_shapes == shapes
        components.append({
            "name": name,
            "action": candidate_lib.CLONE if reuse else candidate_lib.NEW,
            "source": source if reuse else None,
            "shapes": shapes,
        })
        trained += candidate_lib.num_params_of(shapes)

    flops = sum(path_forward_flops(system, part) for part in parts)
    flops += _router_and_connector_flops(system, parts, num_classes)
    threshold = None
    if own_parent and "score" in parent.metrics:
        threshold = float(parent.metrics["score"])
    return {
        "kind": MULTIPATH_KIND,
        "parent": parent.key,
        "hparams": hparams,
        "threshold": threshold,
        "flops": int(flops),
        "trained_params": int(trained),
        "activated_params": int(activated + trained),
        "components": components,
    }


# --------------------------------------------------------------------------------------------
# The oracle.


class MultipathOracle(SinglepathOracle):
    """Search multipath models of one task on top of the published singlepath models.

    Args:
        store: the `keras_multipath.system.Store` shared by all agents.
        task_name: the agent's task; its singlepath agent must have published a model.
        num_classes: classes of the task.
        num_train_examples: size of the task's training split (sets the step budget).
        config: a `MultipathConfig`, e.g. `get_multipath_config("cpu")`.
        max_cycles: cycles to run; a rerun with a larger value continues a finished agent.
        seed: seed of the agent's random generator.
        kind: agent kind; the agent id is `<kind>~<task>`.
        singlepath_kind: kind of the agents whose published models are the subpaths.
        **kwargs: other `keras_tuner.Oracle` arguments.

    Raises:
        MissingMainPathError: when the task's singlepath agent has published no model.

    Example:

    >>> oracle = MultipathOracle(store, "digits", 10, 1437, get_multipath_config("cpu"))
    >>> PathTuner(oracle, get_task("digits"), directory="/tmp/search").search()
    """

    def __init__(self, store, task_name, num_classes, num_train_examples, config,
                 max_cycles=1, seed=0, kind=MULTIPATH_KIND, singlepath_kind=SINGLEPATH_KIND,
                 **kwargs):
        if not isinstance(config, MultipathConfig):
            raise TypeError(
                "Expected a MultipathConfig, e.g. get_multipath_config('cpu'). Received: "
                f"{type(config).__name__}"
            )
        if kind == singlepath_kind:
            raise ValueError(
                f"The multipath kind must differ from the singlepath kind. Received: "
                f"kind={kind!r}, singlepath_kind={singlepath_kind!r}"
            )
        super().__init__(store, task_name, num_classes, num_train_examples, config,
                         max_cycles=max_cycles, seed=seed, kind=kind, **kwargs)
        self.singlepath_kind = singlepath_kind
        self.main_agent_id = make_agent_id(singlepath_kind, task_name)
        state = store.read_state(self.main_agent_id, include_intermediate=False)
        if state is None or not state.published:
            raise MissingMainPathError(
                f"Task {task_name!r} has no published singlepath model (agent "
                f"{self.main_agent_id!r} in store {store.root!r}); the multipath agent uses "
                f"it as its main path. Run the singlepath agent for task {task_name!r} first."
            )

    def visible_kinds(self):
        """Return the agent kinds loaded at each cycle: the singlepath kind and this kind."""
        return [self.singlepath_kind, self.kind]

    def populate_space(self, trial_id):
        response = self._start_proposal()
        if response is not None:
            return response
        search = self.search
        rng = self.rng
        best = self._best_own_path()
        main = main_path_of(self.system, self.task_name, self.singlepath_kind)
        population = self.population()
        parent = select_parent(population, [main], rng)
        self._sync_population(population)
        candidate = sample_multipath(
            self.system, self.agent_id, main, parent, self.config, search["ds_hparams"], rng,
            own_best=best, singlepath_kind=self.singlepath_kind,
        )
        self._register_candidate(trial_id, candidate)
        logging.info(
            "Agent %s cycle %d generation %d: candidate %s from parent %s with paths %s.",
            self.agent_id, search["cycle"], search["generation"], candidate["path_key"],
            parent.key,
            [f"{r['agent_id']}:{r['id']}" for r in candidate["hparams"][mp.PATHS_KEY].values()],
        )
        return {
            "status": trial_module.TrialStatus.RUNNING,
            "values": {CANDIDATE_VALUE: json.dumps(candidate, sort_keys=True)},
        }

    def _record_result(self, trial_id, trial, status, message):
        super()._record_result(trial_id, trial, status, message)
        if status != trial_module.TrialStatus.COMPLETED:
            return
        metrics = self.search["results"][trial_id]["metrics"]
        for name in trial.metrics.metrics:
            if name in MULTIPATH_METRICS or name.startswith(ROUTER_WEIGHT_METRIC_PREFIX):
                metrics[name] = float(trial.metrics.get_last_value(name))


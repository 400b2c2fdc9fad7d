"""Hyperparameter grids, incremental mutation and self-tuned mutation probabilities.

Every mutable hyperparameter has an ordered grid; a mutation moves a value to a neighbouring
grid entry. Each mutation action has a name, `hp:<hyperparameter>` or `clone:<component>`,
and its probability is stored in the hyperparameters themselves under `_mu_|<action>`, so the
probabilities are inherited by children and evolve along lineages.

All functions take an explicit `numpy.random.Generator`; none uses global random state.
"""

import math

import numpy as np

MU_KEY = "_mu_"
MU_PREFIX = "_mu_|"
HP_PREFIX = "hp:"
CLONE_PREFIX = "clone:"
DS_PREFIX = "ds_"

DEFAULT_MU = 0.2

# Grids of the singlepath agents (muNet reference values). Sizes (`num_layers`,
# `ds_image_size`) depend on the root model and live in the agent configurations.
MU_GRID = tuple(round(0.02 * i, 2) for i in range(1, 16))
OPT_LR_GRID = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
OPT_LR_WARMUP_RATIO_GRID = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
OPT_MOMENTUM_GRID = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99)
OPT_NESTEROV_GRID = (True, False)
DS_AREA_RANGE_MIN_GRID = (0.05, 0.5, 0.95, 1.0)
DS_ASPECT_RATIO_RANGE_MIN_GRID = (0.5, 0.75, 1.0)
DS_FLIP_LEFT_RIGHT_GRID = (True, False)
DS_COLOR_DELTA_GRID = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)

COMMON_GRIDS = {
    MU_KEY: MU_GRID,
    "opt_lr": OPT_LR_GRID,
    "opt_lr_warmup_ratio": OPT_LR_WARMUP_RATIO_GRID,
    "opt_momentum": OPT_MOMENTUM_GRID,
    "opt_nesterov": OPT_NESTEROV_GRID,
    "ds_area_range_min": DS_AREA_RANGE_MIN_GRID,
    "ds_aspect_ratio_range_min": DS_ASPECT_RATIO_RANGE_MIN_GRID,
    "ds_flip_left_right": DS_FLIP_LEFT_RIGHT_GRID,
    "ds_brightness_delta": DS_COLOR_DELTA_GRID,
    "ds_contrast_delta": DS_COLOR_DELTA_GRID,
    "ds_saturation_delta": DS_COLOR_DELTA_GRID,
    "ds_hue_delta": DS_COLOR_DELTA_GRID,
    "ds_quality_delta": DS_COLOR_DELTA_GRID,
}

COMMON_DEFAULTS = {
    MU_KEY: DEFAULT_MU,
    "opt_lr": 0.02,
    "opt_lr_schedule": "cosine",
    "opt_lr_warmup_ratio": 0.02,
    "opt_momentum": 0.8,
    "opt_nesterov": True,
    "ds_area_range_min": 1.0,
    "ds_aspect_ratio_range_min": 1.0,
    "ds_flip_left_right": False,
    "ds_brightness_delta": 0.0,
    "ds_contrast_delta": 0.0,
    "ds_saturation_delta": 0.0,
    "ds_hue_delta": 0.0,
    "ds_quality_delta": 0.0,
}


def grid_index(value, grid):
    """Return the position of `value` in `grid`.

    Booleans match only booleans, and other numbers match within a relative tolerance of
    1e-9, so `0.1 * 3` finds the grid entry `0.3`.

    Raises:
        ValueError: if `value` is not on the grid.
    """
    for index, entry in enumerate(grid):
        if isinstance(entry, bool) or isinstance(value, bool):
            if isinstance(entry, bool) and isinstance(value, bool) and entry == value:
                return index
        elif isinstance(entry, (int, float)) and isinstance(value, (int, float)):
            if math.isclose(entry, value, rel_tol=1e-9, abs_tol=1e-12):
                return index
        elif entry == value:
            return index
    raise ValueError(
        f"Value {value!r} is not on its mutation grid {list(grid)}. Use one of the grid values."
    )


def snap_to_grid(value, grid):
    """Return the grid entry equal to `value`, or the numerically closest one.

    Used when a parent from an agent with another configuration carries a value outside
    this agent's grid (for example 12 layers for a grid 0..3). Non-numeric values that are
    not on the grid raise `ValueError`.
    """
    try:
        return grid[grid_index(value, grid)]
    except ValueError:
        numeric = [e for e in grid if isinstance(e, (int, float)) and not isinstance(e, bool)]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not numeric:
            raise
        return min(numeric, key=lambda entry: abs(entry - value))


def incremental_mutation(value, grid, rng):
    """Move `value` to a neighbouring entry of `grid`.

    The move goes up or down with probability 1/2 each and is clamped at the ends of the
    grid, so an end value stays put half of the time.

    Args:
        value: the current value; must be on `grid`.
        grid: ordered sequence of allowed values.
        rng: `numpy.random.Generator`.

    Returns:
        The new grid value.

    Raises:
        ValueError: if `value` is not on `grid`.
    """
    index = grid_index(value, grid)
    step = 1 if rng.random() < 0.5 else -1
    index = min(max(index + step, 0), len(grid) - 1)
    return grid[index]


def do_mutate(hparams, mutation, grids, rng, force_mutations=(), default_mu=DEFAULT_MU):
    """Decide whether to apply the mutation action `mutation`, tuning its probability.

    The probability of `mutation` is `hparams["_mu_|" + mutation]`, starting at the base
    probability `hparams["_mu_"]` (or `default_mu` when absent). When `_mu_` has a grid, the
    stored probability itself first mutates incrementally on that grid with probability
    `_mu_`, and the result is written back into `hparams`, so the child inherits it.
    Forced mutations return True without drawing random numbers.

    Args:
        hparams: dict of hyperparameters; updated in place.
        mutation: action name, `hp:<hyperparameter>` or `clone:<component>`.
        grids: dict of mutation grids by hyperparameter name.
        rng: `numpy.random.Generator`.
        force_mutations: action names that always apply.
        default_mu: base probability used when `hparams` has no `_mu_`.

    Returns:
        Whether to apply the mutation.
    """
    if mutation in force_mutations:
        return True
    mu = hparams.get(MU_KEY, default_mu)
    key = MU_PREFIX + mutation
    probability = hparams.get(key, mu)
    if MU_KEY in grids:
        if rng.random() < mu:
            probability = incremental_mutation(probability, grids[MU_KEY], rng)
        hparams[key] = probability
    return bool(rng.random() < probability)


def mutate_hparams(hparams, grids, rng, force_mutations=(), default_mu=DEFAULT_MU):
    """Mutate every hyperparameter of `hparams` that has a grid, in sorted key order.

    For each key present in both `hparams` and `grids`, `do_mutate(hparams, "hp:" + key)`
    decides whether the value moves to a neighbouring grid entry.

    Args:
        hparams: dict of hyperparameters; updated in place and returned.
        grids: dict of mutation grids by hyperparameter name.
        rng: `numpy.random.Generator`.
        force_mutations: action names that always apply.
        default_mu: base probability used when `hparams` has no `_mu_`.

    Returns:
        `hparams`.
    """
    for key in sorted(grids):
        if key not in hparams:
            continue
        if do_mutate(hparams, HP_PREFIX + key, grids, rng, force_mutations, default_mu):
            hparams[key] = incremental_mutation(hparams[key], grids[key], rng)
    return hparams


def sample_ds_hparams(
    defaults, grids, rng, num_classes, best_hparams=None, force_mutations=(), default_mu=DEFAULT_MU
):
    """Sample the data hyperparameters shared by all candidates of one generation.

    Starts from the `ds_*` defaults. When the agent has a best path, its `ds_*` values and
    their mutation probabilities (`_mu_|hp:ds_*`) replace the defaults and are mutated once
    with the base probability `default_mu` (the dict has no `_mu_` key).

    Args:
        defaults: the agent's default hyperparameters.
        grids: the agent's mutation grids.
        rng: `numpy.random.Generator`.
        num_classes: number of classes of the agent's task, stored as `num_classes`.
        best_hparams: hyperparameters of the agent's best path, or None.
        force_mutations: action names that always apply.
        default_mu: base mutation probability.

    Returns:
        dict with the `ds_*` values, their `_mu_|hp:ds_*` probabilities and `num_classes`.
    """
    ds = {key: value for key, value in defaults.items() if key.startswith(DS_PREFIX)}
    if best_hparams is not None:
        for key, value in best_hparams.items():
            if key.startswith(DS_PREFIX) or key.startswith(MU_PREFIX + HP_PREFIX + DS_PREFIX):
                ds[key] = value
        for key in list(ds):
            if key in grids:
                ds[key] = snap_to_grid(ds[key], grids[key])
        mutate_hparams(ds, grids, rng, force_mutations, default_mu)
    ds["num_classes"] = int(num_classes)
    return ds


def check_on_grids(hparams, grids):
    """Raise `ValueError` naming the first value of `hparams` that is off its grid."""
    for key in sorted(grids):
        if key in hparams:
            try:
                grid_index(hparams[key], grids[key])
            except ValueError as error:
                raise ValueError(f"Hyperparameter {key!r}: {error}") from None


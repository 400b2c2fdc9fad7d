"""Tests of hyperparameter grids, incremental mutation and self-tuned probabilities."""

import numpy as np
import pytest

from keras_multipath.agents import hparams as hp

DRAWS = 20000


def test_incremental_mutation_interior_moves_both_ways():
    rng = np.random.default_rng(0)
    grid = hp.OPT_MOMENTUM_GRID
    results = [hp.incremental_mutation(0.8, grid, rng) for _ in range(DRAWS)]
    up = np.mean([value == 0.85 for value in results])
    down = np.mean([value == 0.75 for value in results])
    assert abs(up - 0.5) < 0.015
    assert abs(down - 0.5) < 0.015
    assert up + down == 1.0


def test_incremental_mutation_clamps_at_ends():
    rng = np.random.default_rng(1)
    grid = hp.MU_GRID
    low = [hp.incremental_mutation(0.02, grid, rng) for _ in range(DRAWS)]
    high = [hp.incremental_mutation(0.3, grid, rng) for _ in range(DRAWS)]
    assert set(low) == {0.02, 0.04}
    assert set(high) == {0.28, 0.3}
    assert abs(np.mean([v == 0.02 for v in low]) - 0.5) < 0.015
    assert abs(np.mean([v == 0.3 for v in high]) - 0.5) < 0.015


def test_incremental_mutation_booleans_and_float_tolerance():
    rng = np.random.default_rng(2)
    values = {hp.incremental_mutation(True, hp.OPT_NESTEROV_GRID, rng) for _ in range(200)}
    assert values == {True, False}
    assert hp.incremental_mutation(0.1 * 3, hp.MU_GRID, rng) in (0.28, 0.3)


def test_incremental_mutation_rejects_off_grid_value():
    with pytest.raises(ValueError, match=r"Value 0\.33 is not on its mutation grid"):
        hp.incremental_mutation(0.33, hp.OPT_MOMENTUM_GRID, np.random.default_rng(0))
    with pytest.raises(ValueError, match="not on its mutation grid"):
        hp.incremental_mutation(1, hp.OPT_NESTEROV_GRID, np.random.default_rng(0))


def test_snap_to_grid_picks_nearest_number():
    assert hp.snap_to_grid(12, tuple(range(4))) == 3
    assert hp.snap_to_grid(0.021, hp.OPT_LR_GRID) == 0.02
    assert hp.snap_to_grid(True, hp.OPT_NESTEROV_GRID) is True


def test_do_mutate_forced_draws_nothing():
    rng = np.random.default_rng(3)
    state = rng.bit_generator.state
    hparams = {"_mu_": 0.02}
    assert hp.do_mutate(hparams, "clone:encoder_norm", hp.COMMON_GRIDS, rng, ["clone:encoder_norm"])
    assert rng.bit_generator.state == state
    assert hparams == {"_mu_": 0.02}


def test_do_mutate_frequency_and_tuned_probability():
    rng = np.random.default_rng(4)
    applied, moved_up, moved_down = 0, 0, 0
    for _ in range(DRAWS):
        hparams = {"_mu_": 0.2}
        applied += hp.do_mutate(hparams, "clone:encoderblock_0", hp.COMMON_GRIDS, rng)
        probability = hparams["_mu_|clone:encoderblock_0"]
        moved_up += probability == 0.22
        moved_down += probability == 0.18
    # The probability mutates with probability 0.2 (half up, half down), and the expected
    # application rate stays 0.2 because up and down moves cancel.
    assert abs(applied / DRAWS - 0.2) < 0.01
    assert abs(moved_up / DRAWS - 0.1) < 0.008
    assert abs(moved_down / DRAWS - 0.1) < 0.008


def test_do_mutate_uses_stored_probability():
    rng = np.random.default_rng(5)
    hits = 0
    for _ in range(DRAWS):
        hparams = {"_mu_": 0.02, "_mu_|hp:opt_lr": 0.3}
        hits += hp.do_mutate(hparams, "hp:opt_lr", hp.COMMON_GRIDS, rng)
    # The stored 0.3 moves to 0.28 with probability 0.02 * 0.5, so the rate is about 0.2999.
    assert abs(hits / DRAWS - 0.3) < 0.012


def test_do_mutate_without_mu_grid_stores_nothing():
    rng = np.random.default_rng(6)
    grids = {k: v for k, v in hp.COMMON_GRIDS.items() if k != "_mu_"}
    hparams = {}
    hits = sum(hp.do_mutate(hparams, "hp:opt_lr", grids, rng) for _ in range(DRAWS))
    assert hparams == {}
    assert abs(hits / DRAWS - hp.DEFAULT_MU) < 0.01


def test_mutate_hparams_visits_keys_in_sorted_order():
    grids = {"b": (1, 2, 3), "a": (1, 2, 3), "c": (1, 2, 3)}
    hparams = {"c": 2, "b": 2, "a": 2, "_mu_|hp:a": 0.5, "_mu_|hp:b": 0.5, "_mu_|hp:c": 0.5}

    rng = np.random.default_rng(7)
    mutated = hp.mutate_hparams(dict(hparams), grids, rng)

    expected = dict(hparams)
    reference_rng = np.random.default_rng(7)
    for key in ("a", "b", "c"):
        if reference_rng.random() < 0.5:
            expected[key] = hp.incremental_mutation(expected[key], grids[key], reference_rng)
    assert mutated == expected


def test_mutate_hparams_rate_per_key():
    rng = np.random.default_rng(8)
    changed = {"opt_lr": 0, "opt_momentum": 0}
    for _ in range(DRAWS // 4):
        hparams = {"_mu_": 0.2, "opt_lr": 0.02, "opt_momentum": 0.8, "other": "kept"}
        mutated = hp.mutate_hparams(hparams, hp.COMMON_GRIDS, rng)
        assert mutated["other"] == "kept"
        for key in changed:
            changed[key] += mutated[key] != {"opt_lr": 0.02, "opt_momentum": 0.8}[key]
    for key, count in changed.items():
        assert abs(count / (DRAWS // 4) - 0.2) < 0.02, key


def test_sample_ds_hparams_without_best_uses_defaults():
    rng = np.random.default_rng(9)
    defaults = dict(hp.COMMON_DEFAULTS, ds_image_size=32)
    ds = hp.sample_ds_hparams(defaults, hp.COMMON_GRIDS, rng, num_classes=10)
    assert ds == {k: v for k, v in defaults.items() if k.startswith("ds_")} | {"num_classes": 10}


def test_sample_ds_hparams_from_best_path():
    grids = dict(hp.COMMON_GRIDS, ds_image_size=(16, 32, 48))
    defaults = dict(hp.COMMON_DEFAULTS, ds_image_size=32)
    best = dict(defaults, ds_image_size=48, ds_flip_left_right=True, opt_lr=0.5)
    best["_mu_|hp:ds_image_size"] = 0.3
    best["_mu_|hp:opt_lr"] = 0.3
    rng = np.random.default_rng(10)
    sizes = []
    for _ in range(2000):
        ds = hp.sample_ds_hparams(defaults, grids, rng, num_classes=3, best_hparams=best)
        assert "opt_lr" not in ds
        assert "_mu_|hp:opt_lr" not in ds
        assert "_mu_" not in ds
        assert ds["num_classes"] == 3
        assert ds["_mu_|hp:ds_image_size"] in (0.28, 0.3)
        sizes.append(ds["ds_image_size"])
    # 48 is the top of the grid: it moves to 32 with probability about 0.3 * 0.5.
    assert abs(np.mean(np.array(sizes) == 32) - 0.15) < 0.025
    assert set(sizes) == {32, 48}

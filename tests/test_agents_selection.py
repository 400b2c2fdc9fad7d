"""Tests of the decay parent selection and its random fallback."""

import types

import numpy as np
import pytest

from keras_multipath.agents.selection import rank_paths, select_parent

DRAWS = 20000


def make_path(path_id, score, offsprings=0):
    return types.SimpleNamespace(id=path_id, metrics={"score": score, "offsprings": offsprings})


def test_rank_paths_best_first_oldest_wins_ties():
    paths = [make_path(3, 0.5), make_path(1, 0.9), make_path(2, 0.9)]
    assert [p.id for p in rank_paths(paths)] == [1, 2, 3]


def test_select_parent_fresh_best_always_chosen():
    rng = np.random.default_rng(0)
    own = [make_path(1, 0.2), make_path(2, 0.7)]
    assert select_parent(own, own, rng).id == 2
    assert own[1].metrics["offsprings"] == 1
    assert own[0].metrics["offsprings"] == 0


def test_select_parent_decay_frequencies():
    rng = np.random.default_rng(1)
    others = [make_path(100 + i, 0.1) for i in range(5)]
    counts = {}
    for _ in range(DRAWS):
        own = [make_path(1, 0.9, 1), make_path(2, 0.8, 1), make_path(3, 0.7, 1)]
        chosen = select_parent(own, own + others, rng)
        counts[chosen.id] = counts.get(chosen.id, 0) + 1
    # Own paths: 1/2, 1/4, 1/8; the remaining 1/8 is spread uniformly over 8 visible paths.
    fallback = 0.125 / 8
    expected = {1: 0.5 + fallback, 2: 0.25 + fallback, 3: 0.125 + fallback}
    expected.update({100 + i: fallback for i in range(5)})
    for path_id, probability in expected.items():
        assert abs(counts.get(path_id, 0) / DRAWS - probability) < 0.012, path_id


def test_select_parent_offsprings_accumulate():
    rng = np.random.default_rng(2)
    best = make_path(1, 0.9)
    others = [make_path(2, 0.1)]
    chosen = [select_parent([best], [best] + others, rng).id for _ in range(2000)]
    # Acceptance probability halves with each child, so the decay rule accepts the best
    # path about log2(2000) ~ 11 times; the other draws come from the uniform fallback.
    assert 5 <= best.metrics["offsprings"] <= 20
    fallback_draws = 2000 - best.metrics["offsprings"]
    assert abs(chosen.count(2) / fallback_draws - 0.5) < 0.05


def test_select_parent_empty_population_uses_fallback():
    rng = np.random.default_rng(3)
    visible = [make_path(i, 0.0) for i in range(4)]
    counts = np.bincount([select_parent([], visible, rng).id for _ in range(DRAWS)], minlength=4)
    assert np.all(np.abs(counts / DRAWS - 0.25) < 0.012)


def test_select_parent_nothing_visible_raises():
    with pytest.raises(ValueError, match="No parent available"):
        select_parent([], [], np.random.default_rng(0))

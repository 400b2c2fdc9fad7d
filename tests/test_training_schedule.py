"""Tests of the warm-up cosine schedule and the candidate optimizer."""

import math

import keras
import numpy as np
import pytest

from keras_multipath.training.schedule import WarmupCosine, make_optimizer

HPARAMS = {"opt_lr": 0.1, "opt_lr_warmup_ratio": 0.1, "opt_momentum": 0.9, "opt_nesterov": True}


def test_warmup_cosine_values():
    schedule = WarmupCosine(0.1, total_steps=100, warmup_steps=10)
    values = [float(schedule(step)) for step in (0, 5, 10, 55, 100, 150)]
    expected = [1e-4, 1e-4 + (0.1 - 1e-4) * 0.5, 0.1, 0.05, 0.0, 0.0]
    np.testing.assert_allclose(values, expected, atol=1e-7)


def test_warmup_cosine_without_warmup_starts_at_peak():
    schedule = WarmupCosine(0.02, total_steps=40)
    assert float(schedule(0)) == pytest.approx(0.02)
    assert float(schedule(20)) == pytest.approx(0.01)
    assert float(schedule(10)) == pytest.approx(0.01 * (1 + math.cos(math.pi / 4)), rel=1e-5)


def test_warmup_cosine_serialization_round_trip():
    schedule = WarmupCosine(0.05, total_steps=30, warmup_steps=3)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert isinstance(restored, WarmupCosine)
    assert restored.get_config() == {"learning_rate": 0.05, "total_steps": 30, "warmup_steps": 3}


def test_warmup_cosine_rejects_bad_arguments():
    with pytest.raises(ValueError, match="warmup_steps=20, total_steps=10"):
        WarmupCosine(0.1, 10, 20)
    with pytest.raises(ValueError, match="learning_rate=0"):
        WarmupCosine(0, 10)


def test_make_optimizer_settings():
    optimizer = make_optimizer(HPARAMS, total_steps=50)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer.momentum == 0.9
    assert optimizer.nesterov is True
    assert optimizer.global_clipnorm == 1.0
    schedule = optimizer._learning_rate
    assert isinstance(schedule, WarmupCosine)
    assert (schedule.total_steps, schedule.warmup_steps) == (50, 5)


def test_make_optimizer_clips_global_norm():
    variable = keras.Variable(np.zeros(4, "float32"))
    optimizer = make_optimizer(dict(HPARAMS, opt_lr_warmup_ratio=0.0, opt_momentum=0.5), 10)
    optimizer.apply_gradients([(keras.ops.convert_to_tensor(np.full(4, 100.0, "float32")), variable)])
    # The gradient of norm 200 is clipped to norm 1 (0.5 per entry); Nesterov SGD then moves
    # each entry by lr * (1 + momentum) * 0.5 on the first step.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), np.full(4, -0.1 * 1.5 * 0.5), rtol=1e-5)


def test_make_optimizer_errors():
    with pytest.raises(ValueError, match="Missing optimizer hyperparameters"):
        make_optimizer({"opt_lr": 0.1}, 10)
    with pytest.raises(ValueError, match="Unsupported opt_lr_schedule 'linear'"):
        make_optimizer(dict(HPARAMS, opt_lr_schedule="linear"), 10)

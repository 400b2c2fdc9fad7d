"""Shared pytest set-up: quiet TensorFlow, one torch thread, and backend helpers."""

import os

# These must be set before TensorFlow, JAX or torch are imported anywhere in the session.
# TF_CPP_MIN_LOG_LEVEL=2 hides TensorFlow's start-up INFO and WARNING lines (the oneDNN and
# CPU-feature banner) without turning oneDNN off.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# torch threads thrash when the two CI cores are shared with other processes.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import keras  # noqa: E402
import pytest  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")


@pytest.fixture(autouse=True)
def _seed_everything():
    """Give every test the same Keras, numpy and Python random state."""
    keras.utils.set_random_seed(1337)
    yield


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.backend.backend()}"

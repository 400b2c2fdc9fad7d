"""Training of one candidate: the `PathTuner` and the learning-rate schedule."""

from keras_multipath.training.schedule import WarmupCosine, make_optimizer

_LAZY_EXPORTS = {"PathTuner": "keras_multipath.training.tuner"}


def __getattr__(name):
    if name in _LAZY_EXPORTS:
        import importlib

        return getattr(importlib.import_module(_LAZY_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

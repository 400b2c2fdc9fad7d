"""keras_multipath: multipath agents for modular multitask learning in Keras 3."""

__version__ = "0.1.0"

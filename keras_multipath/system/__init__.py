"""The modular system: components, paths, the store, and model assembly.

Importing this package or `keras_multipath.system.store` does not import Keras, so processes
that only read or write the store start fast. `Assembler`, `export_path` and
`check_immutability` import Keras on first access.
"""

from keras_multipath.system.component import Component
from keras_multipath.system.filesystem import FileSystem, GFileSystem, LocalFileSystem
from keras_multipath.system.names import (
    ROOT_AGENT_ID,
    agent_kind,
    agent_task_name,
    make_agent_id,
    make_key,
    parse_key,
    validate_agent_id,
    validate_task_name,
)
from keras_multipath.system.path import Path
from keras_multipath.system.state import AgentState
from keras_multipath.system.store import CorruptStateError, Store, StoreError
from keras_multipath.system.system import System

_KERAS_EXPORTS = {
    "Assembler": "keras_multipath.system.assembly",
    "ImmutabilityError": "keras_multipath.system.export",
    "check_immutability": "keras_multipath.system.export",
    "export_path": "keras_multipath.system.export",
    "prediction_digest": "keras_multipath.system.export",
}


def __getattr__(name):
    if name in _KERAS_EXPORTS:
        import importlib

        return getattr(importlib.import_module(_KERAS_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Search: mutation, parent selection, scoring, root models and the singlepath agent.

The oracle (keras-tuner) and the root-model functions load on first access.
"""

from keras_multipath.agents.candidate import make_candidate
from keras_multipath.agents.config import AGENT_CONFIG_NAMES, AgentConfig, get_agent_config
from keras_multipath.agents.hparams import do_mutate, incremental_mutation, mutate_hparams, sample_ds_hparams
from keras_multipath.agents.scoring import Scorer, vit_forward_flops
from keras_multipath.agents.selection import rank_paths, select_parent

_LAZY_EXPORTS = {
    "SinglepathOracle": "keras_multipath.agents.singlepath",
    "RootModel": "keras_multipath.agents.root",
    "random_root": "keras_multipath.agents.root",
    "root_from_keras_hub_preset": "keras_multipath.agents.root",
    "root_from_npz": "keras_multipath.agents.root",
    "publish_root": "keras_multipath.agents.root",
}


def __getattr__(name):
    if name in _LAZY_EXPORTS:
        import importlib

        return getattr(importlib.import_module(_LAZY_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

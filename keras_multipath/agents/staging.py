"""Staged component weights: what a finished trial leaves for the agent to publish.

A trial writes into its keras-tuner trial folder `components.json` (the `Component` records
of the components it created, keyed by component key) and `weights.npz` (their weights, keys
`"<position in components.json>/<weight index>"`, read without pickle). The agent reads them
when it publishes the candidate into the store. The files are written to temporary names and
renamed, so a trial killed while staging leaves no partial files.
"""

import json
import os

import numpy as np

COMPONENTS_FILE = "components.json"
WEIGHTS_FILE = "weights.npz"


def stage_components(folder, components, weights):
    """Write component records and weights of one trial into `folder`.

    Args:
        folder: the trial folder.
        components: list of `keras_multipath.system.Component`.
        weights: {component key: list of numpy arrays}.
    """
    os.makedirs(folder, exist_ok=True)
    arrays = {}
    for position, component in enumerate(components):
        for index, value in enumerate(weights[component.key]):
            arrays[f"{position}/{index}"] = np.asarray(value)
    weights_path = os.path.join(folder, WEIGHTS_FILE)
    with open(weights_path + ".tmp", "wb") as f:
        np.savez(f, **arrays)
    os.replace(weights_path + ".tmp", weights_path)
    records = [component.to_json() for component in components]
    components_path = os.path.join(folder, COMPONENTS_FILE)
    with open(components_path + ".tmp", "w") as f:
        json.dump({"components": records}, f)
    os.replace(components_path + ".tmp", components_path)


def read_staged_components(folder):
    """Return `({key: Component}, {key: list of numpy arrays})` staged in `folder`.

    Raises:
        FileNotFoundError: when the trial staged nothing.
    """
    from keras_multipath.system import Component

    with open(os.path.join(folder, COMPONENTS_FILE)) as f:
        records = [Component.from_json(data) for data in json.load(f)["components"]]
    weights = {}
    with np.load(os.path.join(folder, WEIGHTS_FILE), allow_pickle=False) as npz:
        for position, record in enumerate(records):
            weights[record.key] = [
                np.array(npz[f"{position}/{index}"]) for index in range(len(record.weight_shapes))
            ]
    return {record.key: record for record in records}, weights

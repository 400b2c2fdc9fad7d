"""Tests of a multipath search on real tasks: trained fraction, frozen paths, metrics,
resume after an interruption, the leaderboard and export of the winner."""

import os
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from multipath_search import LoggingTuner, prepare_system, run  # noqa: E402

from keras_multipath.system import Store  # noqa: E402
from keras_multipath.system import multipath_model as mp  # noqa: E402
from keras_multipath.system.assembly import Assembler  # noqa: E402
from keras_multipath.system.leaderboard import Leaderboard, export_best_model  # noqa: E402

TASK = "digits"
AGENT_ID = "multipath~digits"


class SimulatedKill(BaseException):
    """Raised inside a trial; keras-tuner catches only `Exception`, so the search stops as
    if the process had been killed."""


class KilledTuner(LoggingTuner):
    kill_at = "0001"

    def run_trial(self, trial, *args, **kwargs):
        if trial.trial_id == self.kill_at:
            with open(self.log, "a") as f:
                f.write(f"start {trial.trial_id}\n")
            raise SimulatedKill()
        return super().run_trial(trial, *args, **kwargs)


def subpath_keys(store):
    keys = set()
    system = store.load_system()
    for agent_id in ("singlepath~digits", "singlepath~mnist_5k", system.root_agent_id):
        for path in system.published_paths(agent_id):
            keys.update(path.components)
    return sorted(keys)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A store with singlepath models of digits and mnist_5k, and one multipath cycle of
    digits that was interrupted in its second trial and resumed."""
    directory = str(tmp_path_factory.mktemp("multipath"))
    log = os.path.join(directory, "trials.log")
    store = prepare_system(directory, examples_cap=320)
    before = {key: store.read_weights(key) for key in subpath_keys(store)}

    with pytest.raises(SimulatedKill):
        run(directory, TASK, num_samples=2, examples_cap=96, seed=0, log=log,
            tuner_class=KilledTuner)
    interrupted = store.read_state(AGENT_ID)
    store, oracle, tuner = run(directory, TASK, num_samples=2, examples_cap=96, seed=0, log=log)
    return {
        "directory": directory, "log": log, "store": Store(store.root), "oracle": oracle,
        "tuner": tuner, "before": before, "interrupted": interrupted,
    }


def published(store, agent_id=AGENT_ID):
    state = store.read_state(agent_id)
    return state, state.paths[state.published[0]]


def test_cycle_trains_small_fraction(searched):
    state, path = published(searched["store"])
    metrics = path.metrics
    system = searched["store"].load_system()
    trained, activated = mp.parameter_counts(system, path)
    num_paths = path.hparams["num_paths"]
    assert metrics["trained_params"] == trained
    assert metrics["activated_params"] == activated
    assert metrics["trained_fraction"] == pytest.approx(trained / activated)
    assert metrics["trained_fraction"] < 0.05
    # Router: LayerNorm (2C) + Dense (C n + n); connectors: (D + 1) C each, D = 32.
    assert trained == 2 * 10 + 10 * num_paths + num_paths + (num_paths - 1) * 33 * 10
    means = [metrics[f"router_weight_mean_{k}"] for k in range(num_paths)]
    assert sum(means) == pytest.approx(1.0, abs=1e-5)
    assert all(0.0 < mean < 1.0 for mean in means)
    assert metrics["score"] == metrics["quality"]
    assert 0.0 <= metrics["test_quality"] <= 1.0
    records = path.hparams["paths"]
    assert records["path_0"]["agent_id"] == "singlepath~digits"
    assert all(records[f"path_{k}"]["hparams"]["num_classes"] == 0 for k in range(1, num_paths))
    assert {records[f"path_{k}"]["agent_id"] for k in range(1, num_paths)} <= {
        "singlepath~mnist_5k", "singlepath~root_model~random_init"
    }


def test_subpath_weights_bit_identical(searched):
    store = Store(searched["store"].root)
    for key, weights in searched["before"].items():
        for before, after in zip(weights, store.read_weights(key)):
            np.testing.assert_array_equal(before, after)
    # The layers the tuner trained with contain the same values as the store.
    assembler = searched["tuner"].assembler
    _, path = published(store)
    for key in path.components:
        if key in searched["before"] and key in assembler.cached_keys:
            for before, layer_weight in zip(searched["before"][key], assembler.layer(key).get_weights()):
                np.testing.assert_array_equal(before, layer_weight)


def test_router_weights_per_sample(searched):
    store = searched["store"]
    system = store.load_system()
    _, path = published(store)
    model = Assembler(store, system).build_model(system.path(path.key))
    from keras_multipath.data import get_task, make_dataset

    sizes = path.hparams["ds_image_size"]
    data = make_dataset(get_task(TASK), "validation", 32, image_sizes=sizes,
                        max_validation_examples=64)
    weights = mp.router_weights(model, data)
    assert weights.shape == (64, path.hparams["num_paths"])
    np.testing.assert_allclose(weights.sum(axis=-1), np.ones(64), rtol=1e-5)


def read_log(path):
    with open(path) as f:
        return f.read().split("\n")[:-1]


def test_resumes_after_interruption(searched):
    assert searched["interrupted"].state_name == "state_0_1"
    # Trial 0000 ran once; the interrupted 0001 started again and finished.
    assert read_log(searched["log"]) == [
        "start 0000", "end 0000", "start 0001", "start 0001", "end 0001"
    ]
    state, _ = published(searched["store"])
    assert state.state_name == "state_1_0"
    assert state.oracle_state["search"]["finished_trials"] == ["0000", "0001"]
    assert state.next_path_id == 2
    ids = [int(key.split(":")[1]) for key in state.components]
    assert len(ids) == len(set(ids))
    assert max(ids) < state.next_component_id


def test_leaderboard_export_reproduces_test_accuracy(searched, tmp_path):
    store = searched["store"]
    board = Leaderboard(store)
    entries = board.entries(TASK)
    assert [e.kind for e in entries] in (["singlepath", "multipath"], ["multipath", "singlepath"])
    qualities = {e.kind: e.quality for e in entries}
    winner = board.best_path(TASK)
    assert winner.metrics["quality"] == max(qualities.values())
    if qualities["multipath"] != qualities["singlepath"]:
        expected_kind = max(qualities, key=qualities.get)
        assert winner.agent_id == f"{expected_kind}~{TASK}"

    filepath = str(tmp_path / "digits.keras")
    path, _ = export_best_model(store, TASK, filepath, leaderboard=board)
    assert path.key == winner.key
    from keras_multipath.data import get_task, make_dataset

    # The loading process gets the test split as arrays, so it imports neither the store
    # nor the input pipeline.
    test = make_dataset(get_task(TASK), "test", 32, image_sizes=path.hparams["ds_image_size"])
    arrays = {}
    for images, labels in test:
        images = images if isinstance(images, dict) else {"": images}
        for key, value in images.items():
            arrays.setdefault(f"x{key}", []).append(np.asarray(value))
        arrays.setdefault("y", []).append(np.asarray(labels))
    data_file = str(tmp_path / "test.npz")
    np.savez(data_file, **{key: np.concatenate(value) for key, value in arrays.items()})
    script = (
        "import sys, numpy as np, keras, keras_multipath.layers\n"
        f"model = keras.saving.load_model({filepath!r})\n"
        f"data = dict(np.load({data_file!r}))\n"
        "labels = data.pop('y')\n"
        "inputs = data['x'] if 'x' in data else {k[1:]: v for k, v in data.items()}\n"
        "logits = model.predict(inputs, batch_size=32, verbose=0)\n"
        "print(repr(float(np.mean(np.argmax(logits, -1) == labels))))\n"
        "assert not any(m.startswith('keras_multipath.system') for m in sys.modules)\n"
        "assert 'keras_multipath.data' not in sys.modules\n"
    )
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    accuracy = float(result.stdout.decode().strip().splitlines()[-1])
    assert accuracy == pytest.approx(path.metrics["test_quality"], rel=1e-6)


def test_new_oracle_adopts_finished_cycle(searched):
    from multipath_search import make_multipath_config

    from keras_multipath.agents.multipath import MultipathOracle
    from keras_multipath.data import get_task

    task = get_task(TASK)
    oracle = MultipathOracle(
        searched["store"], TASK, task.num_classes, task.num_examples("train"),
        make_multipath_config(2, 96), max_cycles=1, seed=0,
    )
    # The first proposal loads the stored search, whose one allowed cycle has ended.
    response = oracle.populate_space("0100")
    assert response["status"] == "STOPPED"
    assert oracle.search["cycle"] == 1
    assert oracle.search["done"] is True

"""Tests of the singlepath agent: oracle state, determinism, assembly, training cycles,
transfer between tasks and failed candidates."""

import json
import os
import sys

import keras
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from singlepath_search import make_config, run  # noqa: E402

from keras_multipath.agents.config import get_agent_config  # noqa: E402
from keras_multipath.agents.root import publish_root, random_root  # noqa: E402
from keras_multipath.agents.singlepath import SinglepathOracle  # noqa: E402
from keras_multipath.data import from_arrays, get_task, make_dataset  # noqa: E402
from keras_multipath.layers.vit import Head, apply_vit_components  # noqa: E402
from keras_multipath.system import Store  # noqa: E402
from keras_multipath.system.assembly import Assembler  # noqa: E402
from keras_multipath.training.schedule import make_optimizer  # noqa: E402
from keras_multipath.training.tuner import PathTuner  # noqa: E402

FIRST_TASK = "mnist_5k"


def make_oracle(directory, seed=0, candidates_per_generation=3, task_name="mnist_5k"):
    config = make_config(num_samples=3, examples_cap=64).replace(
        candidates_per_generation=candidates_per_generation
    )
    store = Store(os.path.join(directory, "store"))
    keras.utils.set_random_seed(0)
    publish_root(store, random_root(config.variant, config.root_image_size), config)
    return SinglepathOracle(store, task_name, 10, 4000, config, seed=seed)


def propose(oracle, trial_id):
    response = oracle.populate_space(trial_id)
    assert response["status"] == "RUNNING"
    return response["values"]["candidate"]


def test_oracle_state_json_round_trip(tmp_path):
    first = make_oracle(tmp_path / "a", seed=3)
    propose(first, "0")
    propose(first, "1")
    state = json.loads(json.dumps(first.get_state()))

    second = make_oracle(tmp_path / "b", seed=99)
    second.store = first.store
    second.set_state(state)
    assert json.loads(json.dumps(second.get_state())) == state
    assert state["search"]["next_path_id"] == 2
    assert state["search"]["generation_trials"] == ["0", "1"]
    # Both continue with the same random generator state, so they propose the same third
    # candidate.
    assert propose(second, "2") == propose(first, "2")


def test_same_seed_same_candidates(tmp_path):
    runs = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        oracle = make_oracle(tmp_path / name, seed=seed)
        runs[name] = [propose(oracle, str(i)) for i in range(3)]
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]


def test_generation_shares_ds_hparams(tmp_path):
    oracle = make_oracle(tmp_path, seed=2, candidates_per_generation=3)
    candidates = [json.loads(propose(oracle, str(i))) for i in range(3)]
    ds = [{k: v for k, v in c["hparams"].items() if k.startswith("ds_")} for c in candidates]
    assert ds[0] == ds[1] == ds[2]
    assert {c["data_seed"] for c in candidates} == {candidates[0]["data_seed"]}
    assert [c["path_key"] for c in candidates] == [f"singlepath~mnist_5k:{i}" for i in range(3)]


def test_generation_waits_for_its_trials(tmp_path):
    oracle = make_oracle(tmp_path, candidates_per_generation=1)
    propose(oracle, "0")
    assert oracle.populate_space("1")["status"] == "IDLE"


@pytest.fixture()
def tiny_task():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (120, 16, 16), dtype=np.uint8)
    labels = np.arange(120) % 3
    return from_arrays("tiny", images, labels, num_classes=3)


def test_assembled_candidate_shares_layer_objects(tmp_path, tiny_task):
    oracle = make_oracle(tmp_path, task_name="tiny")
    tuner = PathTuner(oracle, tiny_task, directory=str(tmp_path), project_name="tiny")
    candidate = json.loads(propose(oracle, "0"))
    model, trainable = tuner.assemble(candidate)

    root = oracle.system.root_path
    root_model = tuner.assembler.build_model(root)
    root_layers = {layer.name: layer for layer in root_model.layers}
    model_layers = list(model.layers[1:])
    for entry, layer in zip(candidate["components"], model_layers):
        if entry["action"] == "share":
            assert layer is tuner.assembler.layer(entry["source"])
            assert root_layers[layer.name] is layer
            assert not layer.trainable
        else:
            assert entry["key"] in trainable
            assert all(layer is not other for other in root_layers.values())
            assert layer.trainable
    clone = next(e for e in candidate["components"] if e["action"] == "clone")
    for mine, source in zip(trainable[clone["key"]].get_weights(),
                            tuner.assembler.layer(clone["source"]).get_weights()):
        np.testing.assert_array_equal(mine, source)
    trainable_ids = {id(w) for layer in trainable.values() for w in layer.trainable_weights}
    assert {id(w) for w in model.trainable_weights} == trainable_ids


def test_tuner_reuses_replayable_pipelines(tmp_path, tiny_task):
    oracle = make_oracle(tmp_path, task_name="tiny")
    tuner = PathTuner(oracle, tiny_task, directory=str(tmp_path), project_name="pipelines")
    augment = {"ds_flip_left_right": True, "opt_lr": 0.1}
    train = tuner.dataset("train", 8, 16, ds_hparams=augment, seed=5)
    validation = tuner.dataset("validation", 8, 16, max_validation_examples=40)
    # Keys that are not augmentations (opt_lr) do not split the cache.
    assert tuner.dataset("train", 8, 16, ds_hparams={"ds_flip_left_right": True}, seed=5) is train
    assert tuner.dataset("validation", 8, 16, max_validation_examples=40) is validation
    assert tuner.dataset("train", 8, 16, seed=5) is not train
    assert tuner.dataset("validation", 4, 16, max_validation_examples=40) is not validation
    # A new seed starts a new generation: its training pipelines replace the old seed's.
    newer = tuner.dataset("train", 8, 16, ds_hparams=augment, seed=6)
    assert newer is not train
    assert tuner.dataset("train", 8, 16, ds_hparams=augment, seed=5) is not train
    assert tuner.dataset("validation", 8, 16, max_validation_examples=40) is validation
    # A reused pipeline feeds each fit the stream a fresh one would.
    fresh = make_dataset(tiny_task, "train", 8, image_sizes=16, ds_hparams=augment, seed=6)
    for _ in range(2):
        for (a, la), (b, lb) in zip(newer.take(20), fresh.take(20)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
            np.testing.assert_array_equal(np.asarray(la), np.asarray(lb))
    for seed in range(20):
        tuner.dataset("train", 8, 16, seed=7, max_validation_examples=seed)
    assert len(tuner._datasets) == 8


def baseline_accuracy(store, task, config, steps):
    """Validation accuracy of the frozen root plus a zero head trained for `steps` steps."""
    system = store.load_system()
    layers = Assembler(store, system).path_layers(system.root_path)
    layers["head"] = Head(task.num_classes)
    inputs = keras.Input((config.root_image_size, config.root_image_size, 3))
    model = keras.Model(inputs, apply_vit_components(layers, inputs))
    model.compile(
        optimizer=make_optimizer(config.hparams_defaults, steps),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    size = config.root_image_size
    model.fit(make_dataset(task, "train", config.batch_size, image_sizes=size, seed=0),
              steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)
    validation = make_dataset(task, "validation", config.batch_size, image_sizes=size,
                              max_validation_examples=config.num_validation_examples_max)
    return model.evaluate(validation, verbose=0, return_dict=True)["accuracy"]


@pytest.fixture(scope="module")
def first_search(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("first"))
    store, oracle, tuner = run(directory, FIRST_TASK, num_samples=2, examples_cap=320, seed=1)
    return directory, store, oracle


def test_assembler_outlives_system_reload(tmp_path, tiny_task):
    oracle = make_oracle(tmp_path, task_name="tiny")
    tuner = PathTuner(oracle, tiny_task, directory=str(tmp_path), project_name="reload")
    assembler = tuner.assembler
    before = assembler.path_layers(oracle.system.root_path)
    first_system = oracle.system

    # The oracle drops its system at the end of a cycle and reloads it from the store.
    oracle._system = None
    assert oracle.system is not first_system
    assert tuner.assembler is assembler
    assert assembler.system is oracle.system
    after = assembler.path_layers(oracle.system.root_path)
    assert list(after) == list(before)
    for name, layer in before.items():
        assert after[name] is layer, name


def test_cycle_beats_root_plus_head(first_search):
    _, store, oracle = first_search
    state = store.read_state(oracle.agent_id)
    assert state.state_name == "state_1_0"
    best = state.paths[state.published[0]]
    steps = oracle.config.num_samples_per_cycle * oracle.config.total_steps(4000)
    baseline = baseline_accuracy(store, get_task(FIRST_TASK), oracle.config, steps)
    assert best.metrics["quality"] > baseline, (best.metrics["quality"], baseline)
    assert 0 < best.metrics["accounted_params"] < best.metrics["num_params"]
    assert 0.0 <= best.metrics["test_quality"] <= 1.0
    assert sorted(oracle.trials) == ["0000", "0001"]
    # One candidate per generation: the end-of-cycle state keeps both generations' history.
    assert sorted(path.id for path in state.history) == [0, 1]


def test_second_task_reuses_frozen_components(first_search):
    directory, store, first = first_search
    published_first = store.read_state(first.agent_id).published[0]
    first_path = store.read_state(first.agent_id).paths[published_first]

    # With seed 1 the first draw of the random fallback picks the first task's path (the
    # visible paths are sorted by agent id) over the root model.
    _, oracle, _ = run(directory, "digits", num_samples=1, examples_cap=64, seed=1)
    state = store.read_state(oracle.agent_id)
    best = state.paths[state.published[0]]
    assert best.parent == published_first
    reused = [key for key in best.components if key in first_path.components]
    assert reused, best.components
    system = store.load_system()
    for key in reused:
        assert system.locks[key] >= {first.agent_id, oracle.agent_id}
        for stored, again in zip(store.read_weights(key), Store(store.root).read_weights(key)):
            np.testing.assert_array_equal(stored, again)
    assert best.metrics["accounted_params"] < sum(system.component(k).num_params for k in best.components)

    # The first agent's next cycle rescores its best path: the shared components now cost it
    # half their parameters.
    again = SinglepathOracle(store, FIRST_TASK, 10, 4000, first.config, max_cycles=2, seed=1)
    (rescored,) = again.population()
    assert rescored.key == published_first
    assert rescored.metrics["accounted_params"] < first_path.metrics["accounted_params"]
    assert rescored.metrics["score"] > first_path.metrics["score"]


def test_non_finite_loss_fails_candidate(tmp_path, tiny_task):
    config = make_config(num_samples=2, examples_cap=32)
    store = Store(str(tmp_path / "store"))
    root = random_root(config.variant, config.root_image_size)
    bias = root.components["embedding"].bias
    bias.assign(np.full(bias.shape, np.inf, "float32"))
    publish_root(store, root, config)
    oracle = SinglepathOracle(store, "tiny", 3, 96, config, seed=0)
    tuner = PathTuner(oracle, tiny_task, directory=str(tmp_path), project_name="tiny")
    tuner.search(verbose=0)
    statuses = [oracle.trials[t].status for t in sorted(oracle.trials)]
    assert statuses == ["FAILED", "FAILED"]
    assert "the training loss became nan at step 1" in oracle.trials["0000"].message
    state = store.read_state(oracle.agent_id)
    assert state.state_name == "state_1_0"
    assert state.published == []


@pytest.mark.slow
def test_cpu_config_cycle_on_animal_mnist(tmp_path):
    # The unchanged cpu configuration: 4 candidates of 4 x 63 steps of batch 32 at 16 px.
    full = get_agent_config("cpu")
    store = Store(str(tmp_path / "store"))
    keras.utils.set_random_seed(0)
    publish_root(store, random_root(full.variant, full.root_image_size), full)
    task = get_task("animal_mnist")
    oracle = SinglepathOracle(store, "animal_mnist", 10, task.num_examples("train"), full, seed=0)
    PathTuner(oracle, task, directory=str(tmp_path), project_name="animal_mnist").search(verbose=0)
    state = store.read_state(oracle.agent_id)
    best = state.paths[state.published[0]]
    steps = full.num_samples_per_cycle * full.total_steps(task.num_examples("train"))
    baseline = baseline_accuracy(store, task, full, steps)
    assert best.metrics["quality"] > baseline + 0.05, (best.metrics["quality"], baseline)


@pytest.mark.slow
def test_raised_cycle_limit_continues_agent(first_search, tmp_path):
    _, store, first = first_search
    before = store.read_state(first.agent_id)
    task = get_task(FIRST_TASK)
    oracle = SinglepathOracle(store, FIRST_TASK, 10, task.num_examples("train"), first.config,
                              max_cycles=2, seed=1)
    # A new keras-tuner project: the search state comes from the store.
    PathTuner(oracle, task, directory=str(tmp_path), project_name="again").search(verbose=0)
    after = store.read_state(first.agent_id)
    assert (before.state_name, after.state_name) == ("state_1_0", "state_2_0")
    statuses = {trial_id: trial.status for trial_id, trial in oracle.trials.items()}
    assert statuses == {"0000": "COMPLETED", "0001": "COMPLETED"}
    assert after.next_path_id == before.next_path_id + 2
    best = after.paths[after.published[0]]
    assert best.metrics["score"] >= before.paths[before.published[0]].metrics["score"]

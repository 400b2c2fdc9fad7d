"""Tests of multipath candidates without training: configuration, sampling rules, the model
at initialisation and export, on a store of hand-made singlepath models."""

import keras
import numpy as np
import pytest

from keras_multipath.agents import hparams as hp
from keras_multipath.agents.config import get_agent_config
from keras_multipath.agents.multipath import (
    MissingMainPathError,
    MultipathOracle,
    get_multipath_config,
    main_path_of,
    multipath_config,
    sample_multipath,
)
from keras_multipath.agents.root import publish_root, random_root
from keras_multipath.data import get_task, make_dataset
from keras_multipath.layers import (
    Head,
    MultipathRouter,
    PositionEmbedding,
    resample_position_embedding,
)
from keras_multipath.system import Component, Path, Store
from keras_multipath.system import multipath_model as mp
from keras_multipath.system.assembly import Assembler
from keras_multipath.system.leaderboard import Leaderboard, best_path

NUM_CLASSES = 10  # digits


def publish_singlepath(store, task_name, image_size, quality, num_classes=NUM_CLASSES, seed=0,
                       kind="singlepath"):
    """Publish a path of agent `<kind>~<task_name>` made of the root's frozen components, a
    position embedding for `image_size` and a random head."""
    system = store.load_system()
    root = system.root_path
    agent_id = f"{kind}~{task_name.replace('/', '~')}"
    state = store.resume(agent_id)
    rng = np.random.default_rng(seed)
    records, weights, keys = [], {}, []

    def add(name, layer, values):
        record = Component(
            name=name, agent_id=agent_id, id=state.new_component_id(),
            num_params=int(sum(v.size for v in values)),
            layer_config=keras.saving.serialize_keras_object(layer),
            weight_shapes=[list(v.shape) for v in values],
        )
        records.append(record)
        weights[record.key] = values
        return record.key

    for key in root.components:
        name = system.component(key).name
        if name == "posembed_input" and image_size != 16:
            grid = (image_size // 4, image_size // 4)
            source = store.read_weights(key)[0]
            layer = PositionEmbedding(grid, 32)
            layer.build((None, 1 + grid[0] * grid[1], 32))
            keys.append(add(name, layer, [resample_position_embedding(source, grid, (4, 4))]))
        else:
            keys.append(key)
    head = Head(num_classes)
    head.build((None, 32))
    keys.append(add("head", head, [rng.normal(0, 1, (32, num_classes)).astype("float32"),
                                   rng.normal(0, 0.1, (num_classes,)).astype("float32")]))
    path = Path(
        agent_id=agent_id, task_name=task_name, id=state.new_path_id(),
        hparams=dict(get_agent_config("cpu").hparams_defaults, ds_image_size=image_size,
                     num_layers=2, num_classes=num_classes),
        components=keys, parent=root.key,
        metrics={"quality": quality, "score": quality, "test_quality": quality, "offsprings": 0},
    )
    # The new path replaces the agent's previous one, as at the end of a singlepath cycle.
    state.paths = {}
    state.add_path(path)
    state.published = [path.key]
    state.population = [path.key]
    state.cycle += 1
    store.publish(state, components=records, weights=weights)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = Store(str(tmp_path_factory.mktemp("mp") / "store"))
    keras.utils.set_random_seed(0)
    config = get_agent_config("cpu")
    publish_root(store, random_root(config.variant, config.root_image_size), config)
    publish_singlepath(store, "digits", 16, 0.5, seed=1)
    publish_singlepath(store, "other_a", 8, 0.4, seed=2)
    publish_singlepath(store, "other_b", 16, 0.3, seed=3)
    publish_singlepath(store, "other_c/1k", 16, 0.3, seed=4)
    return store


def make_config(**overrides):
    base = get_agent_config("cpu").replace(
        num_samples_per_cycle=1, num_train_examples_between_validations_max=32,
        num_validation_examples_max=64,
    )
    return multipath_config(base, **overrides)


def sample(store, seed, parent=None, own_best=None, config=None, num_paths=None):
    system = store.load_system()
    config = config or make_config()
    if num_paths is not None:
        config = config.replace(
            hparams_defaults=dict(config.hparams_defaults, num_paths=num_paths),
            hparams_grids=dict(config.hparams_grids, num_paths=(num_paths,)),
        )
    main = main_path_of(system, "digits")
    rng = np.random.default_rng(seed)
    ds = hp.sample_ds_hparams(config.hparams_defaults, config.hparams_grids, rng, NUM_CLASSES)
    return system, sample_multipath(
        system, "multipath~digits", main, parent or main, config, ds, rng, own_best=own_best
    )


def allocate(candidate, first_id=0):
    candidate["agent_id"] = "multipath~digits"
    candidate["path_key"] = "multipath~digits:0"
    next_id = first_id
    for entry in candidate["components"]:
        if entry["action"] == "share":
            entry["key"] = entry["source"]
        else:
            entry["key"] = f"multipath~digits:{next_id}"
            next_id += 1
    return candidate


def test_config_derived_from_singlepath():
    config = get_multipath_config("cpu")
    assert config.hparams_grids["router_lr_mult"] == (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
    assert config.hparams_grids["num_paths"] == (2, 3)
    assert config.hparams_defaults["router_lr_mult"] == 0.05
    assert config.hparams_defaults["num_paths"] == 2
    assert config.hparams_defaults["router_init_main_path_weight"] == 0.8
    assert "router_init_main_path_weight" not in config.hparams_grids
    assert "num_layers" not in config.hparams_defaults
    assert "ds_image_size" not in config.hparams_grids
    assert config.force_mutations == ()
    assert config.make_scorer().score(0.7321, accounted_params=1e12, flops=1e15) == 0.7321
    assert config.batch_size == get_agent_config("cpu").batch_size
    assert config.secondary_exclude_pattern == "~1k$"


def test_config_rejects_bad_pattern():
    with pytest.raises(ValueError, match=r"Invalid secondary_exclude_pattern '\('"):
        multipath_config(get_agent_config("cpu"), secondary_exclude_pattern="(")


@pytest.mark.parametrize(
    "grids, message",
    [
        (dict(num_paths=(1, 2)), "'num_paths' to be an int >= 2. Received: num_paths=1"),
        (dict(router_lr_mult=(0.0, 0.05)), "Received: router_lr_mult=0.0"),
        (dict(router_init_main_path_weight=(0.8, 1.0)), "Received: router_init_main_path_weight=1.0"),
    ],
)
def test_config_rejects_bad_router_values(grids, message):
    base = get_agent_config("cpu")
    config = multipath_config(base)

    with pytest.raises(ValueError, match="Expected the default and every grid value") as info:
        multipath_config(base, hparams_grids=dict(config.hparams_grids, **grids))
    assert message in str(info.value)


def test_missing_main_path_error(store):
    # The store has singlepath models of other tasks, but none of mnist.
    with pytest.raises(MissingMainPathError, match="Run the singlepath agent for task 'mnist' first"):
        MultipathOracle(store, "mnist", 10, 100, make_config())
    with pytest.raises(MissingMainPathError, match="Run the singlepath agent for task 'mnist' first"):
        main_path_of(store.load_system(), "mnist")


def test_oracle_requires_multipath_config(store):
    with pytest.raises(TypeError, match="Expected a MultipathConfig"):
        MultipathOracle(store, "digits", 10, 100, get_agent_config("cpu"))


def test_candidate_from_main_path(store):
    system, candidate = sample(store, seed=0)
    main = main_path_of(system, "digits")
    paths = candidate["hparams"]["paths"]
    assert sorted(paths) == ["path_0", "path_1"]
    assert candidate["parent"] == main.key
    assert candidate["threshold"] is None
    assert paths["path_0"]["components"] == main.components
    assert paths["path_0"]["hparams"]["num_classes"] == NUM_CLASSES
    secondary = paths["path_1"]
    assert secondary["agent_id"] != "singlepath~digits"
    assert secondary["hparams"]["num_classes"] == 0
    assert all(system.component(k).name != "head" for k in secondary["components"])
    own = [e for e in candidate["components"] if e["action"] != "share"]
    assert [(e["name"], e["action"]) for e in own] == [("router", "new"), ("connector_1", "new")]
    assert own[0]["shapes"] == [[10], [10], [10, 2], [2]]
    assert own[1]["shapes"] == [[32, 10], [10]]
    assert candidate["trained_params"] == 10 + 10 + 20 + 2 + 32 * 10 + 10
    shared = [e["source"] for e in candidate["components"] if e["action"] == "share"]
    assert len(shared) == len(set(shared))
    assert set(shared) == set(main.components) | set(secondary["components"])


def test_secondary_paths_uniform_and_excluded(store):
    chosen = set()
    for seed in range(40):
        _, candidate = sample(store, seed=seed, num_paths=3)
        agents = [p["agent_id"] for p in candidate["hparams"]["paths"].values()]
        assert agents[0] == "singlepath~digits"
        assert len(set(agents)) == 3
        chosen.update(agents[1:])
    # The root model is a candidate; the agent whose id ends in "~1k" never is.
    assert chosen == {
        "singlepath~root_model~random_init", "singlepath~other_a", "singlepath~other_b"
    }


def test_exclusion_rule_is_configurable(store):
    chosen = set()
    config = make_config(secondary_exclude_pattern="other_[ab]$")
    for seed in range(20):
        _, candidate = sample(store, seed=seed, config=config)
        chosen.add(candidate["hparams"]["paths"]["path_1"]["agent_id"])
    assert chosen == {"singlepath~root_model~random_init", "singlepath~other_c~1k"}


def test_resolutions_are_the_subpaths(store):
    sizes = set()
    for seed in range(12):
        _, candidate = sample(store, seed=seed, num_paths=3)
        records = candidate["hparams"]["paths"].values()
        expected = []
        for record in records:
            if record["hparams"]["ds_image_size"] not in expected:
                expected.append(record["hparams"]["ds_image_size"])
        assert candidate["hparams"]["ds_image_size"] == expected
        sizes.add(tuple(expected))
    assert (16, 8) in sizes


def test_inherits_paths_and_clones_router(store):
    system = store.load_system()
    config = make_config()
    _, first = sample(store, seed=3)
    assembler = Assembler(store, system)
    allocate(first)
    _, trainable = mp.assemble_candidate(assembler, first)
    parent = Path(
        agent_id="multipath~digits", task_name="digits", id=0, hparams=first["hparams"],
        components=[e["key"] for e in first["components"]], parent=first["parent"],
        metrics={"score": 0.6, "quality": 0.6},
    )
    system.add_path(parent)
    main = main_path_of(system, "digits")

    outcomes = set()
    for seed in range(30):
        rng = np.random.default_rng(seed)
        ds = hp.sample_ds_hparams(config.hparams_defaults, config.hparams_grids, rng, NUM_CLASSES)
        child = sample_multipath(system, "multipath~digits", main, parent, config, ds, rng)
        paths = child["hparams"]["paths"]
        assert paths["path_1"] == first["hparams"]["paths"]["path_1"]
        assert child["threshold"] == 0.6
        actions = {e["name"]: (e["action"], e["source"]) for e in child["components"]
                   if e["action"] != "share"}
        assert actions["connector_1"] == ("clone", parent.components[-1])
        if child["hparams"]["num_paths"] == 2:
            assert actions["router"] == ("clone", parent.components[-2])
            assert sorted(paths) == ["path_0", "path_1"]
        else:
            assert actions["router"] == ("new", None)
            assert actions["connector_2"] == ("new", None)
            assert paths["path_2"]["agent_id"] not in (
                "singlepath~digits", first["hparams"]["paths"]["path_1"]["agent_id"]
            )
        outcomes.add(child["hparams"]["num_paths"])
    assert outcomes == {2, 3}


def test_initial_candidate_matches_main_path(store):
    system, candidate = sample(store, seed=0, num_paths=3)
    allocate(candidate)
    assembler = Assembler(store, system)
    model, trainable = mp.assemble_candidate(assembler, candidate)
    sizes = candidate["hparams"]["ds_image_size"]
    assert len(sizes) == 2  # other_a runs at 8 px beside the 16 px main path.

    task = get_task("digits")
    validation = make_dataset(task, "validation", 64, image_sizes=sizes,
                              max_validation_examples=64)
    main = main_path_of(system, "digits")
    main_model = assembler.build_model(main)
    main_validation = make_dataset(task, "validation", 64, image_sizes=16,
                                   max_validation_examples=64)
    for current in (model, main_model):
        current.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                        metrics=["accuracy"])
    accuracy = model.evaluate(validation, verbose=0, return_dict=True)["accuracy"]
    main_accuracy = main_model.evaluate(main_validation, verbose=0, return_dict=True)["accuracy"]
    assert accuracy == main_accuracy
    assert 0.0 < main_accuracy < 1.0

    images = next(iter(validation))[0]
    mixed = keras.ops.convert_to_numpy(model(images))
    main_logits = keras.ops.convert_to_numpy(main_model(images["16"]))
    np.testing.assert_allclose(mixed, 0.8 * main_logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(mixed.argmax(-1), main_logits.argmax(-1))
    router = next(layer for layer in trainable.values() if isinstance(layer, MultipathRouter))
    weights = keras.ops.convert_to_numpy(router(main_logits))
    np.testing.assert_allclose(weights, np.tile([0.8, 0.1, 0.1], (64, 1)), rtol=1e-5)

    # Only the router and connectors are trainable, and every frozen layer is the shared one.
    trainable_ids = {id(w) for layer in trainable.values() for w in layer.trainable_weights}
    assert {id(w) for w in model.trainable_weights} == trainable_ids
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == candidate["trained_params"]
    for entry in candidate["components"]:
        if entry["action"] == "share":
            layer = assembler.layer(entry["key"])
            assert not layer.trainable
            assert any(layer is other for other in model.layers)


def test_published_multipath_model_exports(store, tmp_path):
    system, candidate = sample(store, seed=0, num_paths=3)
    state = store.resume("multipath~digits")
    allocate(candidate, first_id=state.next_component_id)
    assembler = Assembler(store, system)
    model, trainable = mp.assemble_candidate(assembler, candidate)
    for layer in trainable.values():
        layer.set_weights([np.full(w.shape, 0.01, "float32") for w in layer.get_weights()])
    path = Path(
        agent_id="multipath~digits", task_name="digits", id=state.new_path_id(),
        hparams=candidate["hparams"], components=[e["key"] for e in candidate["components"]],
        parent=candidate["parent"], metrics={"quality": 0.9},
    )
    state.next_component_id += len(trainable)
    state.add_path(path)
    state.published = [path.key]
    state.population = [path.key]
    state.cycle += 1
    store.publish(state, components=[system.component(k) for k in trainable],
                  weights=assembler.weights(list(trainable)))

    fresh = store.load_system()
    rebuilt = Assembler(store, fresh).build_model(fresh.path(path.key))
    task = get_task("digits")
    images = next(iter(make_dataset(task, "test", 32, image_sizes=[16, 8], training=False)))[0]
    expected = keras.ops.convert_to_numpy(model(images))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(rebuilt(images)), expected)
    assert mp.parameter_counts(fresh, fresh.path(path.key))[0] == candidate["trained_params"]

    # The subpaths' owners publish new models; the multipath model still loads from the
    # subpath records in its hparams and predicts the same.
    replaced = [record["agent_id"] + ":" + str(record["id"])
                for record in path.hparams["paths"].values()]
    for task_name, size, seed in (("digits", 16, 11), ("other_a", 8, 12), ("other_b", 16, 13)):
        publish_singlepath(store, task_name, size, 0.45, seed=seed)
    moved_on = store.load_system()
    assert all(key not in moved_on.paths for key in replaced)
    again = Assembler(store, moved_on).build_model(moved_on.path(path.key))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(again(images)), expected)

    filepath = str(tmp_path / "digits.keras")
    rebuilt.save(filepath)
    loaded = keras.saving.load_model(filepath)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(images)), expected)
    weights = mp.router_weights(loaded, images)
    assert weights.shape == (32, 3)
    np.testing.assert_allclose(weights.sum(-1), np.ones(32), rtol=1e-6)


def test_leaderboard_ranks_registered_kinds(tmp_path):
    store = Store(str(tmp_path / "store"))
    config = get_agent_config("cpu")
    publish_root(store, random_root(config.variant, config.root_image_size), config)
    publish_singlepath(store, "digits", 16, 0.5, seed=1)
    publish_singlepath(store, "digits", 8, 0.6, seed=2, kind="mine")
    publish_singlepath(store, "other_a", 16, 0.4, seed=3)

    board = Leaderboard(store)
    assert board.tasks() == ["digits", "other_a"]
    assert board.best_path("digits").key == "singlepath~digits:0"
    assert [e.agent_id for e in board.entries("digits")] == ["singlepath~digits"]

    board.register_kind("mine")
    assert board.kinds == ("singlepath", "multipath", "mine")
    assert board.best_path("digits").key == "mine~digits:0"
    assert [e.quality for e in board.entries("digits")] == [0.6, 0.5]
    assert best_path(store, "digits", kinds=("singlepath", "mine")).key == "mine~digits:0"
    with pytest.raises(ValueError, match=r"task 'digit'. Tasks on the leaderboard: \['digits', 'other_a'\]"):
        board.best_path("digit")
    with pytest.raises(TypeError, match=r"e\.g\. \['mine'\]\. Received: kinds='mine'"):
        Leaderboard(store, kinds="mine")


def test_unloadable_subpath_gets_new_connector(store):
    system = store.load_system()
    _, first = sample(store, seed=3, num_paths=2)
    assembler = Assembler(store, system)
    allocate(first, first_id=100)
    mp.assemble_candidate(assembler, first)
    hparams = dict(first["hparams"])
    gone = dict(hparams["paths"]["path_1"], agent_id="singlepath~gone", id=0,
                components=["singlepath~gone:0"])
    hparams["paths"] = dict(hparams["paths"], path_1=gone)
    parent = Path(
        agent_id="multipath~digits", task_name="digits", id=0, hparams=hparams,
        components=[e["key"] for e in first["components"]], parent=first["parent"],
        metrics={"score": 0.6, "quality": 0.6},
    )
    system.add_path(parent)
    config = make_config().replace(hparams_grids=dict(make_config().hparams_grids, num_paths=(2,)))
    rng = np.random.default_rng(0)
    ds = hp.sample_ds_hparams(config.hparams_defaults, config.hparams_grids, rng, NUM_CLASSES)
    child = sample_multipath(
        system, "multipath~digits", main_path_of(system, "digits"), parent, config, ds, rng
    )
    assert child["hparams"]["paths"]["path_1"]["agent_id"] != "singlepath~gone"
    actions = {e["name"]: e["action"] for e in child["components"] if e["action"] != "share"}
    assert actions == {"router": "clone", "connector_1": "new"}

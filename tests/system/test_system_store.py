"""Tests of the store, names, locks and accounting; numpy only, no Keras models."""

import json
import os
import sys
import zipfile

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

from store_helpers import ROOT, new_component, publish_path, publish_root, weights_for  # noqa: E402

from keras_multipath.system import (  # noqa: E402
    AgentState,
    Component,
    CorruptStateError,
    LocalFileSystem,
    Path,
    Store,
    StoreError,
    make_agent_id,
    parse_key,
    validate_agent_id,
    validate_task_name,
)

MNIST = "singlepath~mnist"
CIFAR = "singlepath~cifar10"


def _two_agent_store(root, filesystem=None):
    store = Store(root, filesystem=filesystem)
    root_path, _ = publish_root(store)
    mnist_state = store.resume(MNIST)
    mnist_path = publish_path(
        store, mnist_state, "mnist", shared=root_path.components[:2],
        new_names=("encoder_norm", "head"), parent=root_path.key,
    )
    cifar_state = store.resume(CIFAR)
    cifar_path = publish_path(
        store, cifar_state, "cifar10", shared=mnist_path.components[:3],
        new_names=("head",), parent=mnist_path.key,
    )
    return store, root_path, mnist_path, cifar_path


# ------------------------------------------------------------------------------------------
# Names.


@pytest.mark.parametrize(
    "agent_id", ["../x", "/tmp/x", "", "singlepath", "singlepath~../x", "a/b~c", "a~.hidden",
                 "a~b c", "a~b\\c", "~mnist", "a~~b"],
)
def test_agent_id_rejects_unsafe(agent_id):
    with pytest.raises(ValueError) as info:
        validate_agent_id(agent_id)
    assert repr(agent_id) in str(info.value)
    assert "<kind>~<task>" in str(info.value)


@pytest.mark.parametrize("task_name", ["../x", "/abs", "", "a//b", "a~b", "a/../b", "a/./b", "x/"])
def test_task_name_rejects_unsafe(task_name):
    with pytest.raises(ValueError) as info:
        validate_task_name(task_name)
    assert repr(task_name) in str(info.value)
    assert "joined by '/'" in str(info.value)


def test_agent_id_round_trip():
    agent_id = make_agent_id("singlepath", "clevr/count_all")
    assert agent_id == "singlepath~clevr~count_all"
    assert validate_agent_id("singlepath~root_model~random_init") == ROOT
    assert parse_key("singlepath~mnist:12") == ("singlepath~mnist", 12)
    with pytest.raises(ValueError, match="not a non-negative integer"):
        parse_key("singlepath~mnist:-1")
    with pytest.raises(TypeError, match="agent_id=3"):
        validate_agent_id(3)


def test_store_rejects_unsafe_agent_id(tmp_path):
    store = Store(str(tmp_path))
    with pytest.raises(ValueError, match=r"Invalid agent id '\.\./x'"):
        store.resume("../x")
    with pytest.raises(ValueError, match="Invalid agent id"):
        AgentState("/etc~x")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------
# Publish and load.


def test_publish_load_round_trip(tmp_path):
    store, root_path, mnist_path, cifar_path = _two_agent_store(str(tmp_path))

    system = Store(str(tmp_path)).load_system()
    assert system.load_errors == {}
    assert set(system.paths) == {root_path.key, mnist_path.key, cifar_path.key}
    assert system.paths[cifar_path.key] == cifar_path
    assert system.root_path.key == root_path.key
    assert len(system.components) == 3 + 2 + 1

    on_disk = os.listdir(tmp_path / MNIST / "state_1_0")
    assert sorted(on_disk) == sorted(
        ["state.json", "paths.json", "components.json", "history.json", "weights.npz",
         "manifest.json"]
    )
    with np.load(tmp_path / CIFAR / "state_1_0" / "weights.npz", allow_pickle=False) as npz:
        # The cifar10 shard holds only the one component cifar10 created.
        assert sorted(npz.files) == ["0/0", "0/1"]
    state_json = json.loads((tmp_path / MNIST / "state_1_0" / "state.json").read_text())
    assert state_json["published"] == [mnist_path.key]


def test_weights_read_lazily_and_exactly(tmp_path):
    _, _, mnist_path, _ = _two_agent_store(str(tmp_path))
    store = Store(str(tmp_path))
    system = store.load_system()
    assert store.verified_weights_files == []

    head_key = mnist_path.components[-1]
    _, head_id = parse_key(head_key)
    weights = store.read_weights(head_key)
    expected = weights_for(head_id)
    assert len(weights) == 2
    for actual, wanted in zip(weights, expected):
        np.testing.assert_array_equal(actual, wanted)
        assert actual.dtype == np.float32
    assert system.components[head_key].weight_shapes == [[3, 2], [2]]


def test_resume_continues_counters(tmp_path):
    store, _, mnist_path, _ = _two_agent_store(str(tmp_path))
    state = Store(str(tmp_path)).resume(MNIST)
    assert (state.cycle, state.generation) == (1, 0)
    assert state.next_component_id == 2
    assert state.next_path_id == 1
    assert state.new_component_id() == 2
    assert state.new_path_id() == 1
    assert list(state.paths) == [mnist_path.key]
    assert state.population == [mnist_path.key]

    fresh = store.resume("singlepath~new_task")
    assert (fresh.cycle, fresh.next_component_id, fresh.state_name) == (0, 0, None)


def test_locks_and_accounted_params(tmp_path):
    store, root_path, mnist_path, cifar_path = _two_agent_store(str(tmp_path))
    system = store.load_system()
    shared_root = root_path.components[0]
    assert system.locks[shared_root] == {ROOT, MNIST, CIFAR}
    assert system.locks[mnist_path.components[2]] == {MNIST, CIFAR}
    assert system.locks[cifar_path.components[-1]] == {CIFAR}

    # Every component has 8 parameters: two root ones shared by 3 agents, one mnist one
    # shared by 2, the cifar10 head alone.
    assert system.accounted_params(cifar_path) == pytest.approx(8 / 3 + 8 / 3 + 8 / 2 + 8)
    assert system.num_params(cifar_path) == 32
    assert not system.is_trainable(shared_root)

    running = store.load_system(running_agent_id=CIFAR)
    assert running.locks[shared_root] == {ROOT, MNIST}
    assert running.is_trainable(cifar_path.components[-1])
    assert not running.is_trainable(mnist_path.components[2])
    # A fresh component of the running agent is charged fully.
    assert running.accounted_params(cifar_path) == pytest.approx(8 / 3 + 8 / 3 + 8 / 2 + 8)
    running.lock_path(cifar_path, CIFAR)
    assert running.locks[cifar_path.components[-1]] == {CIFAR}


def test_kinds_filter_and_running_agent(tmp_path):
    store, _, _, _ = _two_agent_store(str(tmp_path))
    multipath_state = store.resume("multipath~mnist")
    router, values = new_component(multipath_state, "router")
    path = Path("multipath~mnist", "mnist", multipath_state.new_path_id(),
                components=[router.key])
    multipath_state.add_path(path)
    multipath_state.published = [path.key]
    multipath_state.cycle = 1
    store.publish(multipath_state, [router], {router.key: values})

    singlepath_view = store.load_system(kinds=["singlepath"])
    assert "multipath~mnist" not in singlepath_view.published
    multipath_view = store.load_system(kinds=["singlepath"], running_agent_id="multipath~mnist")
    assert multipath_view.published["multipath~mnist"] == [path.key]
    assert len(multipath_view.published) == 4


def test_kinds_string_rejected(tmp_path):
    store, _, _, _ = _two_agent_store(str(tmp_path))

    with pytest.raises(TypeError, match=r"e\.g\. \['singlepath'\]\. Received: kinds='singlepath'"):
        store.load_system(kinds="singlepath")


def test_root_that_is_a_file_rejected(tmp_path):
    root = tmp_path / "store"
    root.write_text("not a folder")
    store = Store(str(root))
    state = AgentState(MNIST)
    state.cycle = 1

    with pytest.raises(StoreError, match="it or a folder above it is a file") as info:
        store.load_system()
    assert f"Store root: '{root}'" in str(info.value)
    with pytest.raises(StoreError, match="it or a folder above it is a file") as info:
        store.publish(state)
    assert f"Store folder '{root / MNIST}'" in str(info.value)
    assert root.read_text() == "not a folder"


def test_publish_rejects_numpy_metrics(tmp_path):
    store = Store(str(tmp_path))
    publish_path(store, store.resume(MNIST), "mnist", cycle=1)
    state = store.resume(MNIST)
    path = Path(MNIST, "mnist", state.new_path_id(), metrics={"quality": np.float32(0.5)})
    state.add_path(path)
    state.published = [path.key]
    state.cycle = 2

    with pytest.raises(ValueError, match="Path 'singlepath~mnist:1' of agent 'singlepath~mnist'") as info:
        store.publish(state)
    assert "float32 is not JSON serializable" in str(info.value)
    assert sorted(os.listdir(tmp_path / MNIST)) == ["state_1_0"]
    assert store.resume(MNIST).cycle == 1


def test_orphan_parent_falls_back_to_root(tmp_path):
    store, root_path, mnist_path, cifar_path = _two_agent_store(str(tmp_path))
    # mnist publishes a new best; its old path, the parent of the cifar10 path, is retired.
    state = store.resume(MNIST)
    state.paths = {}
    new_best = publish_path(store, state, "mnist", shared=root_path.components, new_names=("head",),
                            parent=root_path.key)
    system = store.load_system()
    assert mnist_path.key not in system.paths
    assert system.parent(system.paths[cifar_path.key]).key == root_path.key
    assert [p.key for p in system.ancestors(system.paths[new_best.key])] == [root_path.key]
    assert system.parent(system.root_path) is None
    # The retired path's components stay in the store: cifar10 still uses them.
    np.testing.assert_array_equal(
        store.read_weights(mnist_path.components[2])[0], weights_for(0)[0]
    )


def test_intermediate_states_resume_and_cleanup(tmp_path):
    store, root_path, _, _ = _two_agent_store(str(tmp_path))
    state = store.resume(MNIST)
    first = publish_path(store, state, "mnist", shared=root_path.components, new_names=("head",),
                         cycle=1, generation=1)
    second = publish_path(store, state, "mnist", shared=root_path.components,
                          new_names=("head",), cycle=1, generation=2)
    state.population = [first.key, second.key]
    assert store.list_states(MNIST) == [(1, 0), (1, 1), (1, 2)]

    # Other agents see the end-of-cycle state only; the agent itself resumes the latest.
    assert store.read_state(MNIST, include_intermediate=False).state_name == "state_1_0"
    resumed = Store(str(tmp_path)).resume(MNIST)
    assert resumed.state_name == "state_1_2"
    assert resumed.next_component_id == 4
    assert store.load_system().published[MNIST] != [second.key]
    assert store.load_system(running_agent_id=MNIST).published[MNIST] == [second.key]

    # The end-of-cycle state copies the intermediate head it keeps and drops the other.
    resumed.published = [first.key]
    resumed.population = [first.key]
    resumed.paths = {first.key: first}
    resumed.cycle, resumed.generation = 2, 0
    Store(str(tmp_path)).publish(resumed)
    assert store.list_states(MNIST) == [(1, 0), (2, 0)]
    assert sorted(os.listdir(tmp_path / MNIST)) == ["state_1_0", "state_2_0"]
    reader = Store(str(tmp_path))
    system = reader.load_system()
    head_key = first.components[-1]
    assert system.published[MNIST] == [first.key]
    np.testing.assert_array_equal(reader.read_weights(head_key)[0], weights_for(2)[0])
    assert second.components[-1] not in system.components
    with np.load(tmp_path / MNIST / "state_2_0" / "weights.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == ["2/0", "2/1"]


def test_leftover_temp_folders_ignored_and_cleaned(tmp_path):
    store, root_path, _, _ = _two_agent_store(str(tmp_path))
    leftover = tmp_path / MNIST / ".tmp-state_2_0-deadbeef"
    leftover.mkdir()
    (leftover / "state.json").write_text("{")
    incomplete = tmp_path / MNIST / "state_3_0"
    incomplete.mkdir()
    (incomplete / "paths.json").write_text("{")

    assert store.list_states(MNIST) == [(1, 0)]
    assert store.load_system().load_errors == {}
    state = store.resume(MNIST)
    assert state.state_name == "state_1_0"
    publish_path(store, state, "mnist", shared=root_path.components, cycle=2)
    assert sorted(os.listdir(tmp_path / MNIST)) == ["state_1_0", "state_2_0"]


def test_in_place_protocol_round_trip(tmp_path):
    filesystem = LocalFileSystem(atomic_rename=False)
    store, root_path, mnist_path, cifar_path = _two_agent_store(str(tmp_path), filesystem)
    assert not any(name.startswith(".tmp") for name in os.listdir(tmp_path / MNIST / "state_1_0"))
    reader = Store(str(tmp_path), filesystem=LocalFileSystem(atomic_rename=False))
    system = reader.load_system()
    assert set(system.paths) == {root_path.key, mnist_path.key, cifar_path.key}
    np.testing.assert_array_equal(reader.read_weights(cifar_path.components[-1])[1],
                                  weights_for(0)[1])


def test_file_url_root(tmp_path):
    store, _, mnist_path, _ = _two_agent_store(str(tmp_path))
    system = Store("file://" + str(tmp_path)).load_system()
    assert mnist_path.key in system.paths


# ------------------------------------------------------------------------------------------
# Publish validation.


def test_publish_rejects_stale_or_repeated_counters(tmp_path):
    store, root_path, _, _ = _two_agent_store(str(tmp_path))
    stale = AgentState(MNIST, cycle=5)
    with pytest.raises(ValueError, match="latest state is state_1_0"):
        store.publish(stale)
    state = store.resume(MNIST)
    with pytest.raises(ValueError, match="Increase state.cycle"):
        store.publish(state)
    state.cycle = -1
    with pytest.raises(ValueError, match="state.cycle to be a non-negative integer"):
        store.publish(state)


def test_publish_rejects_bad_components(tmp_path):
    store = Store(str(tmp_path))
    state = store.resume(MNIST)
    component, values = new_component(state, "head")
    path = Path(MNIST, "mnist", state.new_path_id(), components=[component.key])
    state.add_path(path)
    state.published = [path.key]
    state.cycle = 1

    with pytest.raises(ValueError, match="neither in the store nor in `components`"):
        store.publish(state)
    with pytest.raises(ValueError, match="Missing weights for new component 'singlepath~mnist:0'"):
        store.publish(state, [component])
    with pytest.raises(ValueError, match="declares num_params=8 but its weights hold 6"):
        store.publish(state, [component], {component.key: values[:1]})
    with pytest.raises(ValueError, match="dtype object"):
        store.publish(state, [component],
                      {component.key: [np.array([None] * 6).reshape(3, 2), values[1]]})
    foreign = Component("head", CIFAR, 0, 8, {})
    with pytest.raises(ValueError, match="publishes only components it created"):
        store.publish(state, [foreign], {foreign.key: values})
    unallocated = Component("head", MNIST, 7, 8, {})
    with pytest.raises(ValueError, match="Allocate component ids"):
        store.publish(state, [unallocated], {unallocated.key: values})
    state.published = ["singlepath~mnist:9"]
    with pytest.raises(ValueError, match="Published path 'singlepath~mnist:9' is not in"):
        store.publish(state, [component], {component.key: values})
    state.published = [path.key]
    state.oracle_state = {"bad": object()}
    with pytest.raises(ValueError, match="must be JSON-able"):
        store.publish(state, [component], {component.key: values})
    assert store.list_states(MNIST) == []
    assert os.listdir(tmp_path / MNIST) == []

    state.oracle_state = {"trials": [1, 2]}
    assert store.publish(state, [component], lambda key: values) == "state_1_0"
    assert store.resume(MNIST).oracle_state == {"trials": [1, 2]}


# ------------------------------------------------------------------------------------------
# Corruption.


def _corrupt(file_path, how):
    data = file_path.read_bytes()
    if how == "truncate":
        file_path.write_bytes(data[: len(data) // 2])
    elif how == "flip":
        middle = len(data) // 2
        file_path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
    elif how == "garbage":
        file_path.write_bytes(b"\x00not json")
    elif how == "delete":
        file_path.unlink()


@pytest.mark.parametrize(
    "file_name, how",
    [("paths.json", "truncate"), ("state.json", "flip"), ("components.json", "delete"),
     ("manifest.json", "garbage"), ("manifest.json", "truncate"), ("weights.npz", "truncate"),
     ("weights.npz", "delete"), ("history.json", "flip")],
)
def test_corrupt_file_skips_agent(tmp_path, file_name, how):
    store, root_path, mnist_path, cifar_path = _two_agent_store(str(tmp_path))
    broken = tmp_path / MNIST / "state_1_0" / file_name
    _corrupt(broken, how)

    reader = Store(str(tmp_path))
    system = reader.load_system()
    assert sorted(system.load_errors) == [CIFAR, MNIST]
    message = system.load_errors[MNIST]
    assert str(broken) in message
    assert repr(MNIST) in message
    assert set(system.published) == {ROOT, CIFAR}
    assert root_path.key in system.paths
    assert mnist_path.key not in system.paths
    # The cifar10 path uses mnist components, which are no longer listed.
    assert cifar_path.key not in system.paths
    assert "uses components" in system.load_errors.get(CIFAR, "")
    np.testing.assert_array_equal(reader.read_weights(root_path.components[0])[0],
                                  weights_for(0)[0])

    with pytest.raises(CorruptStateError) as info:
        reader.read_state(MNIST)
    assert info.value.agent_id == MNIST
    assert info.value.file == str(broken)
    with pytest.raises(CorruptStateError):
        reader.load_system(running_agent_id=MNIST)


def test_altered_weights_fail_on_read(tmp_path):
    _, root_path, mnist_path, _ = _two_agent_store(str(tmp_path))
    shard = tmp_path / MNIST / "state_1_0" / "weights.npz"
    _corrupt(shard, "flip")

    reader = Store(str(tmp_path))
    system = reader.load_system()
    assert system.load_errors == {}
    with pytest.raises(CorruptStateError) as info:
        reader.read_weights(mnist_path.components[-1])
    assert "SHA-256" in str(info.value)
    assert info.value.file == str(shard)
    assert info.value.agent_id == MNIST
    assert len(reader.read_weights(root_path.components[1])) == 2


def test_pickled_arrays_are_rejected(tmp_path):
    _, _, mnist_path, _ = _two_agent_store(str(tmp_path))
    folder = tmp_path / MNIST / "state_1_0"
    shard = folder / "weights.npz"
    # Replace the shard by one holding object arrays and update every checksum to match, as an
    # attacker with write access could: reading must still refuse to unpickle.
    np.savez(shard, **{"0/0": np.array([{"x": 1}] * 6, dtype=object).reshape(3, 2),
                       "0/1": np.zeros(2, np.float32)})
    import hashlib

    data = shard.read_bytes()
    components = json.loads((folder / "components.json").read_text())
    components["shards"]["state_1_0"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    text = json.dumps(components).encode()
    (folder / "components.json").write_bytes(text)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["weights.npz"] = components["shards"]["state_1_0"]
    manifest["files"]["components.json"] = {"size": len(text),
                                            "sha256": hashlib.sha256(text).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert zipfile.is_zipfile(shard)

    reader = Store(str(tmp_path))
    with pytest.raises(CorruptStateError, match="allow_pickle=False"):
        reader.read_weights(mnist_path.components[2])


def test_gfile_code_path_on_local_folder(tmp_path):
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("backend-independent tf.io.gfile test; it runs in the tensorflow backend run")
    from keras_multipath.system import GFileSystem

    for atomic in (True, False):
        root = tmp_path / f"atomic_{atomic}"
        filesystem = GFileSystem(atomic_rename=atomic)
        store, root_path, mnist_path, cifar_path = _two_agent_store(str(root), filesystem)
        reader = Store(str(root), filesystem=GFileSystem())
        system = reader.load_system()
        assert system.load_errors == {}
        assert set(system.paths) == {root_path.key, mnist_path.key, cifar_path.key}
        np.testing.assert_array_equal(reader.read_weights(cifar_path.components[-1])[0],
                                      weights_for(0)[0])
        assert sorted(os.listdir(root / MNIST)) == ["state_1_0"]
    assert GFileSystem().is_atomic_rename("gs://bucket/store") is False
    assert GFileSystem().is_atomic_rename(str(tmp_path)) is True


def test_filesystem_chosen_from_root(tmp_path):
    from keras_multipath.system import GFileSystem
    from keras_multipath.system.filesystem import get_filesystem

    assert isinstance(get_filesystem("gs://bucket/store"), GFileSystem)
    assert isinstance(get_filesystem("s3://bucket/store"), GFileSystem)
    assert isinstance(get_filesystem(str(tmp_path)), LocalFileSystem)
    assert isinstance(get_filesystem("file:///tmp/x"), LocalFileSystem)
    assert Store("gs://bucket/store").root == "gs://bucket/store"
    with pytest.raises(ValueError, match="non-empty store root"):
        Store("")


def test_read_weights_without_loading(tmp_path):
    _, _, mnist_path, _ = _two_agent_store(str(tmp_path))
    reader = Store(str(tmp_path))
    head_key = mnist_path.components[-1]
    np.testing.assert_array_equal(reader.read_weights(head_key)[1], weights_for(1)[1])
    with pytest.raises(KeyError, match="no state of agent 'singlepath~mnist' lists it"):
        reader.read_weights("singlepath~mnist:99")
    with pytest.raises(KeyError, match="not in the store"):
        reader.read_weights("singlepath~unknown:0")

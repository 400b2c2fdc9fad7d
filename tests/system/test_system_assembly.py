"""Tests of model assembly: shared layers, clones, multi-resolution inputs, export."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_multipath.system import (
    Assembler,
    ImmutabilityError,
    Path,
    Store,
    check_immutability,
    export_path,
    prediction_digest,
)
from keras_multipath.system.assembly import build_vit_template

ROOT = "singlepath~root_model~random_init"
MNIST = "singlepath~mnist"
CIFAR = "singlepath~cifar10"
VARIANT = "micro/4"


def _publish_root(store, image_size=8):
    """Publish a headless micro/4 root with one encoder block; return its path."""
    state = store.resume(ROOT)
    assembler = Assembler(store, store.load_system(running_agent_id=ROOT))
    layers = build_vit_template(VARIANT, image_size, num_classes=0, num_layers=1)
    components = [assembler.create_component(name, layer, state) for name, layer in layers.items()]
    path = Path(ROOT, "root_model/random_init", state.new_path_id(),
                hparams={"num_layers": 1, "ds_image_size": image_size},
                components=[c.key for c in components])
    state.add_path(path)
    state.published = [path.key]
    state.cycle = 1
    store.publish(state, components, assembler.weights(path.components))
    return path


def _task_path(assembler, state, root_path, num_classes, clone=()):
    """A path of `state`'s agent sharing the root's components except `clone`, plus a head."""
    keys = []
    for key in root_path.components:
        name = assembler.system.component(key).name
        keys.append(assembler.clone(key, state).key if name in clone else key)
    template = build_vit_template(VARIANT, 8, num_classes=num_classes, num_layers=1)
    keys.append(assembler.create_component("head", template["head"], state).key)
    path = Path(state.agent_id, state.agent_id.split("~", 1)[1], state.new_path_id(),
                hparams={"num_layers": 1, "ds_image_size": 8}, components=keys,
                parent=root_path.key)
    assembler.system.add_path(path)
    return path


def _set_nonzero_head(assembler, path):
    """Heads start at zero; give them weights so that predictions depend on every layer."""
    head = assembler.layer(path.components[-1])
    rng = np.random.default_rng(3)
    head.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in head.get_weights()])


def _images(count=6, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (count, size, size, 3)).astype("float32")


def test_shared_component_is_one_layer_object(tmp_path):
    store = Store(str(tmp_path))
    root_path = _publish_root(store)
    system = store.load_system(running_agent_id=MNIST)
    assembler = Assembler(store, system)
    state = store.resume(MNIST)
    mnist = _task_path(assembler, state, root_path, 10)
    other = _task_path(assembler, state, root_path, 4)
    # Only the new heads have layers until a model needs the root's components.
    assert assembler.cached_keys == [mnist.components[-1], other.components[-1]]

    model_a = assembler.build_model(mnist)
    model_b = assembler.build_model(other)
    assert assembler.cached_keys == sorted(mnist.components + other.components[-1:])
    shared = root_path.components[3]  # encoderblock_0
    layer = assembler.layer(shared)
    assert layer is assembler.layer(shared)
    assert model_a.get_layer(layer.name) is model_b.get_layer(layer.name)
    assert not layer.trainable
    assert assembler.layer(mnist.components[-1]).trainable
    assert model_a.output.shape == (None, 10)
    assert model_b.output.shape == (None, 4)
    # The headless root produces the class-token representation.
    assert assembler.build_model(root_path).output.shape == (None, 32)
    assert mnist.components[-1] == "singlepath~mnist:0"
    assert other.components[-1] == "singlepath~mnist:1"


def test_weights_read_when_first_needed(tmp_path):
    store = Store(str(tmp_path))
    root_path = _publish_root(store)
    reader = Store(str(tmp_path))
    assembler = Assembler(reader, reader.load_system())
    assert assembler.cached_keys == []
    assert reader.verified_weights_files == []
    assembler.build_model(root_path)
    assert len(reader.verified_weights_files) == 1
    original = Assembler(store, store.load_system())
    for key in root_path.components:
        for a, b in zip(assembler.layer(key).get_weights(), store.read_weights(key)):
            np.testing.assert_array_equal(a, b)
        assert original.layer(key) is not assembler.layer(key)


def test_training_clone_leaves_shared_bit_identical(tmp_path):
    store = Store(str(tmp_path))
    root_path = _publish_root(store)
    system = store.load_system(running_agent_id=MNIST)
    assembler = Assembler(store, system)
    state = store.resume(MNIST)
    path = _task_path(assembler, state, root_path, 3, clone=("encoderblock_0", "encoder_norm"))
    cloned_block = path.components[3]
    assert cloned_block.startswith(MNIST)
    assert system.component(cloned_block).name == "encoderblock_0"
    source_block = root_path.components[3]
    before = {key: [np.copy(w) for w in assembler.layer(key).get_weights()]
              for key in root_path.components + [cloned_block]}
    for a, b in zip(before[source_block], before[cloned_block]):
        np.testing.assert_array_equal(a, b)

    model = assembler.build_model(path)
    model.compile(optimizer=keras.optimizers.SGD(0.5),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    labels = np.array([0, 1, 2, 0, 1, 2])
    model.fit(_images(), labels, batch_size=3, epochs=2, verbose=0)

    for key in root_path.components:
        for old, new in zip(before[key], assembler.layer(key).get_weights()):
            np.testing.assert_array_equal(old, new)
        for stored, new in zip(store.read_weights(key), assembler.layer(key).get_weights()):
            np.testing.assert_array_equal(stored, new)
    changed = [not np.array_equal(old, new) for old, new in
               zip(before[cloned_block], assembler.layer(cloned_block).get_weights())]
    assert any(changed)
    assert system.accounted_params(path) == pytest.approx(
        sum(system.component(k).num_params / (1 if k.startswith(MNIST) else 2)
            for k in path.components)
    )


def test_publish_and_reload_assembled_path(tmp_path):
    store = Store(str(tmp_path))
    root_path = _publish_root(store)
    assembler = Assembler(store, store.load_system(running_agent_id=MNIST))
    state = store.resume(MNIST)
    path = _task_path(assembler, state, root_path, 5, clone=("encoder_norm",))
    _set_nonzero_head(assembler, path)
    images = _images()
    predictions = np.asarray(assembler.build_model(path).predict(images, verbose=0))
    path.metrics["test_predictions_sha256"] = prediction_digest(predictions)
    labels = np.argmax(predictions, axis=-1)
    path.metrics["test_quality"] = 1.0
    state.add_path(path)
    state.published = [path.key]
    state.cycle = 1
    new_components = [assembler.system.component(k) for k in path.components
                      if k.startswith(MNIST)]
    store.publish(state, new_components, assembler.weights(path.components))
    assert state.components[path.components[-1]].weight_shapes == [[32, 5], [5]]
    assert assembler.layer(path.components[-1]).trainable
    assembler.system = store.load_system(running_agent_id=MNIST)
    assert not assembler.layer(path.components[-1]).trainable

    reader = Store(str(tmp_path))
    fresh = Assembler(reader, reader.load_system())
    stored_path = fresh.system.path(path.key)
    result = check_immutability(fresh, stored_path, images, labels=labels,
                                expected_digest=stored_path.metrics["test_predictions_sha256"])
    np.testing.assert_array_equal(result, predictions)

    # Altering a loaded component is detected.
    block = fresh.layer(root_path.components[3])
    weights = block.get_weights()
    weights[0] = weights[0] + 1e-3
    block.set_weights(weights)
    with pytest.raises(ImmutabilityError, match="predicts differently"):
        check_immutability(fresh, stored_path, images,
                           expected_digest=stored_path.metrics["test_predictions_sha256"])
    with pytest.raises(ValueError, match="Nothing to compare"):
        check_immutability(fresh, stored_path, images)


def test_multi_resolution_inputs(tmp_path):
    store = Store(str(tmp_path))
    root_path = _publish_root(store, image_size=8)
    system = store.load_system(running_agent_id=MNIST)
    assembler = Assembler(store, system)
    state = store.resume(MNIST)
    big = build_vit_template(VARIANT, 16, num_classes=3, num_layers=1)
    keys = [assembler.create_component(name, layer, state).key for name, layer in big.items()]
    big_path = Path(MNIST, "mnist", state.new_path_id(), components=keys)
    system.add_path(big_path)

    model = assembler.build_model([root_path, big_path])
    assert sorted(model.input) == ["16", "8"]
    small_images, big_images = _images(4, 8, 1), _images(4, 16, 2)
    outputs = model.predict({"8": small_images, "16": big_images}, verbose=0)
    assert outputs[0].shape == (4, 32)
    assert outputs[1].shape == (4, 3)
    np.testing.assert_allclose(
        outputs[1], assembler.build_model(big_path).predict(big_images, verbose=0),
        rtol=1e-6, atol=1e-6,
    )


def test_build_model_rejects_non_vit_path(tmp_path):
    store = Store(str(tmp_path))
    root_path = _publish_root(store)
    system = store.load_system(running_agent_id="multipath~mnist")
    assembler = Assembler(store, system)
    state = store.resume("multipath~mnist")
    router = keras.layers.Dense(2)
    router.build((None, 4))
    key = assembler.create_component("router", router, state).key
    path = Path("multipath~mnist", "mnist", state.new_path_id(),
                components=root_path.components + [key])
    system.add_path(path)
    with pytest.raises(ValueError, match=r"components \['router'\] that are not ViT"):
        assembler.apply_path(path, keras.Input((8, 8, 3)))
    with pytest.raises(ValueError, match="is not built"):
        assembler.create_component("connector_0", keras.layers.Dense(2), state)
    with pytest.raises(TypeError, match="Expected a Path, a path key") as info:
        assembler.build_model(None)
    assert "Received: None of type NoneType" in str(info.value)


def test_exported_model_loads_without_store(tmp_path):
    store = Store(str(tmp_path / "store"))
    root_path = _publish_root(store)
    assembler = Assembler(store, store.load_system(running_agent_id=MNIST))
    state = store.resume(MNIST)
    path = _task_path(assembler, state, root_path, 4, clone=("encoder_norm",))
    _set_nonzero_head(assembler, path)
    images = _images(5)
    filepath = tmp_path / "mnist.keras"
    model = export_path(assembler, path, filepath)
    expected = np.asarray(model.predict(images, verbose=0))
    np.save(tmp_path / "images.npy", images)

    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        import keras
        import keras_multipath.layers  # registers the ViT layer classes
        model = keras.saving.load_model({str(filepath)!r}, safe_mode=True)
        out = model.predict(np.load({str(tmp_path / 'images.npy')!r}), verbose=0)
        np.save({str(tmp_path / 'out.npy')!r}, np.asarray(out))
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("keras_multipath"))))
    """)
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert "keras_multipath.system" not in modules
    assert not any(m.startswith("keras_multipath.system") for m in modules)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)
    with pytest.raises(ValueError, match="ending in '.keras'"):
        export_path(assembler, path, tmp_path / "mnist.h5")


def test_export_to_missing_folder_rejected(tmp_path):
    # The folder is checked before the model is built, so no assembler is needed.
    filepath = str(tmp_path / "missing" / "mnist.keras")
    with pytest.raises(ValueError, match="does not exist") as error:
        export_path(None, None, filepath)
    assert str(tmp_path / "missing") in str(error.value)


def test_restore_and_forget_unstored_components(tmp_path):
    store = Store(str(tmp_path))
    root_path = _publish_root(store)
    system = store.load_system(running_agent_id=MNIST)
    assembler = Assembler(store, system)
    state = store.resume(MNIST)
    clone = assembler.clone(root_path.components[3], state)
    weights = assembler.layer(clone.key).get_weights()

    with pytest.raises(ValueError, match="already has a layer"):
        assembler.restore(clone.key, weights)
    assembler.forget(clone.key)
    assert clone.key not in assembler.cached_keys
    assert clone.key not in system.components
    with pytest.raises(KeyError, match="Unknown component"):
        assembler.layer(clone.key)

    system.add_component(clone)
    with pytest.raises(KeyError, match="Assembler.restore"):
        assembler.layer(clone.key)
    restored = assembler.restore(clone.key, weights)
    assert restored is assembler.layer(clone.key)
    assert restored.trainable
    for a, b in zip(restored.get_weights(), store.read_weights(root_path.components[3])):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="is in the store"):
        assembler.forget(root_path.components[3])
    with pytest.raises(ValueError, match="is in the store"):
        assembler.restore(root_path.components[3], weights)

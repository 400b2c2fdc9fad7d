"""Helpers shared by the layer tests: gradients on any backend, a small multipath model,
and a cross-backend `.keras` check."""

import os
import subprocess
import sys

import keras
import numpy as np

from keras_multipath import layers

BACKENDS = ("tensorflow", "jax", "torch")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A two-block ViT with 16-wide tokens on 8x8 images (4 patches of 4x4).
SMALL_VIT = dict(hidden_dim=16, num_heads=2, mlp_dim=32, num_layers=2, patch_size=4)


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def compute_gradients(fn, arrays):
    """Return `(value, gradients)` of the scalar `fn(tensors)` with respect to `tensors`.

    `fn` takes a list of backend tensors made from `arrays` and returns a scalar tensor.
    The gradients come back as numpy arrays, one per input array. keras.ops has no
    gradient function, so this uses tf.GradientTape, jax.value_and_grad or torch autograd.
    """
    arrays = [np.asarray(a, dtype="float32") for a in arrays]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.convert_to_tensor(a) for a in arrays]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            value = fn(tensors)
        gradients = tape.gradient(value, tensors)
    elif backend == "jax":
        import jax
        import jax.numpy as jnp

        value, gradients = jax.value_and_grad(fn)([jnp.asarray(a) for a in arrays])
    elif backend == "torch":
        import torch

        tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
        value = fn(tensors)
        value.backward()
        gradients = [t.grad for t in tensors]
    else:
        raise ValueError(f"Unsupported backend '{backend}'.")
    return float(to_numpy(value)), [to_numpy(g) for g in gradients]


# Compile the train step only on JAX. XLA compilation on TensorFlow takes longer than the
# few training steps of a test save, and on torch `jit_compile=True` means torch.compile.
JIT_COMPILE = keras.backend.backend() == "jax"


def build_multipath_model(num_classes=10, num_paths=2, image_size=8, lr_mult=0.05, num_layers=None):
    """Build a functional multipath model from small ViT paths.

    Path 0 is a ViT with a head (the main path); paths 1.. are headless ViTs with a
    `Connector` each. Returns `(model, parts)` where `parts` maps "path_k" to the dict of
    that path's layers and also contains "router", "connectors" and "mixture".
    """
    images = keras.Input((image_size, image_size, 3), name="images")
    parts = {"connectors": []}
    path_logits = []
    for k in range(num_paths):
        components = layers.make_vit_components(
            SMALL_VIT,
            image_size,
            num_classes if k == 0 else 0,
            num_layers=num_layers,
            name_prefix=f"path_{k}_",
        )
        parts[f"path_{k}"] = components
        output = layers.apply_vit_components(components, images)
        if k > 0:
            connector = layers.Connector(num_classes, name=f"connector_{k}")
            parts["connectors"].append(connector)
            output = connector(output)
        path_logits.append(output)
    parts["router"] = layers.MultipathRouter(num_paths, lr_mult=lr_mult, name="router")
    parts["mixture"] = layers.MultipathMixture(name="mixture")
    weights = parts["router"](path_logits[0])
    outputs = parts["mixture"](path_logits, weights)
    return keras.Model(images, outputs), parts


def randomize_weights(model, seed=0, scale=0.3):
    """Overwrite every weight with random values so zero-initialised layers matter."""
    rng = np.random.default_rng(seed)
    model.set_weights(
        [rng.normal(0.0, scale, w.shape).astype(w.dtype) for w in model.get_weights()]
    )


_LOAD_AND_PREDICT = """
import sys
import numpy as np
import keras
import keras_multipath.layers
model = keras.saving.load_model(sys.argv[1])
outputs = model.predict(np.load(sys.argv[2]), verbose=0)
np.save(sys.argv[3], keras.ops.convert_to_numpy(outputs))
"""


def check_predictions_on_other_backends(model, inputs, directory, atol=1e-6):
    """Save `model` once, load it on the two other backends and compare predictions.

    Each other backend runs in its own subprocess. Returns the maximum absolute difference
    per backend.
    """
    model_path = os.path.join(directory, "model.keras")
    inputs_path = os.path.join(directory, "inputs.npy")
    model.save(model_path)
    np.save(inputs_path, inputs)
    expected = to_numpy(model.predict(inputs, verbose=0))

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    others = [b for b in BACKENDS if b != keras.backend.backend()]
    processes = {}
    for backend in others:
        output_path = os.path.join(directory, f"predictions_{backend}.npy")
        command = [sys.executable, "-c", _LOAD_AND_PREDICT, model_path, inputs_path, output_path]
        processes[backend] = (
            subprocess.Popen(
                command,
                env=dict(env, KERAS_BACKEND=backend),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
            output_path,
        )

    differences = {}
    for backend, (process, output_path) in processes.items():
        _, stderr = process.communicate(timeout=300)
        if process.returncode != 0:
            raise AssertionError(f"Loading on {backend} failed:\n{stderr[-3000:]}")
        predictions = np.load(output_path)
        np.testing.assert_allclose(predictions, expected, rtol=0, atol=atol, err_msg=backend)
        differences[backend] = float(np.max(np.abs(predictions - expected)))
    return differences

"""Build a multipath model by hand from keras_multipath layers and train it with `fit`.

Two small ViT paths are trained first: the main path on sklearn's 8x8 digits (10 classes)
and a second path on the digits' parity (2 classes). Both are then frozen, the second one is
used headless through a zero-initialised `Connector`, and a `MultipathRouter` with a
`MultipathMixture` learns per-sample weights for the two paths. Only the router and the
connector train in the last stage, and the mixture starts with the main path's accuracy.

    python examples/layers_multipath.py --multipath_epochs=5
"""

import os

# Set before TensorFlow is imported (Keras imports it on every backend) to hide its
# start-up INFO lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from keras_multipath import layers  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("variant", "micro/4", "ViT size of both paths, a key of VIT_VARIANTS.")
flags.DEFINE_integer("image_size", 16, "Side in pixels the 8x8 digits are enlarged to.")
flags.DEFINE_integer("path_epochs", 4, "Epochs of training for each single path.")
flags.DEFINE_integer("multipath_epochs", 3, "Epochs of training for the router and connector.")
flags.DEFINE_integer("batch_size", 32, "Examples per training step.")
flags.DEFINE_float("learning_rate", 3e-3, "Adam learning rate of every stage.")
flags.DEFINE_float("router_lr_mult", 0.05, "Gradient multiplier of the router.")
flags.DEFINE_integer("seed", 0, "Seed of the data split and of weight initialisation.")


def load_digit_images(image_size):
    """Return digits as (N, image_size, image_size, 3) floats in [-1, 1] and int labels."""
    digits = load_digits()
    if image_size % 8:
        raise ValueError(f"Expected --image_size to be a multiple of 8. Received: {image_size}")
    factor = image_size // 8
    images = digits.images.astype("float32") / 8.0 - 1.0
    images = np.repeat(np.repeat(images, factor, axis=1), factor, axis=2)
    return np.repeat(images[..., None], 3, axis=-1), digits.target.astype("int32")


def compile_and_fit(model, x, y, epochs, validation_data):
    model.compile(
        optimizer=keras.optimizers.Adam(FLAGS.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, batch_size=FLAGS.batch_size, epochs=epochs, verbose=0)
    return model.evaluate(*validation_data, verbose=0)[1]


def main(argv):
    del argv
    keras.utils.set_random_seed(FLAGS.seed)
    images, labels = load_digit_images(FLAGS.image_size)
    order = np.random.default_rng(FLAGS.seed).permutation(len(labels))
    train, val = order[:1200], order[1200:]
    parity = labels % 2
    inputs = keras.Input((FLAGS.image_size, FLAGS.image_size, 3), name="images")

    # Stage 1: the main path, a ViT with a 10-class head.
    main_path = layers.make_vit_components(FLAGS.variant, FLAGS.image_size, 10, name_prefix="main_")
    main_logits = layers.apply_vit_components(main_path, inputs)
    main_model = keras.Model(inputs, main_logits)
    main_accuracy = compile_and_fit(
        main_model, images[train], labels[train], FLAGS.path_epochs, (images[val], labels[val])
    )
    logging.info("Main path (digits) validation accuracy: %.4f", main_accuracy)

    # Stage 2: another task's path, trained with its own 2-class head.
    other_path = layers.make_vit_components(FLAGS.variant, FLAGS.image_size, 2, name_prefix="parity_")
    parity_model = keras.Model(inputs, layers.apply_vit_components(other_path, inputs))
    parity_accuracy = compile_and_fit(
        parity_model, images[train], parity[train], FLAGS.path_epochs, (images[val], parity[val])
    )
    logging.info("Parity path validation accuracy: %.4f", parity_accuracy)

    # Stage 3: freeze both paths and mix them. The parity path runs headless, so its
    # class-token representation goes through a new connector to the 10 digit classes.
    for layer in [*main_path.values(), *other_path.values()]:
        layer.trainable = False
    headless = {name: layer for name, layer in other_path.items() if name != "head"}
    connector = layers.Connector(10, name="connector_1")
    other_logits = connector(layers.apply_vit_components(headless, inputs))
    router = layers.MultipathRouter(2, lr_mult=FLAGS.router_lr_mult, name="router")
    mixed = layers.MultipathMixture(name="mixture")(
        [main_logits, other_logits], router(main_logits)
    )
    multipath_model = keras.Model(inputs, mixed)
    logging.info(
        "Multipath model: %d trainable of %d parameters",
        sum(int(np.prod(w.shape)) for w in multipath_model.trainable_weights),
        multipath_model.count_params(),
    )

    initial = multipath_model.predict(images[val], verbose=0)
    initial_accuracy = float(np.mean(np.argmax(initial, axis=1) == labels[val]))
    logging.info("Multipath validation accuracy before training: %.4f", initial_accuracy)
    final_accuracy = compile_and_fit(
        multipath_model,
        images[train],
        labels[train],
        FLAGS.multipath_epochs,
        (images[val], labels[val]),
    )
    weights = keras.ops.convert_to_numpy(router(main_model.predict(images[val], verbose=0)))
    logging.info("Multipath validation accuracy after training: %.4f", final_accuracy)
    logging.info("Mean router weights after training: %s", np.round(weights.mean(axis=0), 4))


if __name__ == "__main__":
    app.run(main)

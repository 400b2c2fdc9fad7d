"""Run one singlepath agent on a folder of your own images.

The folder has one sub-folder per class (`root/<class>/<image>`), or split folders
(`root/train/<class>/<image>`, optional `validation/` and `test/`). PNG, JPEG, BMP and GIF
files are read; missing validation and test splits are carved out of the training images.

Without `--folder`, the example first writes a demo folder of RGB PNGs: Animal-Shape MNIST
silhouettes (PyPI animal-mnist) of three classes, each tinted with its own colour.

    python examples/agent_on_image_folder.py                       # demo folder
    python examples/agent_on_image_folder.py --folder=~/photos --task_name=photos --cycles=3

The agent joins the store's system like any other: run it on a store that the main job
(examples/grow_system.py) grew, and its candidates can reuse the components published there.
"""

import os

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("folder", None, "Image folder; default: write a demo folder first.")
flags.DEFINE_string("task_name", "animal_folder",
                    "Task name of the folder, used in the agent id (letters, digits, _ . -).")
flags.DEFINE_string("store", "./store", "Store folder.")
flags.DEFINE_integer("cycles", 1, "Cycles to run.")
flags.DEFINE_integer("candidates", 2, "Candidates per cycle.")
flags.DEFINE_integer("train_examples", 512,
                     "Training examples between two validations (4 validations per candidate).")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_enum("backend", None, ["tensorflow", "jax", "torch"], "Keras backend.")

DEMO_CLASSES = {"bird": (1, (255, 80, 80)), "cat": (2, (80, 200, 80)),
                "horse": (7, (80, 120, 255))}
DEMO_IMAGES_PER_CLASS = 200


def write_demo_folder(root):
    """Write tinted Animal-Shape MNIST silhouettes as RGB PNGs into `root/<class>/`."""
    import numpy as np
    from PIL import Image

    from keras_multipath.data.offline import load_animal_mnist_arrays

    images, labels = load_animal_mnist_arrays()
    for name, (label, colour) in DEMO_CLASSES.items():
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        indices = np.flatnonzero(labels == label)[:DEMO_IMAGES_PER_CLASS]
        for index in indices:
            gray = images[index, :, :, 0].astype(np.float32) / 255.0
            rgb = (gray[..., None] * np.asarray(colour, np.float32)).astype(np.uint8)
            Image.fromarray(rgb).save(os.path.join(folder, f"{index:05d}.png"))
    logging.info("Wrote %d demo images into %s.", DEMO_IMAGES_PER_CLASS * len(DEMO_CLASSES),
                 root)


def main(argv):
    del argv
    if FLAGS.backend:
        os.environ["KERAS_BACKEND"] = FLAGS.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_multipath import report
    from keras_multipath.data import from_image_folder
    from keras_multipath.runner import run_agent
    from keras_multipath.system import Store

    folder = FLAGS.folder
    if folder is None:
        folder = f"{FLAGS.store.rstrip('/')}-demo-images"
        if not os.path.isdir(folder):
            write_demo_folder(folder)
    task = from_image_folder(os.path.expanduser(folder), name=FLAGS.task_name)
    logging.info("Task %s: %d classes %s, %d / %d / %d images.", task.name, task.num_classes,
                 task.class_names, task.num_examples("train"), task.num_examples("validation"),
                 task.num_examples("test"))
    run_agent(FLAGS.store, task, cycles=FLAGS.cycles, candidates=FLAGS.candidates,
              train_examples_per_validation=FLAGS.train_examples, seed=FLAGS.seed)
    rows = [row for row in report.leaderboard(Store(FLAGS.store).load_system())
            if row["task"] == task.name]
    print(report.format_leaderboard(rows))


if __name__ == "__main__":
    app.run(main)

"""Compare input-pipeline throughput with the training step rate of a small ViT.

Both rates are in images per second on the same machine. A ratio above 1 means the pipeline
produces batches faster than the model trains on them, so input is not the bottleneck.

Usage (the backend comes from KERAS_BACKEND):
    KERAS_BACKEND=jax .venv/bin/python benchmarks/input_pipeline.py --task fashion_mnist

The pipeline is measured with every augmentation of the method switched on (the slowest
setting) and with none. The training step is timed on one batch held in device memory, so its
rate excludes input entirely.
"""

import argparse
import datetime
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_multipath.data import get_task, make_dataset  # noqa: E402
from keras_multipath.layers import apply_vit_components, make_vit_components  # noqa: E402

ALL_AUGMENTATIONS = {
    "ds_quality_delta": 0.1,
    "ds_area_range_min": 0.5,
    "ds_aspect_ratio_range_min": 0.75,
    "ds_flip_left_right": True,
    "ds_brightness_delta": 0.1,
    "ds_contrast_delta": 0.1,
    "ds_saturation_delta": 0.1,
    "ds_hue_delta": 0.1,
}


def measure_pipeline(task, batch_size, image_size, ds_hparams, num_batches):
    """Return images/s of the training pipeline after one warm-up pass of 5 batches."""
    dataset = make_dataset(task, "train", batch_size, image_sizes=image_size, ds_hparams=ds_hparams, seed=0)
    iterator = iter(dataset)
    for _ in range(5):
        next(iterator)
    start = time.perf_counter()
    for _ in range(num_batches):
        images, _ = next(iterator)
    images.numpy()
    return num_batches * batch_size / (time.perf_counter() - start)


def measure_training(variant, image_size, num_classes, batch_size, num_steps):
    """Return images/s of ViT training steps on one fixed batch, after 3 warm-up steps."""
    components = make_vit_components(variant, image_size, num_classes)
    inputs = keras.Input((image_size, image_size, 3))
    model = keras.Model(inputs, apply_vit_components(components, inputs))
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True, global_clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (batch_size, image_size, image_size, 3)).astype("float32")
    labels = rng.integers(0, num_classes, batch_size).astype("int32")
    for _ in range(3):
        model.train_on_batch(images, labels)
    start = time.perf_counter()
    for _ in range(num_steps):
        loss = model.train_on_batch(images, labels)
    float(np.asarray(loss))
    return num_steps * batch_size / (time.perf_counter() - start), model.count_params()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="fashion_mnist", help="task name for get_task")
    parser.add_argument("--variant", default="tiny/4", help="ViT variant of keras_multipath.layers")
    parser.add_argument("--image_size", type=int, default=32, help="model resolution in pixels")
    parser.add_argument("--batch_size", type=int, default=128, help="examples per batch")
    parser.add_argument("--pipeline_batches", type=int, default=100, help="batches timed per pipeline")
    parser.add_argument("--train_steps", type=int, default=20, help="training steps timed")
    args = parser.parse_args()

    task = get_task(args.task)
    augmented = measure_pipeline(task, args.batch_size, args.image_size, ALL_AUGMENTATIONS, args.pipeline_batches)
    plain = measure_pipeline(task, args.batch_size, args.image_size, {}, args.pipeline_batches)
    training, num_params = measure_training(
        args.variant, args.image_size, task.num_classes, args.batch_size, args.train_steps
    )

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs"
    print(f"date: {date}; machine: {machine}; backend: {keras.backend.backend()}")
    print(f"task {task.name}, ViT {args.variant} ({num_params:,} params) at {args.image_size} px, "
          f"batch {args.batch_size}")
    print(f"pipeline, all augmentations: {augmented:,.0f} images/s")
    print(f"pipeline, no augmentation:   {plain:,.0f} images/s")
    print(f"ViT training steps:          {training:,.0f} images/s")
    print(f"ratio pipeline (augmented) / training: {augmented / training:.1f}")
    print(f"| {keras.backend.backend()} | {task.name} | {args.variant} @ {args.image_size} px, batch "
          f"{args.batch_size} | {augmented:,.0f} | {plain:,.0f} | {training:,.0f} | "
          f"{augmented / training:.1f} |")


if __name__ == "__main__":
    main()

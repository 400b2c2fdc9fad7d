"""Training step time of a ViT path built from keras_multipath layers against keras-hub.

Ours: the layers of `make_vit_components` (embedding ... encoder_norm, head) in one
functional model. Peer: keras-hub's `ViTBackbone` with random weights and its
`ViTImageClassifier` head (class token, Dense) at the same configuration. Both models are
compiled with the same SGD optimizer and loss, and trained with `train_on_batch` on the same
batch held in memory; rounds of `--steps` steps alternate between the two models, and the
script reports medians over `--repeats` rounds and the median of the per-round ratios.

Run once per backend:

    .venv/bin/python benchmarks/step_time.py --backend jax

`--no-write` prints without updating benchmarks/RESULTS.md.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common  # noqa: E402

BACKEND = _common.select_backend()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_multipath.layers import apply_vit_components, get_variant, make_vit_components  # noqa: E402


def build_ours(variant, image_size, num_classes):
    components = make_vit_components(variant, image_size, num_classes)
    inputs = keras.Input((image_size, image_size, 3))
    return keras.Model(inputs, apply_vit_components(components, inputs), name="ours")


def build_keras_hub(variant, image_size, num_classes):
    import keras_hub  # imports TensorFlow on every backend, so only here

    size = get_variant(variant)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(image_size, image_size, 3),
        patch_size=size["patch_size"],
        num_layers=size["num_layers"],
        num_heads=size["num_heads"],
        hidden_dim=size["hidden_dim"],
        mlp_dim=size["mlp_dim"],
        dropout_rate=0.0,
        attention_dropout=0.0,
        layer_norm_epsilon=1e-6,
    )
    return keras_hub.models.ViTImageClassifier(backbone, num_classes, preprocessor=None)


def compile_model(model):
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True, global_clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=BACKEND, help="Keras backend (sets KERAS_BACKEND).")
    parser.add_argument("--variant", default="tiny/4", help="ViT size from VIT_VARIANTS.")
    parser.add_argument("--image-size", type=int, default=32, help="Image side in pixels.")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=5, help="Training steps per timed round.")
    parser.add_argument("--repeats", type=int, default=15, help="Timed rounds per model.")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed steps per model first.")
    parser.add_argument("--no-write", action="store_true", help="Do not update RESULTS.md.")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (args.batch_size, args.image_size, args.image_size, 3))
    images = images.astype("float32")
    labels = rng.integers(0, args.num_classes, (args.batch_size,)).astype("int32")

    keras.utils.set_random_seed(0)
    models = {
        "ours": build_ours(args.variant, args.image_size, args.num_classes),
        "keras_hub": build_keras_hub(args.variant, args.image_size, args.num_classes),
    }
    params = {name: model.count_params() for name, model in models.items()}
    for model in models.values():
        compile_model(model)
        for _ in range(args.warmup):
            model.train_on_batch(images, labels)
            model.predict_on_batch(images)

    def train_round(model):
        def run():
            for _ in range(args.steps):
                model.train_on_batch(images, labels)
        return run

    def predict_round(model):
        def run():
            for _ in range(args.steps):
                model.predict_on_batch(images)
        return run

    train = _common.interleaved(
        {name: train_round(model) for name, model in models.items()}, args.repeats
    )
    predict = _common.interleaved(
        {name: predict_round(model) for name, model in models.items()}, args.repeats
    )
    per_step = {kind: {name: [t / args.steps for t in times[name]] for name in models}
                for kind, times in (("train", train), ("predict", predict))}
    medians = {kind: {name: _common.median(v) for name, v in d.items()}
               for kind, d in per_step.items()}
    ratios = {kind: _common.paired_ratio(d["ours"], d["keras_hub"]) for kind, d in per_step.items()}

    config = f"{args.variant} @ {args.image_size} px, batch {args.batch_size}"
    print(f"backend {BACKEND}, {config}, params ours {params['ours']:,} "
          f"keras_hub {params['keras_hub']:,}")
    for kind in ("train", "predict"):
        print(f"{kind}: ours {medians[kind]['ours'] * 1e3:.1f} ms/step, keras_hub "
              f"{medians[kind]['keras_hub'] * 1e3:.1f} ms/step, ratio ours/keras_hub "
              f"{ratios[kind]:.3f}")

    if args.no_write:
        return
    intro = f"""
## Training step time: our ViT path against keras-hub's ViTBackbone

Command, once per backend:
`OMP_NUM_THREADS=1 .venv/bin/python benchmarks/step_time.py --backend <backend>
--repeats {args.repeats}` (tiny/4 at 32 px, batch 64, 10 classes; {args.warmup} warm-up
steps, then {args.repeats} interleaved rounds of {args.steps} steps per model).

Ours is the functional model of `make_vit_components` + `apply_vit_components`; the peer is
keras-hub 0.32 `ViTBackbone` with random weights plus `ViTImageClassifier` (class token,
Dense), same sizes, no dropout. Both train with `train_on_batch` on one in-memory batch
with SGD (momentum 0.9, Nesterov, global norm clipping 1.0). Times are medians per step;
the ratio is the median over rounds of ours / keras-hub measured in the same round, so
below 1.0 means ours is faster.
"""
    header = ["backend", "configuration", "params (ours / keras-hub)", "train ms/step ours",
              "train ms/step keras-hub", "train ratio", "predict ratio", "date", "load average"]
    row = [BACKEND, config, f"{params['ours']:,} / {params['keras_hub']:,}",
           f"{medians['train']['ours'] * 1e3:.1f}", f"{medians['train']['keras_hub'] * 1e3:.1f}",
           f"{ratios['train']:.3f}", f"{ratios['predict']:.3f}", _common.utc_now(),
           _common.load_average()]
    notes = f"Machine: {_common.machine_line()}."
    _common.update_results("step_time", intro, header, [row], key_columns=2, notes=notes)


if __name__ == "__main__":
    main()

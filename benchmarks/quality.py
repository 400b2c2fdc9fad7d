"""Quality of multipath models on real offline data, over several seeds.

Task "mixed": MNIST digits and Fashion-MNIST clothes in one 20-class label space (digits
0-9, clothes 10-19), images resized to 16 px. Per seed:

- main path P0: a micro/4 ViT trained on the mixed task for `--path-steps` steps (Adam);
- other path P1: a micro/4 ViT trained on Fashion-MNIST alone (another task), used headless.

Then, each for `--steps` steps of SGD (momentum 0.9, Nesterov, global norm clipping 1.0,
learning rate `--lr`) on the mixed task:

(a) P0 alone (no training), P0 fine-tuned (all weights trained), and the multipath model
    (P0 and P1 frozen, router and connector trained), with the trained fraction;
(b) the per-sample router against an input-independent learned mixture (the same router fed
    zeros, so its weights depend only on its parameters) and a uniform average (weights
    fixed at 1/2, connector trained);
    for every router, its mean weight of P1 on digit and on clothes test images shows
    whether it routes by domain;
(c) ablations: the plain weighted mixture in place of the decoupled gradient, router
    learning-rate multipliers 0.01 and 1.0 (default 0.05), and initial main-path weights 0.5
    and 0.95 (default 0.8).

The frozen paths run no augmentation, so their outputs on the training set are computed once
per seed and the trainable parts train on them; that is the same computation as training the
whole multipath model. Accuracy is on 2,000 held-out test images (1,000 per domain).

    .venv/bin/python benchmarks/quality.py --backend tensorflow --seeds 5
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common  # noqa: E402

BACKEND = _common.select_backend()

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from keras_multipath.data.offline import (  # noqa: E402
    load_fashion_mnist_arrays,
    load_mnist_arrays,
)
from keras_multipath.layers import (  # noqa: E402
    Connector,
    MultipathMixture,
    MultipathRouter,
    apply_vit_components,
    make_vit_components,
)

IMAGE_SIZE = 16


def to_images(x):
    """uint8 (N, 28, 28, 1) -> float32 (N, 16, 16, 3) in [-1, 1] (area-weighted resize)."""
    import tensorflow as tf

    resized = tf.image.resize(x.astype("float32") / 127.5 - 1.0, (IMAGE_SIZE, IMAGE_SIZE),
                              method="area").numpy()
    return np.repeat(resized, 3, axis=-1)


def load_data(num_train, num_test, rng):
    (mx, my), _, (mtx, mty) = load_mnist_arrays()
    (fx, fy), (ftx, fty) = load_fashion_mnist_arrays()

    def pick(x, y, n):
        index = rng.choice(len(y), n, replace=False)
        return to_images(x[index]), y[index].astype("int32")

    m_train, f_train = pick(mx, my, num_train // 2), pick(fx, fy, num_train // 2)
    m_test, f_test = pick(mtx, mty, num_test // 2), pick(ftx, fty, num_test // 2)
    train = (np.concatenate([m_train[0], f_train[0]]), np.concatenate([m_train[1], f_train[1] + 10]))
    test = (np.concatenate([m_test[0], f_test[0]]), np.concatenate([m_test[1], f_test[1] + 10]))
    fashion = (f_train[0], f_train[1])
    return train, test, fashion


def sgd(lr):
    return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, global_clipnorm=1.0)


def fit(model, x, y, steps, batch_size, optimizer, seed):
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(y)) for _ in range(steps * batch_size // len(y) + 1)])
    for step in range(steps):
        index = order[step * batch_size:(step + 1) * batch_size]
        model.train_on_batch(x[index] if not isinstance(x, list) else [a[index] for a in x],
                             y[index])
    return model


def accuracy(model, x, y):
    logits = model.predict(x, batch_size=500, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == y))


class _PlainMixture(keras.layers.Layer):
    """sum_k w_k * L_k with ordinary gradients (the ablation of the decoupled gradient)."""

    def call(self, path_logits, router_weights):
        stacked = ops.stack(list(path_logits), axis=1)
        return ops.sum(ops.expand_dims(router_weights, -1) * stacked, axis=1)


def trainable_part(num_classes, dim, variant="router", lr_mult=0.05, main_weight=0.8):
    """Build the trainable part: a model from (main logits, P1 representation) to mixed
    logits."""
    main = keras.Input((num_classes,))
    rep = keras.Input((dim,))
    other = Connector(num_classes)(rep)
    if variant == "uniform":
        weights = ops.ones_like(main[:, :2]) * 0.5
    else:
        router = MultipathRouter(2, main_path_weight=main_weight, lr_mult=lr_mult)
        weights = router(ops.zeros_like(main) if variant == "constant" else main)
    mixture = _PlainMixture() if variant == "plain" else MultipathMixture()
    model = keras.Model([main, rep], mixture([main, other], weights))
    return model


def run_seed(args, seed):
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    (x, y), (tx, ty), (fx, fy) = load_data(args.num_train, args.num_test, rng)
    classes = 20
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))

    p0 = make_vit_components(args.variant, IMAGE_SIZE, classes, name_prefix=f"p0s{seed}_")
    main_model = keras.Model(inputs, apply_vit_components(p0, inputs))
    fit(main_model, x, y, args.path_steps, args.batch_size, keras.optimizers.Adam(1e-3), seed)
    p1 = make_vit_components(args.variant, IMAGE_SIZE, 10, name_prefix=f"p1s{seed}_")
    fit(keras.Model(inputs, apply_vit_components(p1, inputs)), fx, fy, args.path_steps,
        args.batch_size, keras.optimizers.Adam(1e-3), seed + 1000)
    headless = {name: layer for name, layer in p1.items() if name != "head"}
    rep_model = keras.Model(inputs, apply_vit_components(headless, inputs))

    results = {"P0 alone": accuracy(main_model, tx, ty)}
    activated = main_model.count_params() + rep_model.count_params()

    # Features of the frozen paths, computed once.
    train_feats = [main_model.predict(x, batch_size=500, verbose=0),
                   rep_model.predict(x, batch_size=500, verbose=0)]
    test_feats = [main_model.predict(tx, batch_size=500, verbose=0),
                  rep_model.predict(tx, batch_size=500, verbose=0)]
    dim = train_feats[1].shape[-1]

    variants = {
        "multipath (router, decoupled, lr_mult 0.05, w0 0.8)": dict(),
        "input-independent learned mixture": dict(variant="constant"),
        "uniform average": dict(variant="uniform"),
        "plain weighted mixture (no decoupled gradient)": dict(variant="plain"),
        "router lr_mult 0.01": dict(lr_mult=0.01),
        "router lr_mult 1.0": dict(lr_mult=1.0),
        "initial main-path weight 0.5": dict(main_weight=0.5),
        "initial main-path weight 0.95": dict(main_weight=0.95),
    }
    trained_fraction = None
    for name, kwargs in variants.items():
        keras.utils.set_random_seed(seed)
        model = trainable_part(classes, dim, **kwargs)
        fit(model, train_feats, y, args.steps, args.batch_size, sgd(args.lr), seed + 1)
        results[name] = accuracy(model, test_feats, ty)
        routers = [layer for layer in model.layers if isinstance(layer, MultipathRouter)]
        if routers:
            # P1's mean router weight on digit and on clothes test images.
            probe = keras.Model(model.inputs, routers[0].output)
            weights = np.asarray(probe.predict(test_feats, batch_size=500, verbose=0))[:, 1]
            results[f"_p1_weight:{name}"] = (float(weights[ty < 10].mean()),
                                            float(weights[ty >= 10].mean()))
        if trained_fraction is None:
            trained = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
            trained_fraction = trained / (activated + trained)

    # Fine-tuning every weight of P0 for the same steps and optimizer.
    for layer in p0.values():
        layer.trainable = True
    fit(main_model, x, y, args.steps, args.batch_size, sgd(args.lr), seed + 1)
    results["P0 fine-tuned (all weights)"] = accuracy(main_model, tx, ty)
    results["_trained_fraction"] = trained_fraction
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=BACKEND, help="Keras backend (sets KERAS_BACKEND).")
    parser.add_argument("--variant", default="micro/4", help="ViT size of both paths.")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--num-train", type=int, default=4000, help="Training images, half per domain.")
    parser.add_argument("--num-test", type=int, default=2000, help="Test images, half per domain.")
    parser.add_argument("--path-steps", type=int, default=300, help="Adam steps per path.")
    parser.add_argument("--steps", type=int, default=300, help="SGD steps of each compared model.")
    parser.add_argument("--lr", type=float, default=0.05, help="SGD learning rate.")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--no-write", action="store_true", help="Do not update RESULTS.md.")
    args = parser.parse_args()

    per_seed = []
    for seed in range(args.seeds):
        result = run_seed(args, seed)
        per_seed.append(result)
        print(f"seed {seed}: " + ", ".join(
            f"{k} {v:.4f}" for k, v in result.items() if not isinstance(v, tuple)), flush=True)
    names = [k for k in per_seed[0] if not k.startswith("_")]
    fraction = float(np.mean([r["_trained_fraction"] for r in per_seed]))
    baseline = np.array([r["P0 alone"] for r in per_seed])
    rows = []
    for name in names:
        values = np.array([r[name] for r in per_seed])
        gain = values - baseline
        trained = {"P0 alone": "0%", "P0 fine-tuned (all weights)": "100%"}.get(
            name, f"{fraction:.2%}"
        )
        routed = "-"
        if f"_p1_weight:{name}" in per_seed[0]:
            digits, clothes = np.mean([r[f"_p1_weight:{name}"] for r in per_seed], axis=0)
            routed = f"{digits:.3f} / {clothes:.3f}"
        rows.append([BACKEND, name, f"{values.mean():.4f}", f"{values.std(ddof=1):.4f}",
                     f"{gain.mean():+.4f}", f"{gain.std(ddof=1):.4f}", trained, routed,
                     _common.utc_now()])
        print(f"{name}: {values.mean():.4f} +- {values.std(ddof=1):.4f} (vs P0 {gain.mean():+.4f}),"
              f" P1 weight on digits / clothes {routed}")
    print(f"trained fraction of the multipath model: {fraction:.4%}")
    if args.no_write:
        return
    intro = f"""
## Quality: multipath, routing and ablations on MNIST + Fashion-MNIST

Command, once per backend: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/quality.py
--backend <backend> --seeds {args.seeds}` ({args.seeds} seeds; micro/4 paths at 16 px;
{args.num_train} training and {args.num_test} test images, half from each domain;
{args.path_steps} Adam steps per path; {args.steps} SGD steps, learning rate {args.lr}, batch
{args.batch_size}, for each compared model). Seeds give different weights on each backend, so
the backends' rows are independent repetitions of the experiment.

The task mixes MNIST digits and Fashion-MNIST clothes in one 20-class label space. P0 is
trained on it; P1 on Fashion-MNIST alone, then used headless through a connector. Test
accuracy, mean and sample standard deviation over seeds, and the difference to P0 alone
within each seed. "trained" is the share of the activated parameters that a model trains:
the router and connector of the mixtures (the uniform average trains only its connector, a
few parameters fewer), every weight of the fine-tuned P0. "P1 weight" is the router's mean
weight of P1 on the digit and on the clothes test images, averaged over seeds: a router that
sends clothes to P1 gives the second number a larger value than the first.
"""
    header = ["backend", "model", "test accuracy mean", "std", "gain over P0 alone mean",
              "gain std", "trained", "P1 weight, digits / clothes", "date"]
    notes = f"Machine: {_common.machine_line()}."
    _common.update_results("quality_multipath", intro, header, rows, key_columns=2, notes=notes)


if __name__ == "__main__":
    main()

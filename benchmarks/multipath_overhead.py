"""Training step of a K-path multipath model against its floor.

The multipath model is the one the library trains: `build_multipath_graph` over frozen
subpaths held by an `Assembler`, a router and K - 1 connectors. Its floor is measured in
the same run, in separate models:

- frozen forward: one model from images to the K subpaths' outputs (main logits and
  headless representations), run with `predict_on_batch`;
- trainable part: one model from those outputs, held in memory, through the connectors,
  router and mixture, trained with `train_on_batch`.

floor = frozen forward + trainable part, and the script reports multipath step / floor.

Two layouts of the K subpaths are measured:

- `disjoint`: every subpath has its own components;
- `shared`: the subpaths share their frozen prefix (embedding ... encoderblock_{L-2}) and
  differ from the last encoder block on, as children of one root do. Here the floor's
  frozen forward computes the prefix once, and the step is also compared with K times one
  subpath's forward.

Run once per backend:

    .venv/bin/python benchmarks/multipath_overhead.py --backend jax
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common  # noqa: E402

BACKEND = _common.select_backend()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_multipath.layers import (  # noqa: E402
    Connector,
    MultipathMixture,
    MultipathRouter,
    apply_vit_components,
)
from keras_multipath.system import Path, System  # noqa: E402
from keras_multipath.system.assembly import Assembler, build_vit_template  # noqa: E402
from keras_multipath.system.multipath_model import build_multipath_graph  # noqa: E402

AGENT = "singlepath~bench"


class _Ids:
    """Id source for `Assembler.create_component`."""

    def __init__(self, agent_id):
        self.agent_id = agent_id
        self.next_id = 0

    def new_component_id(self):
        self.next_id += 1
        return self.next_id - 1


def make_subpaths(assembler, variant, image_size, num_classes, num_paths, layout):
    """Register frozen components and return K `Path`s (path 0 with a head)."""
    ids = _Ids(AGENT)
    shared = {}
    paths = []
    for index in range(num_paths):
        template = build_vit_template(variant, image_size, num_classes if index == 0 else 0)
        names = list(template)
        last_block = max(n for n in names if n.startswith("encoderblock_"))
        prefix_end = names.index(last_block)
        keys = []
        for position, (name, layer) in enumerate(template.items()):
            if layout == "shared" and position < prefix_end:
                if name not in shared:
                    shared[name] = assembler.create_component(name, layer, ids).key
                keys.append(shared[name])
            else:
                keys.append(assembler.create_component(name, layer, ids).key)
        for key in keys:
            assembler.layer(key).trainable = False
        hparams = {"ds_image_size": image_size, "num_classes": num_classes if index == 0 else 0}
        paths.append(Path(agent_id=AGENT, task_name="bench", id=index, hparams=hparams,
                          components=keys))
    return paths


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=BACKEND, help="Keras backend (sets KERAS_BACKEND).")
    parser.add_argument("--variant", default="tiny/4", help="ViT size of every subpath.")
    parser.add_argument("--image-size", type=int, default=32, help="Image side in pixels.")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--num-paths", type=int, nargs="+", default=[2, 3], help="K values.")
    parser.add_argument("--layouts", nargs="+", default=["disjoint", "shared"])
    parser.add_argument("--steps", type=int, default=3, help="Steps per timed round.")
    parser.add_argument("--repeats", type=int, default=11, help="Timed rounds per model.")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed steps per model first.")
    parser.add_argument("--no-write", action="store_true", help="Do not update RESULTS.md.")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    size, batch, classes = args.image_size, args.batch_size, args.num_classes
    images = rng.uniform(-1, 1, (batch, size, size, 3)).astype("float32")
    labels = rng.integers(0, classes, (batch,)).astype("int32")
    keras.utils.set_random_seed(0)

    rows = []
    for layout in args.layouts:
        for num_paths in args.num_paths:
            rows.append(measure(args, layout, num_paths, images, labels))
    if args.no_write:
        return
    intro = f"""
## Multipath training step against its floor

Command, once per backend:
`OMP_NUM_THREADS=1 .venv/bin/python benchmarks/multipath_overhead.py --backend <backend>
--repeats {args.repeats}` (tiny/4 subpaths at 32 px, batch 64, 10 classes, K = 2 and 3,
{args.warmup} warm-up steps, then {args.repeats} interleaved rounds of {args.steps} steps per
model).

The multipath model is `build_multipath_graph` on frozen Assembler layers with a router and
connectors, trained with `train_on_batch` (SGD). Its floor is the sum of two separately
measured models: the frozen subpaths' forward pass (`predict_on_batch`, shared prefix
computed once) and the trainable part (router, connectors, mixture) trained on the
subpaths' outputs held in memory. `disjoint` subpaths share no component; `shared` subpaths
share every component before their last encoder block. Ratios are medians over rounds of
the two quantities measured in the same round. The floor pays the per-call overhead of two
Keras calls where the multipath step pays one.
"""
    header = ["backend", "layout", "K", "step ms", "floor ms", "step / floor",
              "step / (K x one path forward)", "frozen forward ms (deduplicated / naive)",
              "date", "load average"]
    notes = f"Machine: {_common.machine_line()}."
    _common.update_results("multipath_overhead", intro, header, rows, key_columns=3,
                           notes=notes)


def measure(args, layout, num_paths, images, labels):
    size, classes = args.image_size, args.num_classes
    assembler = Assembler(None, System())
    paths = make_subpaths(assembler, args.variant, size, classes, num_paths, layout)
    router = MultipathRouter(num_paths)
    connectors = [Connector(classes) for _ in range(num_paths - 1)]
    multipath = build_multipath_graph(assembler, paths, router, connectors)

    key = str(size)
    inputs = keras.Input((size, size, 3), name=key)
    cache = {}
    frozen_dedup = keras.Model(
        inputs,
        [apply_vit_components(assembler.path_layers(p), inputs, cache=cache) for p in paths],
    )
    frozen_naive = keras.Model(
        inputs, [apply_vit_components(assembler.path_layers(p), inputs) for p in paths]
    )
    one_path = keras.Model(inputs, apply_vit_components(assembler.path_layers(paths[0]), inputs))

    features = [np.asarray(f) for f in frozen_dedup.predict_on_batch(images)]
    feature_inputs = [keras.Input(f.shape[1:]) for f in features]
    logits = [feature_inputs[0]] + [c(x) for c, x in zip(connectors, feature_inputs[1:])]
    mixed = MultipathMixture()(logits, router(feature_inputs[0]))
    trainable_part = keras.Model(feature_inputs, mixed)

    def compile_model(model):
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, global_clipnorm=1.0),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    compile_model(multipath)
    compile_model(trainable_part)
    trainable_count = sum(int(np.prod(w.shape)) for w in multipath.trainable_weights)
    feed = {key: images}
    calls = {
        "step": lambda: multipath.train_on_batch(feed, labels),
        "frozen_dedup": lambda: frozen_dedup.predict_on_batch(images),
        "frozen_naive": lambda: frozen_naive.predict_on_batch(images),
        "trainable": lambda: trainable_part.train_on_batch(features, labels),
        "one_path": lambda: one_path.predict_on_batch(images),
    }
    for call in calls.values():
        for _ in range(args.warmup):
            call()

    def repeat(call):
        def run():
            for _ in range(args.steps):
                call()
        return run

    times = _common.interleaved({n: repeat(c) for n, c in calls.items()}, args.repeats)
    per_step = {n: [t / args.steps for t in v] for n, v in times.items()}
    floor = [f + t for f, t in zip(per_step["frozen_dedup"], per_step["trainable"])]
    k_forward = [num_paths * t for t in per_step["one_path"]]
    med = {n: _common.median(v) * 1e3 for n, v in per_step.items()}
    ratio = _common.paired_ratio(per_step["step"], floor)
    ratio_k = _common.paired_ratio(per_step["step"], k_forward)
    print(f"{BACKEND} {layout} K={num_paths}: trainable params {trainable_count:,}; step "
          f"{med['step']:.1f} ms, floor {_common.median(floor) * 1e3:.1f} ms (frozen forward "
          f"{med['frozen_dedup']:.1f}, naive {med['frozen_naive']:.1f}; trainable part "
          f"{med['trainable']:.1f}), one path forward {med['one_path']:.1f} ms; step/floor "
          f"{ratio:.3f}, step/(K x forward) {ratio_k:.3f}", flush=True)
    return [BACKEND, layout, str(num_paths), f"{med['step']:.1f}",
            f"{_common.median(floor) * 1e3:.1f}", f"{ratio:.3f}", f"{ratio_k:.3f}",
            f"{med['frozen_dedup']:.1f} / {med['frozen_naive']:.1f}", _common.utc_now(),
            _common.load_average()]


if __name__ == "__main__":
    main()

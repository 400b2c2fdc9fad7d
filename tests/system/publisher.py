"""A store-only agent process for the multi-process tests; it never imports Keras.

Usage: python publisher.py ROOT AGENT_ID ROUNDS [--intermediate N] [--share] [--in-place]

Each round publishes N intermediate states and then one end-of-cycle state, each with one new
path of new components whose weights encode their ids (see `store_helpers.weights_for`).
With --share, every path also references the components of the other agents' published
paths, and the last end-of-cycle publish first waits (up to 60 s) until another agent has
published, so that path shares components however the processes are scheduled. After each publish it prints "published <state name> <component keys...>".
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from store_helpers import new_component  # noqa: E402

from keras_multipath.system import LocalFileSystem, Path, Store  # noqa: E402

SHAPES = ((32, 32), (32,))


def publish_one(store, state, task_name, cycle, generation, shared):
    components, weights = [], {}
    for name in ("encoder_norm", "head"):
        component, values = new_component(state, name, SHAPES)
        components.append(component)
        weights[component.key] = values
    path = Path(state.agent_id, task_name, state.new_path_id(),
                components=list(shared) + [c.key for c in components])
    state.add_path(path)
    if generation == 0:
        state.paths = {path.key: path}
        state.published = [path.key]
        state.population = [path.key]
    else:
        state.population = state.population + [path.key]
    state.cycle, state.generation = cycle, generation
    name = store.publish(state, components, weights)
    print("published", name, *path.components, flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("agent_id")
    parser.add_argument("rounds", type=int)
    parser.add_argument("--intermediate", type=int, default=0)
    parser.add_argument("--share", action="store_true")
    parser.add_argument("--in-place", action="store_true",
                        help="publish with the object-store protocol (no folder rename)")
    args = parser.parse_args()

    print("modules", "keras" in sys.modules, "tensorflow" in sys.modules, flush=True)
    store = Store(args.root, filesystem=LocalFileSystem(atomic_rename=not args.in_place))
    state = store.resume(args.agent_id)
    task_name = args.agent_id.split("~", 1)[1].replace("~", "/")
    # Continue after the latest state, which may be an intermediate one of a killed run:
    # (c, 0) is followed by (c, 1) ... (c, N), and then by the end-of-cycle state (c + 1, 0).
    cycle, generation = state.cycle, state.generation
    published_rounds = 0
    while published_rounds < args.rounds:
        if generation < args.intermediate:
            generation += 1
        else:
            cycle, generation = cycle + 1, 0
        shared = []
        if args.share:
            last_publish = generation == 0 and published_rounds == args.rounds - 1
            system = store.load_system()
            deadline = time.monotonic() + 60
            while last_publish and time.monotonic() < deadline and not any(
                path.agent_id != args.agent_id for path in system.published_paths()
            ):
                time.sleep(0.05)
                system = store.load_system()
            for path in system.published_paths():
                if path.agent_id != args.agent_id:
                    shared.extend(k for k in path.components if not k.startswith(args.agent_id))
            shared = list(dict.fromkeys(shared))
        publish_one(store, state, task_name, cycle, generation, shared)
        published_rounds += generation == 0

if __name__ == "__main__":
    main()

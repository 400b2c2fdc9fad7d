"""Multi-process tests of the store: concurrent publishers and SIGKILL fault injection.

The publisher processes import only the store (no Keras), and the checks read the store with
numpy only, so these tests do not depend on the Keras backend. They run once, in the
``KERAS_BACKEND=tensorflow`` run of the suite, and are skipped in the others.
"""

import os
import random
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

from store_helpers import weights_for  # noqa: E402

from keras_multipath.system import Store, parse_key  # noqa: E402

PUBLISHER = os.path.join(os.path.dirname(__file__), "publisher.py")
SHAPES = ((32, 32), (32,))

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="backend-independent store test (no Keras); it runs in the tensorflow backend run",
)


def _start_publisher(root, agent_id, rounds, *extra):
    return subprocess.Popen(
        [sys.executable, PUBLISHER, str(root), agent_id, str(rounds), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _published_lines(stdout):
    """Return [(state name, [component keys])] from a publisher's output."""
    published = []
    for line in stdout.splitlines():
        fields = line.split()
        if fields and fields[0] == "published":
            published.append((fields[1], fields[2:]))
    return published


def _check_weights(store, component_key):
    _, id_ = parse_key(component_key)
    weights = store.read_weights(component_key)
    expected = weights_for(id_, SHAPES)
    assert len(weights) == len(expected), component_key
    for actual, wanted in zip(weights, expected):
        np.testing.assert_array_equal(actual, wanted, err_msg=component_key)


def _check_whole_system(root):
    """Load the system, read every component of every path, and return the System."""
    store = Store(str(root))
    system = store.load_system()
    assert system.load_errors == {}
    for path in system.paths.values():
        for key in path.components:
            _check_weights(store, key)
    return system


@pytest.mark.parametrize("protocol", ["rename", "in_place"])
def test_concurrent_publishers_and_reader(tmp_path, protocol):
    rounds = 6
    agents = ["singlepath~task_a", "singlepath~task_b"]
    extra = ["--in-place"] if protocol == "in_place" else []
    processes = [
        _start_publisher(tmp_path, agent, rounds, "--intermediate", "1", "--share", *extra)
        for agent in agents
    ]

    loads = 0
    while any(process.poll() is None for process in processes):
        _check_whole_system(tmp_path)
        loads += 1
    outputs = [process.communicate() for process in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr
    assert loads >= 3

    system = _check_whole_system(tmp_path)
    store = Store(str(tmp_path))
    for agent, (stdout, _) in zip(agents, outputs):
        assert stdout.splitlines()[0] == "modules False False"
        published = _published_lines(stdout)
        assert len(published) == 2 * rounds
        # Every end-of-cycle publish stays readable; intermediate ones were cleaned up.
        assert store.list_states(agent) == [(cycle, 0) for cycle in range(1, rounds + 1)]
        for name, component_keys in published:
            if name.endswith("_0"):
                for key in component_keys:
                    assert key in system.components
                    _check_weights(store, key)
    # The last paths share components across the two agents.
    last_a = system.published_paths(agents[0])[0]
    assert any(key.startswith(agents[1]) for key in last_a.components)


def _inject_kills(root, count, seed, *extra):
    """Kill a publisher `count` times at random moments; check the store after each kill."""
    rng = random.Random(seed)
    agent = "singlepath~victim"
    end_of_cycle = {}
    interrupted = 0
    for _ in range(count):
        process = _start_publisher(root, agent, 1000, "--intermediate", "1", *extra)
        # The first line comes after the imports, so the kill lands while the store is used.
        first_line = process.stdout.readline()
        time.sleep(rng.uniform(0.0, 0.4))
        process.send_signal(signal.SIGKILL)
        stdout, _ = process.communicate()
        stdout = first_line + stdout
        assert process.returncode == -signal.SIGKILL
        published = _published_lines(stdout)
        for name, keys in published:
            if name.endswith("_0"):
                end_of_cycle[name] = keys
        entries = os.listdir(os.path.join(root, agent)) if os.path.isdir(
            os.path.join(root, agent)) else []
        interrupted += any(
            entry.startswith(".tmp-")
            or not os.path.exists(os.path.join(root, agent, entry, "manifest.json"))
            for entry in entries
        )

        store = Store(str(root))
        state = store.resume(agent)
        if published:
            last = tuple(int(x) for x in published[-1][0].split("_")[1:])
            assert (state.cycle, state.generation) >= last
        _check_whole_system(root)
        for name, keys in end_of_cycle.items():
            cycle = int(name.split("_")[1])
            assert store.read_state(agent, cycle, 0) is not None, name
            for key in keys:
                _check_weights(store, key)
    print(f"{count} kills, {interrupted} during a publish, {len(end_of_cycle)} states kept")
    return end_of_cycle, interrupted


def test_sigkill_fault_injection(tmp_path):
    end_of_cycle, interrupted = _inject_kills(tmp_path, count=20, seed=7)
    # Most runs publish a few states before the kill; a loaded machine publishes fewer.
    assert len(end_of_cycle) >= 3
    # Kills that hit a publish leave a temporary folder, which the next run removes.
    assert interrupted >= 1


def test_sigkill_fault_injection_in_place(tmp_path):
    """The protocol for object stores: files written in place, the manifest renamed last."""
    end_of_cycle, interrupted = _inject_kills(tmp_path, 8, 3, "--in-place")
    assert len(end_of_cycle) >= 2
    assert interrupted >= 1


@pytest.mark.slow
def test_sigkill_fault_injection_many(tmp_path):
    end_of_cycle, interrupted = _inject_kills(tmp_path, count=150, seed=11)
    assert len(end_of_cycle) >= 40
    assert interrupted >= 10

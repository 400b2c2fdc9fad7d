"""Tests of the main job (examples/grow_system.py) on real offline data: parallel agent
processes on one store, a rerun that continues the system, and the report files."""

import csv
import json
import os
import subprocess
import sys

import keras
import pytest
from PIL import Image

from keras_multipath.system import Store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "examples", "grow_system.py")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY_FLAGS = ["--cycles=1", "--candidates=1", "--train_examples=32", "--validation_examples=32"]


def grow_system(store, *flags):
    command = [sys.executable, SCRIPT, f"--store={store}",
               f"--backend={keras.backend.backend()}", "--poll_seconds=0.5",
               *TINY_FLAGS, *flags]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result.stdout


def end_of_cycle_state(store, agent_id, cycle=None):
    if cycle is None:
        return store.read_state(agent_id, include_intermediate=False)
    return store.read_state(agent_id, cycle=cycle, generation=0)


def trial_records(work_dir, agent_id):
    with open(os.path.join(work_dir, agent_id, "trials.jsonl")) as f:
        return [json.loads(line) for line in f]


def check_png(filename, min_width=300, min_height=200):
    with open(filename, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE, filename
    with Image.open(filename) as image:
        assert image.format == "PNG"
        width, height = image.size
        image.verify()
    assert width >= min_width, (filename, width)
    assert height >= min_height, (filename, height)


def published_cycles(store, agent_id):
    return [cycle for cycle, _ in store.list_states(agent_id, include_intermediate=False)]


def test_main_job_rerun_continues_system(tmp_path):
    store_root = str(tmp_path / "store")
    work_dir = f"{store_root}-trials"
    report_dir = f"{store_root}-report"
    store = Store(store_root)
    flags = ("--tasks=digits", "--agent_kinds=singlepath,multipath", "--parallel=1")
    agents = ("singlepath~digits", "multipath~digits")

    output = grow_system(store_root, *flags)
    first = {}
    for agent_id in agents:
        assert published_cycles(store, agent_id) == [1], output
        first[agent_id] = end_of_cycle_state(store, agent_id)
    assert "digits  multipath" in output
    assert "digits  singlepath" in output

    # The same command again continues every agent for one more cycle.
    output = grow_system(store_root, *flags)
    for agent_id in agents:
        before = first[agent_id]
        after = end_of_cycle_state(store, agent_id)
        assert published_cycles(store, agent_id) == [1, 2]
        assert after.next_path_id > before.next_path_id
        assert after.next_component_id >= before.next_component_id
        new_path_ids = [path.id for path in after.history]
        assert new_path_ids, f"{agent_id}: the second cycle recorded no candidate"
        assert len(set(new_path_ids)) == len(new_path_ids)
        assert min(new_path_ids) >= before.next_path_id
        for key, shard in after.shards.items():
            if shard == after.state_name:
                assert after.components[key].id >= before.next_component_id, key
        # The cycle-1 state stays, so the path published then remains readable.
        assert end_of_cycle_state(store, agent_id, cycle=1).published == before.published
        records = trial_records(work_dir, agent_id)
        assert [r["trial_id"] for r in records] == ["0000", "0001"]
        assert {r["status"] for r in records} == {"COMPLETED"}
        logs = os.listdir(os.path.join(work_dir, agent_id, "tensorboard"))
        assert sorted(logs) == ["trial_0000", "trial_0001"]
    system = store.load_system()
    keys = [path.key for path in system.published_paths()]
    assert len(set(keys)) == len(keys)

    # The printed leaderboard and the report.
    assert "digits  multipath" in output
    with open(os.path.join(report_dir, "leaderboard.csv")) as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["task"], r["kind"]) for r in rows) == [
        ("digits", "multipath"), ("digits", "singlepath"),
    ]
    for row in rows:
        assert 0.0 <= float(row["validation_accuracy"]) <= 1.0
        assert 0.0 <= float(row["test_accuracy"]) <= 1.0
        assert 0.0 < float(row["accounted_params"]) <= int(row["params"])
        assert 0.0 < float(row["trained_fraction"]) <= 1.0
    for name in ("accuracy.png", "scores.png", "system_graph.png"):
        check_png(os.path.join(report_dir, name))


def slow_unless_torch(test):
    """Mark `test` slow on the TensorFlow and JAX backends.

    Each agent process imports Keras, which takes 20-60 s on 2 shared cores. So the default
    run covers the agent processes on the torch backend, whose trials compile fastest here,
    and `-m slow` runs the others.
    """
    return test if keras.backend.backend() == "torch" else pytest.mark.slow(test)


@slow_unless_torch
def test_parallel_agents_publish(tmp_path):
    store_root = str(tmp_path / "store")
    work_dir = f"{store_root}-trials"
    store = Store(store_root)
    output = grow_system(store_root, "--tasks=digits,lfw_faces", "--agent_kinds=singlepath",
                         "--parallel=2")
    for agent_id in ("singlepath~digits", "singlepath~lfw_faces"):
        state = end_of_cycle_state(store, agent_id)
        assert state is not None, output
        assert state.cycle == 1
        assert len(state.published) == 1
        with open(os.path.join(work_dir, agent_id, "agent.log")) as f:
            log = f.read()
        assert f"Agent {agent_id} ends cycle 0: publishes" in log
    assert "digits     singlepath" in output
    assert "lfw_faces  singlepath" in output

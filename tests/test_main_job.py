"""Tests of the main job (examples/grow_system.py) on real offline data: parallel agent
processes on one store, a rerun that continues the system, and the report files."""

import csv
import json
import os
import subprocess
import sys

import keras
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


def test_main_job_parallel_then_continues(tmp_path):
    store_root = str(tmp_path / "store")
    work_dir = f"{store_root}-trials"
    report_dir = f"{store_root}-report"
    store = Store(store_root)

    # Run 1: two singlepath agents as two processes on the one store.
    output = grow_system(store_root, "--tasks=digits,lfw_faces", "--agent_kinds=singlepath",
                         "--parallel=2")
    first = {}
    for agent_id in ("singlepath~digits", "singlepath~lfw_faces"):
        state = end_of_cycle_state(store, agent_id)
        assert state is not None, output
        assert state.cycle == 1
        assert len(state.published) == 1
        first[agent_id] = state
        assert os.path.isfile(os.path.join(work_dir, agent_id, "agent.log"))
    assert "digits     singlepath" in output
    assert "lfw_faces  singlepath" in output
    published_before = len(store.load_system().published_paths())

    # Run 2: the same store continues: one more singlepath cycle, then a multipath agent.
    output = grow_system(store_root, "--tasks=digits", "--agent_kinds=singlepath,multipath",
                         "--parallel=1")
    before = first["singlepath~digits"]
    after = end_of_cycle_state(store, "singlepath~digits")
    assert after.cycle == 2
    assert after.next_path_id > before.next_path_id
    assert after.next_component_id >= before.next_component_id
    new_path_ids = [path.id for path in after.history]
    assert new_path_ids, "the second cycle recorded no candidate"
    assert len(set(new_path_ids)) == len(new_path_ids)
    assert min(new_path_ids) >= before.next_path_id
    for key, shard in after.shards.items():
        component = after.components[key]
        if shard == after.state_name:
            assert component.id >= before.next_component_id, key
    # The cycle-1 state is kept, so both cycles' published paths stay readable.
    assert end_of_cycle_state(store, "singlepath~digits", cycle=1).published == before.published
    # The lfw_faces agent did not run again.
    assert end_of_cycle_state(store, "singlepath~lfw_faces").cycle == 1

    multipath = end_of_cycle_state(store, "multipath~digits")
    assert multipath.cycle == 1
    assert len(multipath.published) == 1
    system = store.load_system()
    assert len(system.published_paths()) == published_before + 1
    keys = [path.key for path in system.published_paths()]
    assert len(set(keys)) == len(keys)

    records = trial_records(work_dir, "singlepath~digits")
    assert [r["trial_id"] for r in records] == ["0000", "0001"]
    assert {r["status"] for r in records} == {"COMPLETED"}

    # The printed leaderboard and the report.
    assert "digits     multipath" in output
    with open(os.path.join(report_dir, "leaderboard.csv")) as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["task"], r["kind"]) for r in rows) == [
        ("digits", "multipath"), ("digits", "singlepath"), ("lfw_faces", "singlepath"),
    ]
    for row in rows:
        assert 0.0 <= float(row["validation_accuracy"]) <= 1.0
        assert 0.0 <= float(row["test_accuracy"]) <= 1.0
        assert 0.0 < float(row["accounted_params"]) <= int(row["params"])
        assert 0.0 < float(row["trained_fraction"]) <= 1.0
    for name in ("accuracy.png", "scores.png", "system_graph.png"):
        check_png(os.path.join(report_dir, name))
    for agent_id in ("singlepath~digits", "multipath~digits"):
        logs = os.listdir(os.path.join(work_dir, agent_id, "tensorboard"))
        assert logs, agent_id

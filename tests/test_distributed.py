"""Tests of multi-machine search: a keras-tuner chief and two workers on 127.0.0.1 run one
agent's trials on one store."""

import json
import os
import socket
import subprocess
import sys
import time

import keras
import pytest

from keras_multipath.system import Store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_SECONDS = 420

# Three processes that each import Keras take 1.5-4 minutes on 2 shared cores, so the test
# runs with the slow tests (`scripts/test.sh -m slow`).
pytestmark = pytest.mark.slow


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(tuner_id, port, store, work_dir, log_file):
    env = dict(
        os.environ,
        KERASTUNER_ORACLE_IP="127.0.0.1",
        KERASTUNER_ORACLE_PORT=str(port),
        KERASTUNER_TUNER_ID=tuner_id,
        KERAS_BACKEND=keras.backend.backend(),
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    command = [
        sys.executable, "-m", "keras_multipath", "run", f"--store={store}",
        f"--work_dir={work_dir}", "--task=lfw_faces", "--cycles=1", "--candidates=2",
        "--parallel_trials=2", "--train_examples=32", "--validation_examples=20",
        "--verbose=0", "--no_progress", "--no_tensorboard",
    ]
    log = open(log_file, "w")
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def test_chief_and_two_workers_complete_search(tmp_path):
    store_root = tmp_path / "store"
    work_dir = tmp_path / "work"
    port = free_port()
    processes = {}
    try:
        # Workers wait for the chief's gRPC server, which starts after the chief has
        # published the root model, so they can start at once.
        for tuner_id in ("chief", "tuner0", "tuner1"):
            processes[tuner_id] = start(
                tuner_id, port, store_root, work_dir, tmp_path / f"{tuner_id}.log"
            )
        deadline = time.time() + TIMEOUT_SECONDS
        for tuner_id, process in processes.items():
            process.wait(timeout=max(1.0, deadline - time.time()))
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    logs = {t: (tmp_path / f"{t}.log").read_text()[-3000:] for t in processes}
    for tuner_id, process in processes.items():
        assert process.returncode == 0, f"{tuner_id} failed:\n{logs[tuner_id]}"

    state = Store(store_root).read_state("singlepath~lfw_faces", include_intermediate=False)
    assert state is not None, logs["chief"]
    assert state.cycle == 1
    assert len(state.published) == 1
    assert state.next_path_id == 2

    records_file = work_dir / "singlepath~lfw_faces" / "trials.jsonl"
    records = [json.loads(line) for line in records_file.read_text().splitlines()]
    assert sorted(r["trial_id"] for r in records) == ["0000", "0001"]
    assert {r["status"] for r in records} == {"COMPLETED"}
    # The chief only serves the oracle; the two trials ran on the two workers.
    assert sorted(r["tuner_id"] for r in records) == ["tuner0", "tuner1"]

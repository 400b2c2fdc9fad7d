"""Resume of a multipath search killed with SIGKILL mid-cycle, in separate processes."""

import os
import signal
import subprocess
import sys
import time

import pytest

from keras_multipath.system import Store

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "multipath_search.py")


def read_log(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().split("\n")[:-1]


@pytest.mark.slow
def test_multipath_search_killed_resumes(tmp_path):
    directory, log = str(tmp_path), str(tmp_path / "trials.log")
    command = [sys.executable, SCRIPT, directory, "digits", "3", "96", "4", log]
    env = dict(os.environ, PYTHONUNBUFFERED="1")

    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    while "start 0001" not in read_log(log):
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "the search did not reach its second trial"
        time.sleep(0.2)
    # Kill while the second trial trains; on an idle machine a trial takes a few seconds.
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert read_log(log) == ["start 0000", "end 0000", "start 0001"]
    store = Store(os.path.join(directory, "store"))
    assert store.read_state("multipath~digits").state_name == "state_0_1"

    rerun = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=900)
    assert rerun.returncode == 0, rerun.stderr.decode()[-3000:]

    # The finished trial 0000 is not run again; the interrupted 0001 is retried once.
    assert read_log(log) == [
        "start 0000", "end 0000", "start 0001", "start 0001", "end 0001", "start 0002", "end 0002"
    ]
    state = store.read_state("multipath~digits")
    assert state.state_name == "state_1_0"
    assert state.next_path_id == 3
    assert state.oracle_state["search"]["finished_trials"] == ["0000", "0001", "0002"]
    trial_folders = sorted(
        e for e in os.listdir(os.path.join(directory, "multipath_digits")) if e.startswith("trial_")
    )
    assert trial_folders == ["trial_0000", "trial_0001", "trial_0002"]
    component_ids = [int(key.split(":")[1]) for key in state.components]
    assert len(component_ids) == len(set(component_ids))
    assert max(component_ids) < state.next_component_id
    best = state.paths[state.published[0]]
    assert best.metrics["trained_fraction"] < 0.05
    history_ids = [path.id for path in state.history]
    assert len(history_ids) == len(set(history_ids))

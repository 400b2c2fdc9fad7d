"""Resume of a multipath search killed with SIGKILL mid-cycle, in separate processes."""

import os
import sys

import pytest

from keras_multipath.system import Store

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from kill_and_resume import RESUMED_LOG, kill_during_second_trial, read_log, rerun  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "multipath_search.py")


@pytest.mark.slow
def test_multipath_search_killed_resumes(tmp_path):
    directory, log = str(tmp_path), str(tmp_path / "trials.log")
    command, env = kill_during_second_trial(
        SCRIPT, [directory, "digits", "3", "96", "4", log], log, timeout=600
    )
    assert read_log(log) == ["start 0000", "end 0000", "start 0001"]
    store = Store(os.path.join(directory, "store"))
    assert store.read_state("multipath~digits").state_name == "state_0_1"

    rerun(command, env, timeout=900)

    assert read_log(log) == RESUMED_LOG
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

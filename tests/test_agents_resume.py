"""Resume of a singlepath search killed mid-cycle, in separate processes."""

import os
import sys

import pytest

from keras_multipath.system import Store

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from kill_and_resume import RESUMED_LOG, kill_during_second_trial, read_log, rerun  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "singlepath_search.py")


@pytest.mark.slow
def test_search_killed_mid_cycle_resumes(tmp_path):
    directory, log = str(tmp_path), str(tmp_path / "trials.log")
    command, env = kill_during_second_trial(
        SCRIPT, [directory, "mnist_5k", "3", "320", "2", log], log, timeout=400
    )
    assert read_log(log) == ["start 0000", "end 0000", "start 0001"]
    store = Store(os.path.join(directory, "store"))
    killed_state = store.read_state("singlepath~mnist_5k")
    assert killed_state.state_name == "state_0_1"

    rerun(command, env, timeout=600)

    assert read_log(log) == RESUMED_LOG
    state = store.read_state("singlepath~mnist_5k")
    assert state.state_name == "state_1_0"
    assert state.next_path_id == 3
    trial_folders = sorted(e for e in os.listdir(os.path.join(directory, "mnist_5k")) if e.startswith("trial_"))
    assert trial_folders == ["trial_0000", "trial_0001", "trial_0002"]
    search = state.oracle_state["search"]
    assert search["finished_trials"] == ["0000", "0001", "0002"]
    best = state.paths[state.published[0]]
    assert best.id in (0, 1, 2)
    component_ids = [int(key.split(":")[1]) for key in state.components]
    assert len(component_ids) == len(set(component_ids))
    assert max(component_ids) < state.next_component_id


class CrashAfterPublish(BaseException):
    """Raised by the test oracle right after a store publish, like a kill at that moment."""


@pytest.mark.slow
def test_crash_between_publish_and_oracle_save(tmp_path, monkeypatch):
    import keras

    from singlepath_search import LoggingTuner, make_config

    from keras_multipath.agents.root import publish_root, random_root
    from keras_multipath.agents.singlepath import SinglepathOracle
    from keras_multipath.data import get_task

    config = make_config(num_samples=2, examples_cap=32)
    store = Store(str(tmp_path / "store"))
    keras.utils.set_random_seed(0)
    publish_root(store, random_root(config.variant, config.root_image_size), config)
    task = get_task("digits")
    log = str(tmp_path / "trials.log")

    def search(crash):
        oracle = SinglepathOracle(store, "digits", 10, task.num_examples("train"), config, seed=3)
        if crash:
            publish = oracle._publish
            calls = []

            def publish_then_crash(*args, **kwargs):
                publish(*args, **kwargs)
                calls.append(1)
                # keras-tuner reloads a project once a trial has ended normally, so the
                # crash comes at the second publish (the end of the cycle), after trial 0001.
                if len(calls) == 2:
                    raise CrashAfterPublish()

            monkeypatch.setattr(oracle, "_publish", publish_then_crash)
        tuner = LoggingTuner(oracle, task, directory=str(tmp_path), project_name="digits")
        tuner.log = log
        tuner.search(verbose=0)
        return oracle

    with pytest.raises(CrashAfterPublish):
        search(crash=True)
    # The store has the state after trial 0001; oracle.json still lists it as running.
    assert store.read_state("singlepath~digits").state_name == "state_1_0"

    oracle = search(crash=False)
    assert read_log(log) == ["start 0000", "end 0000", "start 0001", "end 0001"]
    statuses = {trial_id: trial.status for trial_id, trial in oracle.trials.items()}
    assert statuses == {"0000": "COMPLETED", "0001": "COMPLETED"}
    assert len(oracle.get_best_trials(2)) == 2
    assert oracle.search["done"]
    state = store.read_state("singlepath~digits")
    assert state.state_name == "state_1_0"
    assert state.next_path_id == 2

"""Tests of the `keras-multipath` command line: run, leaderboard, report and export."""

import csv
import io
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_multipath.layers  # noqa: F401 - registers the layer classes for load_model.
from keras_multipath import cli
from keras_multipath.data import get_task, make_dataset
from keras_multipath.system import Store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASK = "lfw_faces"


def run_cli(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_help_lists_subcommands():
    result = subprocess.run([sys.executable, "-m", "keras_multipath", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for command in ("run", "leaderboard", "report", "export"):
        assert command in result.stdout


def test_run_unknown_task_fails(tmp_path, capsys):
    status, _, err = run_cli(capsys, "run", "--store", tmp_path / "store", "--task", "mnst")
    assert status == 2
    assert "Unknown task 'mnst'. Known tasks:" in err
    # The task is checked before the root model is published.
    assert Store(tmp_path / "store").list_agents() == []


def test_unknown_kind_rejected(tmp_path):
    with pytest.raises(SystemExit) as error:
        cli.main(["run", "--store", str(tmp_path), "--task", TASK, "--kind", "manypath"])
    assert error.value.code == 2


def test_backend_flag_after_keras_import(tmp_path, capsys):
    other = "jax" if keras.backend.backend() != "jax" else "torch"
    status, _, err = run_cli(capsys, "--backend", other, "leaderboard", "--store", tmp_path)
    assert status == 2
    assert "must be set before Keras is imported" in err


def test_empty_store_leaderboard(tmp_path, capsys):
    (tmp_path / "store").mkdir()
    status, out, _ = run_cli(capsys, "leaderboard", "--store", tmp_path / "store")
    assert status == 0
    assert "(no agent has published a path yet)" in out


@pytest.mark.parametrize("command", ["leaderboard", "report", "export"])
def test_missing_store_rejected(tmp_path, capsys, command):
    extra = {"leaderboard": [], "report": ["--output", tmp_path / "report"],
             "export": ["--task", "digits", "--output", tmp_path / "x.keras"]}[command]
    status, _, err = run_cli(capsys, command, "--store", tmp_path / "typo", *extra)
    assert status == 2
    assert f"Store folder '{tmp_path / 'typo'}' does not exist" in err
    assert not (tmp_path / "typo").exists()


def test_run_then_leaderboard_report_export(tmp_path, capsys):
    store = tmp_path / "store"
    status, out, err = run_cli(
        capsys, "run", "--store", store, "--task", TASK, "--cycles", 1, "--candidates", 1,
        "--train_examples", 32, "--validation_examples", 20, "--verbose", 0, "--no_progress",
    )
    assert status == 0, err
    assert out.startswith(f"singlepath~{TASK}:0\t")

    status, out, _ = run_cli(capsys, "leaderboard", "--store", store)
    assert status == 0
    assert out.splitlines()[0].split() == [
        "task", "kind", "val_acc", "test_acc", "params", "accounted", "trained",
    ]
    assert out.splitlines()[2].split()[:2] == [TASK, "singlepath"]

    status, out, _ = run_cli(capsys, "leaderboard", "--store", store, "--csv")
    assert status == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 1
    assert rows[0]["path"] == f"singlepath~{TASK}:0"
    test_accuracy = float(rows[0]["test_accuracy"])

    report_dir = tmp_path / "report"
    status, out, _ = run_cli(capsys, "report", "--store", store, "--output", report_dir)
    assert status == 0
    assert sorted(os.listdir(report_dir)) == [
        "accuracy.png", "leaderboard.csv", "leaderboard.txt", "scores.png", "system_graph.png",
    ]

    filename = tmp_path / "export" / "best.keras"
    status, out, err = run_cli(capsys, "export", "--store", store, "--task", TASK,
                               "--output", filename)
    assert status == 0, err
    assert f"Exported singlepath~{TASK}:0" in out
    model = keras.saving.load_model(filename)
    task = get_task(TASK)
    size = int(model.inputs[0].shape[1])
    correct = total = 0
    for images, labels in make_dataset(task, "test", 32, image_sizes=size):
        predictions = np.argmax(keras.ops.convert_to_numpy(model(images)), axis=-1)
        correct += int(np.sum(predictions == labels.numpy()))
        total += len(labels)
    assert total == task.num_examples("test")
    # The exported model reproduces the test accuracy stored when the path was published.
    assert correct / total == pytest.approx(test_accuracy, abs=1e-6)


def test_export_unknown_task_fails(tmp_path, capsys):
    (tmp_path / "store").mkdir()
    status, _, err = run_cli(capsys, "export", "--store", tmp_path / "store", "--task", "mnst",
                             "--output", tmp_path / "x.keras")
    assert status == 2
    assert "has published a model for task 'mnst'" in err


def test_agent_task_names():
    from keras_multipath.runner import agent_task_name

    assert agent_task_name("tfds:cmaterdb/bangla") == "cmaterdb/bangla"
    assert agent_task_name("folder:/data/flowers/") == "flowers"
    assert agent_task_name("digits") == "digits"


def test_data_dir_only_for_tfds(tmp_path, capsys):
    status, _, err = run_cli(capsys, "run", "--store", tmp_path / "store", "--task", "digits",
                             "--data_dir", tmp_path)
    assert status == 2
    assert "--data_dir applies to TFDS tasks only" in err

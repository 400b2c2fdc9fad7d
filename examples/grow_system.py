"""The main job: grow a modular multitask system over several real tasks, then report.

The job creates the store (or reopens it), publishes a random-init root model, runs one
singlepath agent per task, then one multipath agent per task, and prints the leaderboard.
It also writes a report folder (leaderboard, accuracy and score plots, system graph).

Agents run as separate processes on the one store (`--parallel` at a time). They share
nothing but the store folder: each agent writes only its own namespace and reloads the
whole system at the start of every cycle, so it reads what the others published. With
`--parallel=1` the agents run one after another inside this process, with a Keras
progress bar per trial.

Rerunning the job continues the system: every agent resumes from its latest state and runs
`--cycles` more cycles, and ids are never reused.

    python examples/grow_system.py                           # about 15 minutes on 2 cores
    python examples/grow_system.py --tasks=digits --cycles=1 --candidates=1
    python examples/grow_system.py --backend=jax --parallel=3 --store=/tmp/store
"""

import os
import subprocess
import sys
import time

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("store", "./store", "Store folder (created if missing, reopened if not).")
flags.DEFINE_string("work_dir", None,
                    "Folder of keras-tuner projects, trial records, TensorBoard logs and "
                    "agent logs (default: <store>-trials).")
flags.DEFINE_string("report_dir", None, "Folder for the report files (default: <store>-report).")
flags.DEFINE_list("tasks", ["digits", "mnist_5k", "animal_mnist", "fashion_mnist"],
                  "Tasks, one agent of each kind per task: offline task names (see "
                  "keras_multipath.data.list_tasks()), 'tfds:<name>' or 'folder:<path>'.")
flags.DEFINE_list("agent_kinds", ["singlepath", "multipath"],
                  "Agent kinds to run, in order: singlepath agents first.")
flags.DEFINE_integer("cycles", 2, "Cycles each agent runs in this invocation.")
flags.DEFINE_integer("candidates", 2, "Candidates (trials) per cycle.")
flags.DEFINE_string("config", "cpu", "Agent configuration: cpu, VitT3, VitB or Vit.")
flags.DEFINE_string("variant", None,
                    "ViT variant of the random root model, e.g. tiny/4 (default: the "
                    "configuration's, micro/4 for cpu).")
flags.DEFINE_integer("train_examples", 2000,
                     "Training examples between two validations; a candidate trains for 4 "
                     "times this many examples.")
flags.DEFINE_integer("validation_examples", 500, "Size cap of the validation subset.")
flags.DEFINE_integer("seed", 0, "Random seed of the root model and of every agent.")
flags.DEFINE_enum("backend", None, ["tensorflow", "jax", "torch"],
                  "Keras backend (default: $KERAS_BACKEND, else tensorflow).")
flags.DEFINE_integer("parallel", 2,
                     "Agents run at the same time, each in its own process; 1 runs them one "
                     "after another in this process.")
flags.DEFINE_integer("verbose", 1, "Keras fit verbosity inside trials when --parallel=1.")
flags.DEFINE_string("tfds_data_dir", None,
                    "TFDS data folder of prepared datasets for 'tfds:<name>' tasks "
                    "(default: TFDS's own, ~/tensorflow_datasets).")
flags.DEFINE_float("poll_seconds", 2.0, "How often the progress bar reads the store.")


def _agent_command(task, kind):
    """Return the command line of one agent process."""
    command = [
        sys.executable, "-m", "keras_multipath", f"--backend={os.environ['KERAS_BACKEND']}",
        "run", f"--store={FLAGS.store}", f"--work_dir={FLAGS.work_dir}", f"--task={task}",
        f"--kind={kind}", f"--cycles={FLAGS.cycles}", f"--candidates={FLAGS.candidates}",
        f"--config={FLAGS.config}", f"--train_examples={FLAGS.train_examples}",
        f"--validation_examples={FLAGS.validation_examples}", f"--seed={FLAGS.seed}",
        "--verbose=2", "--no_progress",
    ]
    if FLAGS.variant:
        command.append(f"--variant={FLAGS.variant}")
    if task.startswith("tfds:") and FLAGS.tfds_data_dir:
        command.append(f"--data_dir={FLAGS.tfds_data_dir}")
    return command


def _task_options(task):
    """Return the `get_task` keyword arguments of task name `task`."""
    if task.startswith("tfds:") and FLAGS.tfds_data_dir:
        return {"data_dir": FLAGS.tfds_data_dir}
    return {}


def _run_in_processes(store, jobs, progress):
    """Run `jobs` [(task, kind, agent id)] as processes, `--parallel` at a time.

    Returns:
        {agent id: exit status}.
    """
    from keras_multipath.runner import completed_cycles

    pending = list(jobs)
    running = {}
    statuses = {}
    start_cycles = {agent_id: completed_cycles(store, agent_id) for _, _, agent_id in jobs}
    reported = {agent_id: 0 for _, _, agent_id in jobs}
    while pending or running:
        while pending and len(running) < FLAGS.parallel:
            task, kind, agent_id = pending.pop(0)
            log_dir = os.path.join(FLAGS.work_dir, agent_id)
            os.makedirs(log_dir, exist_ok=True)
            log_file = os.path.join(log_dir, "agent.log")
            log = open(log_file, "a")
            process = subprocess.Popen(
                _agent_command(task, kind), stdout=log, stderr=subprocess.STDOUT,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )
            running[agent_id] = (process, log, log_file)
            logging.info("Started agent %s (process %d), log %s.", agent_id, process.pid,
                         log_file)
        time.sleep(FLAGS.poll_seconds)
        for agent_id in list(running):
            process, log, log_file = running[agent_id]
            done = completed_cycles(store, agent_id) - start_cycles[agent_id]
            if done > reported[agent_id]:
                progress.update(done - reported[agent_id])
                reported[agent_id] = done
            if process.poll() is None:
                continue
            log.close()
            del running[agent_id]
            statuses[agent_id] = process.returncode
            if process.returncode == 0:
                logging.info("Agent %s finished.", agent_id)
            else:
                with open(log_file) as f:
                    tail = f.read()[-2000:]
                logging.error("Agent %s failed with exit status %d; end of %s:\n%s", agent_id,
                              process.returncode, log_file, tail)
    return statuses


def _run_in_this_process(store, jobs, progress):
    """Run `jobs` one after another in this process; return {agent id: 0 or 1}."""
    from keras_multipath.runner import run_agent

    statuses = {}
    for task, kind, agent_id in jobs:
        try:
            run_agent(
                store, task, kind=kind, cycles=FLAGS.cycles, config=FLAGS.config,
                seed=FLAGS.seed, work_dir=FLAGS.work_dir, verbose=FLAGS.verbose,
                progress=False, variant=FLAGS.variant, candidates=FLAGS.candidates,
                train_examples_per_validation=FLAGS.train_examples,
                validation_examples=FLAGS.validation_examples,
                task_options=_task_options(task),
            )
            statuses[agent_id] = 0
        except Exception:  # noqa: BLE001 - one failed agent must not stop the others.
            logging.exception("Agent %s failed.", agent_id)
            statuses[agent_id] = 1
        progress.update(FLAGS.cycles)
    return statuses


def main(argv):
    del argv
    if FLAGS.backend:
        os.environ["KERAS_BACKEND"] = FLAGS.backend
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Keras is imported only now, after the backend is set.
    from tqdm import tqdm

    from keras_multipath import report
    from keras_multipath.data import get_task
    from keras_multipath.runner import (
        AGENT_KINDS, agent_task_name, default_work_dir, ensure_root, make_agent_config,
    )
    from keras_multipath.system import Store, make_agent_id

    for kind in FLAGS.agent_kinds:
        if kind not in AGENT_KINDS:
            raise app.UsageError(
                f"Unknown agent kind {kind!r} in --agent_kinds. Known kinds: "
                f"{', '.join(AGENT_KINDS)}."
            )
    if FLAGS.parallel < 1 or FLAGS.cycles < 0 or FLAGS.candidates < 1:
        raise app.UsageError("Expected --parallel >= 1, --cycles >= 0 and --candidates >= 1.")
    FLAGS.work_dir = FLAGS.work_dir or default_work_dir(FLAGS.store)
    report_dir = FLAGS.report_dir or f"{FLAGS.store.rstrip('/')}-report"
    started = time.time()
    store = Store(FLAGS.store)
    # Tasks are loaded once here so that a wrong name fails before any agent starts.
    tasks = {name: agent_task_name(get_task(name, **_task_options(name)).name)
             for name in FLAGS.tasks}
    config = make_agent_config(
        FLAGS.config, variant=FLAGS.variant, candidates=FLAGS.candidates,
        train_examples_per_validation=FLAGS.train_examples,
        validation_examples=FLAGS.validation_examples,
    )
    resumed = bool([a for a in store.list_agents() if not a.startswith("singlepath~root")])
    root = ensure_root(store, config, seed=FLAGS.seed)
    logging.info("%s store %s with root model %s; backend %s.",
                 "Continuing" if resumed else "Created", store.root, root.key,
                 os.environ["KERAS_BACKEND"])

    statuses = {}
    kinds = [k for k in AGENT_KINDS if k in FLAGS.agent_kinds]
    with tqdm(total=len(kinds) * len(tasks) * FLAGS.cycles, desc="agent cycles",
              unit="cycle") as progress:
        for kind in kinds:
            jobs = []
            for name, task in tasks.items():
                if kind == "multipath":
                    main_agent = make_agent_id("singlepath", task)
                    state = store.read_state(main_agent, include_intermediate=False)
                    if state is None or not state.published:
                        logging.warning("Skipping the multipath agent of %s: its singlepath "
                                        "agent has published no model.", task)
                        progress.update(FLAGS.cycles)
                        continue
                jobs.append((name, kind, make_agent_id(kind, task)))
            if FLAGS.parallel > 1:
                statuses.update(_run_in_processes(store, jobs, progress))
            else:
                statuses.update(_run_in_this_process(store, jobs, progress))

    rows = report.leaderboard(store.load_system())
    files = report.write_report(store, report_dir, work_dir=FLAGS.work_dir)
    elapsed = time.time() - started
    print()
    print(report.format_leaderboard(rows))
    print()
    print(f"Report: {', '.join(files.values())}")
    print(f"Wall time: {elapsed / 60:.1f} min ({elapsed:.0f} s), backend "
          f"{os.environ['KERAS_BACKEND']}, {len(statuses)} agents.")
    failed = sorted(agent_id for agent_id, status in statuses.items() if status != 0)
    if failed:
        logging.error("Agents that failed: %s (see their agent.log under %s).",
                      ", ".join(failed), FLAGS.work_dir)
        return 1
    return 0


if __name__ == "__main__":
    app.run(main)

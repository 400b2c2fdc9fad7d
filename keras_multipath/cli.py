"""The `keras-multipath` command line (also `python -m keras_multipath`).

Subcommands:

    keras-multipath run --store=./store --task=digits [--kind=multipath] [--cycles=2]
    keras-multipath leaderboard --store=./store [--csv]
    keras-multipath report --store=./store --output=./report
    keras-multipath export --store=./store --task=digits --output=digits.keras

`--backend` (or the KERAS_BACKEND environment variable) selects the Keras backend; the
command sets it before Keras is imported.
"""

import argparse
import os
import sys


def _add_store(parser):
    parser.add_argument("--store", default="./store",
                        help="store folder or URL (default: ./store)")
    parser.add_argument("--work_dir", default=None,
                        help="folder of the agents' keras-tuner projects, trial records and "
                             "TensorBoard logs (default: <store>-trials)")


def build_parser():
    """Return the `argparse` parser of the command line."""
    parser = argparse.ArgumentParser(
        prog="keras-multipath",
        description="Grow a modular multitask system with singlepath and multipath agents.",
    )
    parser.add_argument("--backend", choices=("tensorflow", "jax", "torch"), default=None,
                        help="Keras backend (default: $KERAS_BACKEND, else tensorflow)")
    parser.add_argument("--log_level", default="info",
                        choices=("debug", "info", "warning", "error"),
                        help="absl logging verbosity (default: info)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run one agent on one task for some cycles")
    _add_store(run)
    run.add_argument("--task", required=True,
                     help="task name: an offline task (e.g. digits), 'tfds:<name>' or "
                          "'folder:<path>'")
    run.add_argument("--kind", default="singlepath", choices=("singlepath", "multipath"),
                     help="agent kind (default: singlepath)")
    run.add_argument("--cycles", type=int, default=1, help="cycles to run now (default: 1)")
    run.add_argument("--candidates", type=int, default=None,
                     help="candidates per cycle (default: the configuration's)")
    run.add_argument("--config", default="cpu",
                     help="agent configuration: cpu, VitT3, VitB or Vit (default: cpu)")
    run.add_argument("--variant", default=None,
                     help="ViT variant of a new random root model, e.g. micro/4 or tiny/4 "
                          "(default: the configuration's)")
    run.add_argument("--train_examples", type=int, default=None,
                     help="training examples between two validations (sets the steps of "
                          "each candidate; default: the configuration's)")
    run.add_argument("--validation_examples", type=int, default=None,
                     help="size cap of the validation subset (default: the configuration's)")
    run.add_argument("--parallel_trials", type=int, default=None,
                     help="candidates of a generation trained at the same time, one per "
                          "keras-tuner worker (default: 1)")
    run.add_argument("--root", default="random",
                     help="root model of a new store: random, a vit_jax .npz file, or a "
                          "local keras-hub ViT preset folder (default: random)")
    run.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    run.add_argument("--data_dir", default=None,
                     help="TFDS data folder for 'tfds:' tasks")
    run.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2),
                     help="Keras fit verbosity per trial (default: 1, a progress bar)")
    run.add_argument("--no_progress", action="store_true",
                     help="hide the progress bar over the trials")
    run.add_argument("--no_tensorboard", action="store_true",
                     help="write no TensorBoard logs")

    board = commands.add_parser("leaderboard", help="print the leaderboard of a store")
    _add_store(board)
    board.add_argument("--csv", action="store_true", help="print CSV instead of a table")

    report = commands.add_parser(
        "report", help="write the leaderboard, accuracy and score plots and the system graph"
    )
    _add_store(report)
    report.add_argument("--output", default="./report",
                        help="folder for the report files (default: ./report)")

    export = commands.add_parser("export", help="export a task's best model as a .keras file")
    _add_store(export)
    export.add_argument("--task", required=True, help="task whose best model is exported")
    export.add_argument("--kind", default=None, choices=("singlepath", "multipath"),
                        help="only consider agents of this kind (default: any)")
    export.add_argument("--output", required=True, help="the .keras file to write")
    return parser


def _configure(args):
    if args.backend:
        if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != args.backend:
            raise ValueError(
                f"Keras is already imported with backend {os.environ.get('KERAS_BACKEND')!r}; "
                f"--backend={args.backend} must be set before Keras is imported."
            )
        os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import logging

    logging.set_verbosity(args.log_level)
    # Without absl.app, absl logs to stderr only once its handler is installed.
    logging.use_absl_handler()


def _run(args):
    from keras_multipath.runner import run_agent

    task_options = None
    if args.data_dir:
        if not args.task.startswith("tfds:"):
            raise ValueError(
                f"--data_dir applies to TFDS tasks only ('tfds:<name>'). Received: "
                f"--task={args.task}"
            )
        task_options = {"data_dir": args.data_dir}
    paths = run_agent(
        args.store, args.task, kind=args.kind, cycles=args.cycles, config=args.config,
        seed=args.seed, work_dir=args.work_dir, root=args.root, verbose=args.verbose,
        progress=not args.no_progress, tensorboard=not args.no_tensorboard,
        task_options=task_options, variant=args.variant, candidates=args.candidates,
        train_examples_per_validation=args.train_examples,
        validation_examples=args.validation_examples,
        candidates_per_generation=args.parallel_trials,
    )
    for path in paths:
        print(f"{path.key}\tquality={path.metrics.get('quality')}\t"
              f"test_quality={path.metrics.get('test_quality')}")
    return 0


def _existing_store(root):
    """Return the `Store` at `root`, raising ValueError when the folder does not exist."""
    from keras_multipath.system import Store

    store = Store(root)
    if not store.filesystem.exists(store.root):
        raise ValueError(
            f"Store folder {str(root)!r} does not exist. Pass --store with the folder of an "
            f"existing store; `keras-multipath run` creates one."
        )
    return store


def _leaderboard(args):
    from keras_multipath import report

    rows = report.leaderboard(_existing_store(args.store).load_system())
    if args.csv:
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=report.LEADERBOARD_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    else:
        print(report.format_leaderboard(rows))
    return 0


def _report(args):
    from keras_multipath import report

    _existing_store(args.store)
    files = report.write_report(args.store, args.output, work_dir=args.work_dir)
    for kind, filename in files.items():
        print(f"{kind}\t{filename}")
    return 0


def _export(args):
    from keras_multipath.system.leaderboard import DEFAULT_KINDS, export_best_model

    kinds = DEFAULT_KINDS if args.kind is None else (args.kind,)
    store = _existing_store(args.store)
    directory = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(directory, exist_ok=True)
    path, _ = export_best_model(store, args.task, args.output, kinds=kinds)
    print(f"Exported {path.key} (validation accuracy {path.metrics.get('quality')}) "
          f"to {args.output}")
    return 0


def main(argv=None):
    """Run the command line with `argv` (default: `sys.argv[1:]`); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"run": _run, "leaderboard": _leaderboard, "report": _report,
                "export": _export}
    try:
        _configure(args)
        return handlers[args.command](args)
    except (ValueError, KeyError, FileNotFoundError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"keras-multipath {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

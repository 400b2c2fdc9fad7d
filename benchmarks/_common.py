"""Helpers shared by the benchmark scripts: backend selection, interleaved timing, a store
with a random root model, results.

Import this module before Keras: `select_backend` must set `KERAS_BACKEND` first.
"""

import datetime
import os
import platform
import re
import statistics
import sys
import time

BACKENDS = ("tensorflow", "jax", "torch")
RESULTS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")


def select_backend(argv=None):
    """Set `KERAS_BACKEND` from a `--backend NAME` argument before Keras is imported.

    Returns the backend name; the environment's `KERAS_BACKEND` (default tensorflow) is used
    when the argument is absent.
    """
    argv = sys.argv[1:] if argv is None else argv
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    for i, arg in enumerate(argv):
        if arg == "--backend" and i + 1 < len(argv):
            backend = argv[i + 1]
        elif arg.startswith("--backend="):
            backend = arg.split("=", 1)[1]
    if backend not in BACKENDS:
        raise SystemExit(f"Unknown backend {backend!r}. Known backends: {', '.join(BACKENDS)}.")
    os.environ["KERAS_BACKEND"] = backend
    return backend


def interleaved(functions, repeats, order_seed=0):
    """Time zero-argument `functions` {name: fn} in interleaved rounds.

    Each round calls every function once, in an order that is rotated every round so that
    no function always runs first after another. Returns {name: list of seconds}, one entry
    per round.
    """
    names = list(functions)
    times = {name: [] for name in names}
    for r in range(repeats):
        shift = (r + order_seed) % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            functions[name]()
            times[name].append(time.perf_counter() - start)
    return times


def median(values):
    return statistics.median(values)


def paired_ratio(numerator, denominator):
    """Median over rounds of numerator[i] / denominator[i] (robust to load drift)."""
    return statistics.median(n / d for n, d in zip(numerator, denominator))


def load_average():
    try:
        return "{:.1f}, {:.1f}, {:.1f}".format(*os.getloadavg())
    except OSError:
        return "unknown"


def machine_line():
    """One line describing the machine, CPU count and current load."""
    return (
        f"{platform.machine()} Linux, {os.cpu_count()} CPU cores, no GPU, shared with other "
        f"jobs (load average {load_average()} at the end of the run)"
    )


def new_store(folder, num_samples, examples_cap, validation_examples, seed=0):
    """Seed Keras, then create a store in `folder`/store that contains a random root model.

    The agents use the `cpu` configuration (a micro/4 ViT) with the given candidates per
    cycle, training examples between validations and validation examples. The root model is
    a randomly initialised ViT of that configuration's variant and root image size.

    Returns:
        `(store, config)`: the `Store` and the singlepath `AgentConfig`.
    """
    # Imported here because Keras may be imported only after `select_backend`.
    import keras

    from keras_multipath.agents.config import get_agent_config
    from keras_multipath.agents.root import publish_root, random_root
    from keras_multipath.system import Store

    keras.utils.set_random_seed(seed)
    config = get_agent_config("cpu").replace(
        num_samples_per_cycle=num_samples,
        num_train_examples_between_validations_max=examples_cap,
        num_validation_examples_max=validation_examples,
    )
    store = Store(os.path.join(folder, "store"))
    publish_root(store, random_root(config.variant, config.root_image_size), config)
    return store, config


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def command_line():
    script = os.path.relpath(sys.argv[0], os.path.dirname(os.path.dirname(RESULTS_PATH)))
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    args = " ".join(sys.argv[1:])
    return f"KERAS_BACKEND={backend} .venv/bin/python {script} {args}".strip()


def update_results(section, intro, header, rows, key_columns, notes=""):
    """Write `rows` into the table of `section` in RESULTS.md, replacing rows with the same key.

    The section lies between `<!-- section:begin -->` and `<!-- section:end -->` markers, so
    reruns (e.g. one per backend) update their own rows and leave every other section as is.

    Args:
        section: marker name, e.g. "step_time".
        intro: markdown written above the table (title, method); replaced on every run.
        header: column names.
        rows: list of lists of cell strings.
        key_columns: number of leading columns that identify a row.
        notes: markdown written below the table; replaced on every run.
    """
    begin, end = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
    text = open(RESULTS_PATH).read() if os.path.exists(RESULTS_PATH) else ""
    match = re.search(re.escape(begin) + r"(.*?)" + re.escape(end), text, re.S)
    old_rows = []
    if match:
        for line in match.group(1).splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("|") and len(cells) == len(header) and cells != list(header) and \
                    not set("".join(cells)) <= set("-: "):
                old_rows.append(cells)
    new_keys = {tuple(row[:key_columns]) for row in rows}
    merged = [row for row in old_rows if tuple(row[:key_columns]) not in new_keys] + rows
    merged.sort(key=lambda row: row[:key_columns])
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(row) + " |" for row in merged]
    body = "\n".join([begin, intro.strip(), "", *table, "", notes.strip(), end]).rstrip()
    body = body.replace("\n\n" + end, "\n" + end)
    if match:
        text = text[:match.start()] + body + text[match.end():]
    else:
        text = text.rstrip() + "\n\n" + body + "\n"
    with open(RESULTS_PATH, "w") as handle:
        handle.write(text)

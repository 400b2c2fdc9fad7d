"""Leaderboard, plots and the system graph of a store.

`write_report(store, output_dir)` writes:

- ``leaderboard.csv`` and ``leaderboard.txt``: one row per published path of each agent
  (task, agent kind, validation and test accuracy, parameters, accounted parameters and
  trained fraction);
- ``accuracy.png``: test accuracy (validation where no test accuracy is stored) per task,
  one bar per agent kind;
- ``scores.png``: the score of every trial of every agent, in trial order, read from the
  ``trials.jsonl`` files of the work folder;
- ``system_graph.png``: the published paths as lines through their components, so a
  component that several tasks share is one node crossed by several lines.

Plots use matplotlib's Agg backend, so no display is needed.
"""

import csv
import json
import math
import os

from keras_multipath.system import Store
from keras_multipath.system.names import agent_kind, is_root_agent

LEADERBOARD_COLUMNS = (
    "task", "kind", "path", "validation_accuracy", "test_accuracy", "params",
    "accounted_params", "trained_fraction",
)
TRIALS_FILE = "trials.jsonl"


def _subpath_component_lists(path):
    """Return the component lists of the frozen paths a multipath path mixes, [] for
    singlepath paths."""
    records = path.hparams.get("paths")
    if not isinstance(records, dict):
        return []
    return [list(records[name].get("components", [])) for name in sorted(records)]


def _leaderboard_row(system, path):
    keys = path.components
    total = sum(system.component(key).num_params for key in keys)
    accounted = 0.0
    for key in keys:
        holders = system.locks.get(key, set()) | {path.agent_id}
        accounted += system.component(key).num_params / len(holders)
    own = sum(system.component(key).num_params for key in keys
              if system.component(key).agent_id == path.agent_id)
    metrics = path.metrics
    test = metrics.get("test_quality")
    return {
        "task": path.task_name,
        "kind": agent_kind(path.agent_id),
        "path": path.key,
        "validation_accuracy": float(metrics.get("quality", math.nan)),
        "test_accuracy": math.nan if test is None else float(test),
        "params": int(total),
        "accounted_params": float(accounted),
        "trained_fraction": own / total if total else 0.0,
    }


def leaderboard(system):
    """Return the leaderboard rows of `system`, sorted by task then agent kind.

    Args:
        system: a `System` loaded with every agent (`Store.load_system()`).

    Returns:
        A list of dicts with the keys of `LEADERBOARD_COLUMNS`. `trained_fraction` is the
        share of the path's parameters in components its own agent created (trained or
        cloned by it); the rest are frozen components of other agents.
    """
    rows = []
    for agent_id in sorted(system.published):
        if is_root_agent(agent_id):
            continue
        for path in system.published_paths(agent_id):
            rows.append(_leaderboard_row(system, path))
    rows.sort(key=lambda row: (row["task"], row["kind"], row["path"]))
    return rows


def _format_number(value, column):
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if column in ("validation_accuracy", "test_accuracy", "trained_fraction"):
        return f"{value:.4f}"
    if column == "accounted_params":
        return f"{value:,.0f}"
    if column == "params":
        return f"{value:,}"
    return str(value)


def format_leaderboard(rows):
    """Return the leaderboard `rows` as a fixed-width text table."""
    headers = ("task", "kind", "val_acc", "test_acc", "params", "accounted", "trained")
    columns = ("task", "kind", "validation_accuracy", "test_accuracy", "params",
               "accounted_params", "trained_fraction")
    table = [headers] + [tuple(_format_number(row[c], c) for c in columns) for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    lines = []
    for index, line in enumerate(table):
        cells = [cell.ljust(w) if i < 2 else cell.rjust(w)
                 for i, (cell, w) in enumerate(zip(line, widths))]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    if not rows:
        lines.append("(no agent has published a path yet)")
    return "\n".join(lines)


def write_leaderboard_csv(rows, filename):
    """Write the leaderboard `rows` to a CSV file with the `LEADERBOARD_COLUMNS` header."""
    with open(filename, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LEADERBOARD_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


def read_trial_records(work_dir):
    """Return the trial records of every agent under `work_dir`, oldest first per agent.

    Each record is a dict with `agent_id`, `trial_id`, `status`, `seconds`, `time` and
    `metrics` (`score`, `quality`, ... for completed trials). A missing folder gives [].
    Lines that are not valid JSON (a write cut by a crash) are skipped.
    """
    records = []
    if work_dir is None or not os.path.isdir(work_dir):
        return records
    for entry in sorted(os.listdir(work_dir)):
        filename = os.path.join(work_dir, entry, TRIALS_FILE)
        if not os.path.isfile(filename):
            continue
        with open(filename) as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return records


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def plot_accuracy(rows, filename):
    """Plot a bar per agent kind per task: test accuracy, or validation accuracy where no
    test accuracy is stored (hatched)."""
    pyplot = _pyplot()
    tasks = sorted({row["task"] for row in rows})
    kinds = sorted({row["kind"] for row in rows})
    figure, axes = pyplot.subplots(figsize=(max(4.0, 1.4 * len(tasks) + 2), 3.6), dpi=100)
    width = 0.8 / max(1, len(kinds))
    for k, kind in enumerate(kinds):
        for t, task in enumerate(tasks):
            matching = [row for row in rows if row["task"] == task and row["kind"] == kind]
            if not matching:
                continue
            row = max(matching, key=lambda r: r["validation_accuracy"])
            value, hatch = row["test_accuracy"], None
            if math.isnan(value):
                value, hatch = row["validation_accuracy"], "//"
            axes.bar(t + (k - (len(kinds) - 1) / 2) * width, value, width, color=f"C{k}",
                     hatch=hatch, label=kind)
    handles, labels = axes.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    if unique:
        axes.legend(unique.values(), unique.keys(), fontsize=8)
    axes.set_xticks(range(len(tasks)))
    axes.set_xticklabels(tasks, rotation=20, fontsize=8)
    axes.set_ylim(0, 1)
    axes.set_ylabel("test accuracy")
    axes.set_title("Accuracy per task and agent kind")
    figure.tight_layout()
    figure.savefig(filename)
    pyplot.close(figure)


def plot_scores(records, filename):
    """Plot the score of each completed trial against its trial number, one line per agent."""
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(figsize=(6.4, 3.6), dpi=100)
    agents = sorted({record["agent_id"] for record in records})
    for index, agent_id in enumerate(agents):
        scores = [record["metrics"].get("score", math.nan) for record in records
                  if record["agent_id"] == agent_id and record["status"] == "COMPLETED"]
        scores = [s if s is not None and math.isfinite(s) else math.nan for s in scores]
        if scores:
            axes.plot(range(1, len(scores) + 1), scores, marker="o", markersize=3,
                      color=f"C{index % 10}", label=agent_id)
    if agents:
        axes.legend(fontsize=7)
    else:
        axes.text(0.5, 0.5, "no trials recorded", ha="center", va="center",
                  transform=axes.transAxes)
    axes.set_xlabel("trial")
    axes.set_ylabel("score")
    axes.set_title("Score of each trial")
    figure.tight_layout()
    figure.savefig(filename)
    pyplot.close(figure)


def _component_column(name):
    """Return the left-to-right position of a component name in the graph."""
    order = {"embedding": 0, "cls": 1, "posembed_input": 2}
    if name in order:
        return order[name]
    if name.startswith("encoderblock_"):
        return 3 + int(name.split("_")[-1])
    return None


def _path_lines(system, path):
    """Return the component-key lines of `path`: one for a singlepath path, one per subpath
    for a multipath path, each ending in the path's own components (router, connector)."""
    lines = _subpath_component_lists(path)
    if not lines:
        return [list(path.components)]
    own = [key for key in path.components if system.component(key).agent_id == path.agent_id]
    router = [key for key in own if system.component(key).name == "router"]
    result = []
    for index, line in enumerate(lines):
        connector = [key for key in own
                     if system.component(key).name == f"connector_{index}"]
        result.append(line + connector + router)
    return result


def plot_system_graph(system, filename):
    """Draw the published paths as lines through their components.

    Columns are component positions (embedding, class token, position embedding, encoder
    blocks, norm, head, connectors, router). A node is one component, placed on the row of
    the agent that created it, colored by that agent and sized by the number of published
    paths that use it, so a node crossed by several lines is a component the tasks share.
    A multipath path is one line per frozen subpath, joined at its router. Each line ends at
    its agent's name.
    """
    pyplot = _pyplot()
    paths = [p for agent in sorted(system.published) for p in system.published_paths(agent)]
    lines = {path.key: _path_lines(system, path) for path in paths}
    used = [key for path in paths for line in lines[path.key] for key in line]
    agents = sorted({system.component(k).agent_id for k in used} | {p.agent_id for p in paths})
    row_of = {agent_id: index for index, agent_id in enumerate(agents)}
    max_block = max([_component_column(system.component(k).name) or 0 for k in used] + [2])
    tail = {"encoder_norm": 1, "head": 2, "router": 4}

    def column(name):
        position = _component_column(name)
        if position is not None:
            return position
        if name.startswith("connector"):
            return max_block + 3
        return max_block + tail.get(name, 5)

    figure, axes = pyplot.subplots(
        figsize=(max(6.0, 0.7 * (max_block + 9)), max(3.0, 0.6 * len(agents) + 1.5)), dpi=100
    )
    sharing = {}
    for path in paths:
        for key in set(path.components):
            sharing[key] = sharing.get(key, 0) + 1
    positions = {}
    for path_index, path in enumerate(paths):
        color = f"C{row_of[path.agent_id] % 10}"
        end = None
        for line in lines[path.key]:
            points = []
            for key in line:
                component = system.component(key)
                positions[key] = (column(component.name), row_of[component.agent_id],
                                  component.agent_id)
                points.append(positions[key][:2])
            if not points:
                continue
            axes.plot([p[0] for p in points], [p[1] for p in points], color=color, alpha=0.6,
                      linewidth=1.5, zorder=1)
            end = points[-1]
        if end is not None:
            label = "root model" if is_root_agent(path.agent_id) else path.agent_id
            axes.annotate(label, end, xytext=(8, 4 * (path_index % 3) - 4),
                          textcoords="offset points", fontsize=7, color=color, va="center")
    for key, (x, y, agent_id) in positions.items():
        axes.scatter([x], [y], s=30 + 30 * (sharing.get(key, 1) - 1),
                     color=f"C{row_of[agent_id] % 10}", edgecolor="black", linewidth=0.5,
                     zorder=2)
    names = {}
    for key in positions:
        name = system.component(key).name
        names[column(name)] = "connector" if name.startswith("connector") else name
    axes.set_xticks(sorted(names))
    axes.set_xticklabels([names[x].replace("encoderblock_", "block ") for x in sorted(names)],
                         rotation=30, fontsize=7)
    axes.set_yticks(range(len(agents)))
    axes.set_yticklabels(agents, fontsize=7)
    axes.set_xlim(-0.5, max(names, default=0) + 3.5)
    axes.set_ylim(-0.7, len(agents) - 0.3)
    axes.set_title("Published paths and the components they share (node size: sharing)")
    figure.tight_layout()
    figure.savefig(filename)
    pyplot.close(figure)


def write_report(store, output_dir, work_dir=None):
    """Write the leaderboard, plots and system graph of `store` into `output_dir`.

    Args:
        store: a `Store` or a store root.
        output_dir: folder for the files; created if missing.
        work_dir: the agents' work folder with their `trials.jsonl` files; defaults to
            ``<store>-trials``.

    Returns:
        {file kind: file name}: `leaderboard_csv`, `leaderboard_txt`, `accuracy`, `scores`
        and `system_graph`.
    """
    from keras_multipath.runner import default_work_dir

    store = store if isinstance(store, Store) else Store(store)
    if work_dir is None:
        work_dir = default_work_dir(store.root)
    os.makedirs(output_dir, exist_ok=True)
    system = store.load_system()
    rows = leaderboard(system)
    files = {
        "leaderboard_csv": os.path.join(output_dir, "leaderboard.csv"),
        "leaderboard_txt": os.path.join(output_dir, "leaderboard.txt"),
        "accuracy": os.path.join(output_dir, "accuracy.png"),
        "scores": os.path.join(output_dir, "scores.png"),
        "system_graph": os.path.join(output_dir, "system_graph.png"),
    }
    write_leaderboard_csv(rows, files["leaderboard_csv"])
    with open(files["leaderboard_txt"], "w") as f:
        f.write(format_leaderboard(rows) + "\n")
    plot_accuracy(rows, files["accuracy"])
    plot_scores(read_trial_records(work_dir), files["scores"])
    plot_system_graph(system, files["system_graph"])
    return files


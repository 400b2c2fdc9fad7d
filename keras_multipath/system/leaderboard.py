"""The per-task leaderboard across agent kinds, and export of a task's best model.

Several agents may publish a model for the same task: the singlepath agent, the multipath
agent, and any agent kind a user registers. The leaderboard ranks every published path of
the registered kinds per task by validation accuracy (`metrics["quality"]`), the metric all
agents select on. Ties go to the path with fewer parameters, then to the smaller agent id
and path id, so the ranking is deterministic. The test accuracy is reported but never used
for ranking. Root-model agents (task ``root_model/...``) are not ranked.

Example:

>>> board = Leaderboard(Store("/tmp/store"))
>>> board.best_path("digits").key
'multipath~digits:3'
>>> export_best_model(Store("/tmp/store"), "digits", "/tmp/digits.keras")
"""

import dataclasses

from keras_multipath.system import names

DEFAULT_KINDS = ("singlepath", "multipath")


@dataclasses.dataclass(frozen=True)
class LeaderboardEntry:
    """One published path on the leaderboard.

    Attributes:
        task_name: the task.
        agent_id: the agent that published the path.
        kind: the agent's kind, e.g. "multipath".
        path_key: the path's key.
        quality: validation accuracy, the ranking metric.
        test_quality: test accuracy, or None when the agent did not evaluate it.
        num_params: parameters of the path's components (each component counted once).
    """

    task_name: str
    agent_id: str
    kind: str
    path_key: str
    quality: float
    test_quality: float
    num_params: int


class Leaderboard:
    """Rank the published paths of each task across agent kinds.

    The system is read from the store when the leaderboard is created and on `refresh()`.
    Every agent kind is loaded (a multipath path needs the singlepath agents' components);
    only paths of the registered kinds are ranked.

    Args:
        store: the `Store`.
        kinds: agent kinds to rank; defaults to ``("singlepath", "multipath")``. Add others
            with `register_kind`.
    """

    def __init__(self, store, kinds=DEFAULT_KINDS):
        if isinstance(kinds, str):
            raise TypeError(
                f"Expected `kinds` to be a list of agent kinds, e.g. [{kinds!r}]. "
                f"Received: kinds={kinds!r}"
            )
        self.store = store
        self._kinds = []
        for kind in kinds:
            self.register_kind(kind)
        self.system = None
        self.refresh()

    @property
    def kinds(self):
        """The registered agent kinds, in registration order."""
        return tuple(self._kinds)

    def register_kind(self, kind):
        """Rank the published paths of agents of `kind` too, e.g. a user's own agent."""
        names.make_agent_id(kind, "task")  # Validates the kind.
        if kind not in self._kinds:
            self._kinds.append(kind)

    def refresh(self):
        """Re-read the published state of every agent from the store."""
        self.system = self.store.load_system()

    def entries(self, task_name=None):
        """Return the ranked entries of `task_name` (best first), or of every task (by task
        name, each task best first)."""
        by_task = {}
        for agent_id, keys in self.system.published.items():
            kind = names.agent_kind(agent_id)
            if kind not in self._kinds or names.is_root_agent(agent_id):
                continue
            for key in keys:
                path = self.system.paths[key]
                if "quality" not in path.metrics:
                    continue
                test_quality = path.metrics.get("test_quality")
                entry = LeaderboardEntry(
                    task_name=path.task_name,
                    agent_id=agent_id,
                    kind=kind,
                    path_key=key,
                    quality=float(path.metrics["quality"]),
                    test_quality=None if test_quality is None else float(test_quality),
                    num_params=sum(
                        self.system.component(c).num_params for c in dict.fromkeys(path.components)
                    ),
                )
                by_task.setdefault(path.task_name, []).append(entry)
        if task_name is not None:
            if task_name not in by_task:
                raise ValueError(
                    f"No agent of kinds {list(self._kinds)} has published a model for task "
                    f"{task_name!r}. Tasks on the leaderboard: {sorted(by_task) or 'none'}."
                )
            return _ranked(by_task[task_name])
        return [entry for task in sorted(by_task) for entry in _ranked(by_task[task])]

    def tasks(self):
        """Return the sorted names of the tasks with at least one ranked path."""
        return sorted({entry.task_name for entry in self.entries()})

    def best_entry(self, task_name):
        """Return the winning `LeaderboardEntry` of `task_name`."""
        return self.entries(task_name)[0]

    def best_path(self, task_name):
        """Return the winning `Path` of `task_name`.

        Raises:
            ValueError: naming the tasks on the leaderboard, when no agent of a registered
                kind has published a model for `task_name`.
        """
        return self.system.path(self.best_entry(task_name).path_key)


def _ranked(entries):
    def order(entry):
        _, path_id = names.parse_key(entry.path_key)
        return (-entry.quality, entry.num_params, entry.agent_id, path_id)

    return sorted(entries, key=order)


def best_path(store, task_name, kinds=DEFAULT_KINDS):
    """Return the best published `Path` of `task_name` across agents of `kinds`."""
    return Leaderboard(store, kinds).best_path(task_name)


def export_best_model(store, task_name, filepath, kinds=DEFAULT_KINDS, leaderboard=None):
    """Export the leaderboard winner of `task_name` as a standalone `.keras` file.

    A singlepath winner's model takes images (B, S, S, 3); a multipath winner's takes
    {str(S): images} for each of its resolutions. Loading the file needs only
    `import keras_multipath.layers` and `keras.saving.load_model`.

    Args:
        store: the `Store`.
        task_name: the task.
        filepath: destination ending in ".keras".
        kinds: agent kinds that compete, when `leaderboard` is None.
        leaderboard: a `Leaderboard` to use instead of a new one.

    Returns:
        `(path, model)`: the winning `Path` and its `keras.Model`.
    """
    from keras_multipath.system.assembly import Assembler
    from keras_multipath.system.export import export_path

    board = leaderboard if leaderboard is not None else Leaderboard(store, kinds)
    path = board.best_path(task_name)
    model = export_path(Assembler(store, board.system), path, filepath)
    return path, model

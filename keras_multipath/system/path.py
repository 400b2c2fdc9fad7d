"""The `Path` record: the model of one task as an ordered list of component keys."""

import copy
import dataclasses

from keras_multipath.system import names


@dataclasses.dataclass
class Path:
    """One model for one task.

    Args:
        agent_id: the agent that created the path.
        task_name: the task the path solves, e.g. ``"mnist"``.
        id: integer unique among the paths of `agent_id`, allocated by the store.
        hparams: JSON-able hyperparameters, e.g. ``{"num_layers": 2, "ds_image_size": 16}``.
        components: ordered component keys, input side first.
        parent: key of the parent path, or None for a root path.
        metrics: JSON-able metrics, e.g. ``{"quality": 0.9, "test_quality": 0.88}``.
    """

    agent_id: str
    task_name: str
    id: int
    hparams: dict = dataclasses.field(default_factory=dict)
    components: list = dataclasses.field(default_factory=list)
    parent: str = None
    metrics: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        names.make_key(self.agent_id, self.id)
        names.validate_task_name(self.task_name)
        self.components = list(self.components)
        for key in self.components:
            names.parse_key(key)
        if self.parent is not None:
            names.parse_key(self.parent)
        for field in ("hparams", "metrics"):
            if not isinstance(getattr(self, field), dict):
                raise TypeError(
                    f"Expected {field} to be a dict. "
                    f"Received: {type(getattr(self, field)).__name__}"
                )

    @property
    def key(self):
        """The system-wide key ``"<agent_id>:<id>"``."""
        return f"{self.agent_id}:{self.id}"

    def to_json(self):
        """Return a JSON-able dict of this record (a deep copy)."""
        return copy.deepcopy(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, data):
        """Build a record from the output of `to_json`."""
        return cls(**copy.deepcopy(data))

"""The `Component` record: one named, owned group of weights of the system."""

import dataclasses

from keras_multipath.system import names


@dataclasses.dataclass
class Component:
    """Metadata of one component; its weights live in the store or in a Keras layer.

    Args:
        name: component name inside a path, e.g. ``"encoderblock_3"`` or ``"head"``.
        agent_id: the agent that created the component (its owner).
        id: integer unique among the components of `agent_id`, allocated by the store.
        num_params: number of scalars in the component's weights.
        layer_config: the layer serialized with `keras.saving.serialize_keras_object`
            (JSON-able dict, including its ``build_config``).
        weight_shapes: shapes of the layer's weights in `get_weights()` order; the store
            fills them in on publish and checks weights against them on read.
    """

    name: str
    agent_id: str
    id: int
    num_params: int
    layer_config: dict
    weight_shapes: list = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Expected a non-empty component name. Received: name={self.name!r}")
        names.make_key(self.agent_id, self.id)
        if isinstance(self.num_params, bool) or not isinstance(self.num_params, int):
            raise TypeError(
                f"Expected num_params to be an integer. Received: num_params={self.num_params!r}"
            )
        if self.num_params < 0:
            raise ValueError(f"Expected num_params >= 0. Received: num_params={self.num_params}")
        if not isinstance(self.layer_config, dict):
            raise TypeError(
                "Expected layer_config to be a dict from keras.saving.serialize_keras_object. "
                f"Received: {type(self.layer_config).__name__}"
            )
        if self.weight_shapes is not None:
            self.weight_shapes = [[int(d) for d in shape] for shape in self.weight_shapes]

    @property
    def key(self):
        """The system-wide key ``"<agent_id>:<id>"``."""
        return f"{self.agent_id}:{self.id}"

    def to_json(self):
        """Return a JSON-able dict of this record."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data):
        """Build a record from the output of `to_json`."""
        return cls(**data)

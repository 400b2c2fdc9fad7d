"""`AgentState`: what one agent persists in its namespace of the store."""

import dataclasses

from keras_multipath.system import names

# Version tag written into every state file; readers reject other versions.
STATE_FORMAT = "keras_multipath.store/1"


@dataclasses.dataclass
class AgentState:
    """The resumable state of one agent, read from and published to the store.

    The store is the only source of ids: `new_component_id` and `new_path_id` continue the
    counters of the agent's latest state, so a resumed agent never reuses an id.

    Args:
        agent_id: the agent, e.g. ``"singlepath~mnist"``.
        cycle: cycle counter of the state.
        generation: 0 for an end-of-cycle state that other agents read; > 0 for an
            intermediate state kept only so that the agent can resume.
        next_component_id: the id the next new component of this agent gets.
        next_path_id: the id the next new path of this agent gets.
        paths: {key: Path} of this agent's own paths the state keeps (its published paths and
            its own population members).
        published: keys of the paths other agents see (a subset of `paths`).
        population: keys of every path in the agent's population, of any agent.
        history: paths generated since the previous state, kept for reports.
        components: {key: Component} of every component this agent has published or kept;
            maintained by `Store.publish`.
        shards: {component key: name of the state folder holding its weights}; maintained by
            `Store.publish`.
        oracle_state: JSON-able state of the search algorithm, stored as given.
        config: JSON-able agent configuration, stored as given.
        state_name: folder name this state was read from or published to, None when new.
    """

    agent_id: str
    cycle: int = 0
    generation: int = 0
    next_component_id: int = 0
    next_path_id: int = 0
    paths: dict = dataclasses.field(default_factory=dict)
    published: list = dataclasses.field(default_factory=list)
    population: list = dataclasses.field(default_factory=list)
    history: list = dataclasses.field(default_factory=list)
    components: dict = dataclasses.field(default_factory=dict)
    shards: dict = dataclasses.field(default_factory=dict)
    oracle_state: dict = dataclasses.field(default_factory=dict)
    config: dict = dataclasses.field(default_factory=dict)
    state_name: str = None

    def __post_init__(self):
        names.validate_agent_id(self.agent_id)

    @property
    def is_intermediate(self):
        """Whether this is an intermediate (generation > 0) state."""
        return self.generation > 0

    def new_component_id(self):
        """Allocate and return the next component id of this agent."""
        id_ = self.next_component_id
        self.next_component_id += 1
        return id_

    def new_path_id(self):
        """Allocate and return the next path id of this agent."""
        id_ = self.next_path_id
        self.next_path_id += 1
        return id_

    def add_path(self, path):
        """Keep own path `path` in this state (it is not published until listed in `published`)."""
        if path.agent_id != self.agent_id:
            raise ValueError(
                f"Path {path.key!r} belongs to agent {path.agent_id!r}; a state of agent "
                f"{self.agent_id!r} keeps only its own paths. Add other agents' paths to "
                f"`population` by key."
            )
        self.paths[path.key] = path

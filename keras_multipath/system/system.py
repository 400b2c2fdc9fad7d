"""`System`: the in-memory view of all published paths and components, with train locks."""

import collections

from absl import logging

from keras_multipath.system import names


class System:
    """Published paths and components, train locks, accounted parameters and ancestry.

    A component's lock set holds the agents that publish a path using it. A component is
    trainable (an ancestor a child may only clone) iff its lock set is empty. Build a System
    with `Store.load_system`; agents add their new components and candidate paths with
    `add_component` and `add_path`.

    Args:
        root_agent_id: the root-model agent whose published path is the fallback parent of
            orphans; None picks the agent whose task starts with ``root_model/`` (the
            alphabetically first when there are several).

    Attributes:
        paths: {key: Path} of every loaded path.
        components: {key: Component} of every loaded or added component.
        published: {agent id: [path key, ...]} as published by each loaded agent.
        locks: {component key: set of agent ids}.
        states: {agent id: AgentState} that the system was loaded from.
        load_errors: {agent id: error message} of agents or paths skipped while loading.
    """

    def __init__(self, root_agent_id=None):
        self.paths = {}
        self.components = {}
        self.published = {}
        self.locks = collections.defaultdict(set)
        self.states = {}
        self.load_errors = {}
        self._root_agent_id = (
            names.validate_agent_id(root_agent_id) if root_agent_id is not None else None
        )
        self._stored_components = set()

    @classmethod
    def from_states(cls, states, running_agent_id=None, load_errors=None, root_agent_id=None):
        """Build a System from {agent id: AgentState}.

        Every component of every published path gets a lock for the agent that published it,
        and then the running agent's own locks are removed (the start of its cycle). Other
        agents contribute their published paths only; the running agent all its kept paths.
        A path that uses a component no loaded state lists is skipped and recorded in
        `load_errors`.
        """
        system = cls(root_agent_id=root_agent_id)
        system.load_errors.update(load_errors or {})
        for agent_id, state in states.items():
            system.states[agent_id] = state
            for key, component in state.components.items():
                system.components[key] = component
                system._stored_components.add(key)
        for agent_id, state in states.items():
            keys = state.paths if agent_id == running_agent_id else state.published
            accepted = []
            for key in keys:
                path = state.paths[key]
                missing = [c for c in path.components if c not in system.components]
                if missing:
                    message = (
                        f"Path {key!r} uses components {missing} that no loaded agent lists; "
                        f"the path is skipped. Load the agents that own them."
                    )
                    logging.error("%s", message)
                    previous = system.load_errors.get(agent_id)
                    system.load_errors[agent_id] = (
                        message if previous is None else f"{previous}\n{message}"
                    )
                    continue
                system.paths[key] = path
                accepted.append(key)
            published = [key for key in state.published if key in accepted]
            system.published[agent_id] = published
            for key in published:
                system.lock_path(system.paths[key], agent_id)
        if running_agent_id is not None:
            system.remove_locks(running_agent_id)
        return system

    # ----------------------------------------------------------------------------------------
    # Lookup.

    def path(self, key):
        """Return the path with key `key`."""
        try:
            return self.paths[key]
        except KeyError:
            raise KeyError(
                f"Path {key!r} not found. The system contains {len(self.paths)} paths of agents "
                f"{sorted({p.agent_id for p in self.paths.values()})}."
            ) from None

    def component(self, key):
        """Return the component with key `key`."""
        try:
            return self.components[key]
        except KeyError:
            raise KeyError(
                f"Unknown component {key!r}. Load the agent that owns it, or add it with "
                f"System.add_component."
            ) from None

    def published_paths(self, agent_id=None):
        """Return the published paths of `agent_id`, or of every agent when None."""
        agents = [agent_id] if agent_id is not None else sorted(self.published)
        return [self.paths[key] for agent in agents for key in self.published.get(agent, [])]

    def resolve_paths(self, keys):
        """Return the paths for `keys` that the system holds; missing ones are logged."""
        found = []
        for key in keys:
            if key in self.paths:
                found.append(self.paths[key])
            else:
                logging.warning("Path %s is no longer in the system; dropping it.", key)
        return found

    # ----------------------------------------------------------------------------------------
    # Ancestry.

    @property
    def root_agent_id(self):
        """The root-model agent's id, or None when no root agent is loaded."""
        if self._root_agent_id is not None:
            return self._root_agent_id
        candidates = sorted(a for a in self.published if names.is_root_agent(a))
        return candidates[0] if candidates else None

    @property
    def root_path(self):
        """The root model's published path, or None when no root agent has published."""
        agent_id = self.root_agent_id
        if agent_id is None or not self.published.get(agent_id):
            return None
        return self.paths[self.published[agent_id][0]]

    def parent(self, path):
        """Return the parent of `path`, the root path when the parent is gone (an orphan),
        or None for the root path and for parentless paths."""
        if path.parent is None:
            return None
        if path.parent in self.paths:
            return self.paths[path.parent]
        root = self.root_path
        if root is None or root.key == path.key:
            return None
        return root

    def ancestors(self, path):
        """Yield the parent, grandparent, ... of `path` up to the root, with orphan fallback."""
        seen = {path.key}
        current = self.parent(path)
        while current is not None and current.key not in seen:
            yield current
            seen.add(current.key)
            current = self.parent(current)

    # ----------------------------------------------------------------------------------------
    # Locks and accounting.

    def lock_path(self, path, agent_id):
        """Add a lock of `agent_id` to every component of `path`."""
        names.validate_agent_id(agent_id)
        for key in path.components:
            self.locks[key].add(agent_id)

    def remove_locks(self, agent_id):
        """Remove every lock of `agent_id` (done at the start of each of its cycles)."""
        for holders in self.locks.values():
            holders.discard(agent_id)

    def is_trainable(self, component_key):
        """Return whether no agent locks the component, so a child must clone it, never share it."""
        return not self.locks.get(component_key)

    def is_stored(self, component_key):
        """Return whether the component was loaded from the store (so its weights never change)."""
        return component_key in self._stored_components

    def accounted_params(self, path, agent_id=None):
        """Return the parameters charged to `agent_id` (default: the path's agent) for `path`:
        the sum over its components of num_params / |locks ∪ {agent_id}|."""
        agent_id = agent_id if agent_id is not None else path.agent_id
        total = 0.0
        for key in path.components:
            holders = self.locks.get(key, set()) | {agent_id}
            total += self.component(key).num_params / len(holders)
        return total

    def num_params(self, path):
        """Return the total parameter count of `path`'s components."""
        return sum(self.component(key).num_params for key in path.components)

    # ----------------------------------------------------------------------------------------
    # Additions by the running agent.

    def add_component(self, component):
        """Register a new component (not yet stored); its key must be new."""
        if component.key in self.components:
            raise ValueError(f"Component {component.key!r} is already in the system.")
        self.components[component.key] = component

    def add_path(self, path):
        """Register a candidate or new path; its components must be known."""
        missing = [key for key in path.components if key not in self.components]
        if missing:
            raise ValueError(
                f"Path {path.key!r} uses unknown components {missing}. Add them with "
                f"System.add_component first."
            )
        self.paths[path.key] = path

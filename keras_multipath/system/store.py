"""The store: the persistent system state, one folder with one namespace per agent.

Layout::

    <root>/<agent_id>/state_<cycle>_<generation>/
        state.json        counters, published and population path keys, oracle state, config
        paths.json        the agent's own paths that the state keeps
        components.json   index of every component the agent published or keeps, with the
                          state folder holding its weights
        history.json      paths generated since the previous state
        weights.npz       weights of the components first written in this state (absent when
                          there are none), keys "<component id>/<weight index>"
        manifest.json     size and SHA-256 of each file above; written last

Only the agent writes its namespace. A publish writes the files into ``.tmp-*`` beside the
final folder, fsyncs them, writes the manifest and renames the folder into place, so readers
see the old state or the new one. Where folder renames are not atomic (object stores) the
files are written in place and the manifest, renamed into place last, is the commit point.
Readers take the latest state with a manifest and check it. The store imports neither Keras
nor TensorFlow (except `tf.io.gfile` for URL roots), and reads ``.npz`` files with
``allow_pickle=False``, so loading executes nothing from the files.
"""

import hashlib
import io
import json
import os
import re
import time
import uuid

import numpy as np
from absl import logging

from keras_multipath.system import filesystem as filesystem_lib
from keras_multipath.system import names
from keras_multipath.system.component import Component
from keras_multipath.system.path import Path
from keras_multipath.system.state import STATE_FORMAT, AgentState

MANIFEST_FILE = "manifest.json"
STATE_FILE = "state.json"
PATHS_FILE = "paths.json"
COMPONENTS_FILE = "components.json"
HISTORY_FILE = "history.json"
WEIGHTS_FILE = "weights.npz"
TMP_PREFIX = ".tmp-"

_STATE_NAME_RE = re.compile(r"state_(\d+)_(\d+)")
_NUMPY_KINDS = "biufc"  # bool, int, uint, float, complex: arrays that load without pickle


class StoreError(Exception):
    """Base class of the store's errors."""


class CorruptStateError(StoreError):
    """A state file is missing, truncated, altered or malformed.

    Attributes:
        agent_id: the agent whose namespace contains the file.
        file: the path of the file.
    """

    def __init__(self, agent_id, file, problem):
        self.agent_id = agent_id
        self.file = file
        super().__init__(
            f"Corrupt state of agent {agent_id!r}: file {file!r} {problem}. Restore the file, "
            f"or delete its state folder so that the agent's previous state is used."
        )


def state_name(cycle, generation):
    """Return the folder name ``state_<cycle>_<generation>``."""
    return f"state_{cycle}_{generation}"


def parse_state_name(name):
    """Return ``(cycle, generation)`` for a state folder name, or None for other names."""
    match = _STATE_NAME_RE.fullmatch(name)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _json_bytes(data):
    return (json.dumps(data, indent=1, sort_keys=True, allow_nan=True) + "\n").encode("utf-8")


class Store:
    """Read and publish agent states under one root folder or URL.

    Args:
        root: a local folder, ``file://`` URL, or a URL that `tf.io.gfile` reads
            (``gs://bucket/store``).
        filesystem: the `FileSystem` to use; by default picked from `root`.

    Example:

    >>> store = Store("/tmp/store")
    >>> state = store.resume("singlepath~mnist")
    >>> path = Path("singlepath~mnist", "mnist", state.new_path_id())
    >>> state.add_path(path); state.published = [path.key]; state.cycle = 1
    >>> store.publish(state)
    >>> system = store.load_system()
    """

    def __init__(self, root, filesystem=None):
        if not isinstance(root, (str, os.PathLike)) or not os.fspath(root):
            raise ValueError(f"Expected a non-empty store root path or URL. Received: {root!r}")
        root = os.fspath(root)
        self.filesystem = filesystem or filesystem_lib.get_filesystem(root)
        if root.startswith("file://"):
            root = root[len("file://"):]
        self.root = root
        # Component key -> (agent id, state folder holding its weights, weight shapes).
        self._shard_locations = {}
        # (agent id, state folder) -> {"size", "sha256"} of the folder's weights file.
        self._shard_files = {}
        # Weights files whose checksum was verified by this process.
        self._verified_shards = set()

    def __repr__(self):
        return f"Store({self.root!r})"

    @property
    def verified_weights_files(self):
        """Weights files this object has read and verified, sorted (for lazy-load checks)."""
        return sorted(self._verified_shards)

    # ----------------------------------------------------------------------------------------
    # Listing.

    def agent_dir(self, agent_id):
        """Return the namespace folder of `agent_id` (validated)."""
        return self.filesystem.join(self.root, names.validate_agent_id(agent_id))

    def list_agents(self):
        """Return the sorted ids of agents that have a namespace folder in the store."""
        agents = []
        for entry in self._listdir(self.root):
            try:
                agents.append(names.validate_agent_id(entry))
            except ValueError:
                logging.warning("Store %s: ignoring %r, which is not an agent id.", self.root, entry)
        return agents

    def _not_a_folder_error(self, folder):
        return StoreError(
            f"Store folder {folder!r} is not a folder: it or a folder above it is a file. "
            f"Pass a store root that is a folder (a missing one is created on the first "
            f"publish), or remove the file. Store root: {self.root!r}."
        )

    def _listdir(self, folder):
        try:
            return self.filesystem.listdir(folder)
        except NotADirectoryError as error:
            raise self._not_a_folder_error(folder) from error

    def list_states(self, agent_id, include_intermediate=True):
        """Return ``(cycle, generation)`` of every complete state of `agent_id`, oldest first.

        A state is complete when its manifest exists; its files are checked on read.
        """
        folder = self.agent_dir(agent_id)
        states = []
        for entry in self._listdir(folder):
            counters = parse_state_name(entry)
            if counters is None or (counters[1] > 0 and not include_intermediate):
                continue
            if self.filesystem.exists(self.filesystem.join(folder, entry, MANIFEST_FILE)):
                states.append(counters)
        return sorted(states)

    # ----------------------------------------------------------------------------------------
    # Reading.

    def read_state(self, agent_id, cycle=None, generation=None, include_intermediate=True):
        """Read and verify one state of `agent_id`.

        Args:
            agent_id: the agent.
            cycle, generation: the state to read; both None (the default) reads the latest
                complete state.
            include_intermediate: whether the latest state may be an intermediate one; other
                agents read only end-of-cycle states.

        Returns:
            The `AgentState`, or None when the agent has no complete state.

        Raises:
            CorruptStateError: naming the file and the agent, when a file of the state is
                missing, truncated, altered or malformed.
        """
        if (cycle is None) != (generation is None):
            raise ValueError(
                "Pass both cycle and generation to read one state, or neither to read the "
                f"latest. Received: cycle={cycle!r}, generation={generation!r}"
            )
        if cycle is None:
            states = self.list_states(agent_id, include_intermediate=include_intermediate)
            if not states:
                return None
            cycle, generation = states[-1]
        folder = self.filesystem.join(self.agent_dir(agent_id), state_name(cycle, generation))
        manifest_path = self.filesystem.join(folder, MANIFEST_FILE)
        if not self.filesystem.exists(manifest_path):
            return None
        return self._read_state_folder(agent_id, folder, state_name(cycle, generation))

    def resume(self, agent_id):
        """Return the latest state of `agent_id`, intermediate ones included, or a new state.

        Raises:
            CorruptStateError: when the latest state is corrupt. The agent does not fall back
                to an older state silently, since that would reuse ids.
        """
        state = self.read_state(agent_id, include_intermediate=True)
        return state if state is not None else AgentState(agent_id)

    def load_system(self, kinds=None, running_agent_id=None):
        """Load the published state of every agent as a `System`, without reading weights.

        Args:
            kinds: agent kinds to load, e.g. ``["singlepath"]``; None loads every agent.
            running_agent_id: the agent that is starting a cycle. Its latest state is read
                even when intermediate, all its own kept paths are loaded, and its own train
                locks are removed.

        Returns:
            A `System`. An agent whose latest end-of-cycle state is corrupt is skipped: the
            error is logged and recorded in `System.load_errors`, and `read_state` on that
            agent raises it.

        Raises:
            CorruptStateError: when the running agent's own state is corrupt.
        """
        from keras_multipath.system.system import System  # System imports this module.

        if isinstance(kinds, str):
            raise TypeError(
                f"Expected `kinds` to be a list of agent kinds, e.g. [{kinds!r}]. "
                f"Received: kinds={kinds!r}"
            )
        if kinds is not None:
            kinds = set(kinds)
        if running_agent_id is not None:
            names.validate_agent_id(running_agent_id)
        agents = self.list_agents()
        if running_agent_id is not None and running_agent_id not in agents:
            agents.append(running_agent_id)
        states = {}
        load_errors = {}
        for agent_id in agents:
            is_running = agent_id == running_agent_id
            if not is_running and kinds is not None and names.agent_kind(agent_id) not in kinds:
                continue
            try:
                state = self.read_state(agent_id, include_intermediate=is_running)
            except CorruptStateError as error:
                if is_running:
                    raise
                logging.error("Skipping agent %s while loading the system: %s", agent_id, error)
                load_errors[agent_id] = str(error)
                continue
            if state is not None:
                states[agent_id] = state
        return System.from_states(
            states, running_agent_id=running_agent_id, load_errors=load_errors
        )

    def read_weights(self, component_key):
        """Read the weights of a component from its shard, verifying the shard file.

        Returns:
            The list of numpy arrays in the layer's `get_weights()` order.

        Raises:
            KeyError: when no loaded state of the component's agent lists the component.
            CorruptStateError: when the shard file is missing, altered or malformed.
        """
        agent_id, id_ = names.parse_key(component_key)
        if component_key not in self._shard_locations:
            # The index of the agent's latest end-of-cycle state lists every component it
            # published; its latest intermediate state also lists those of the current cycle.
            self.read_state(agent_id, include_intermediate=False)
        if component_key not in self._shard_locations:
            self.read_state(agent_id, include_intermediate=True)
        if component_key not in self._shard_locations:
            raise KeyError(
                f"Component {component_key!r} is not in the store {self.root!r}: no state of "
                f"agent {agent_id!r} lists it."
            )
        _, shard_state, shapes = self._shard_locations[component_key]
        shard_path = self.filesystem.join(self.agent_dir(agent_id), shard_state, WEIGHTS_FILE)
        self._verify_shard(agent_id, shard_path, self._shard_files[agent_id, shard_state])
        try:
            with self.filesystem.open_read(shard_path) as f:
                with np.load(f, allow_pickle=False) as npz:
                    weights = [np.array(npz[f"{id_}/{i}"]) for i in range(len(shapes))]
        except (OSError, ValueError, KeyError, EOFError) as error:
            raise CorruptStateError(
                agent_id, shard_path, f"cannot be read for component {component_key!r} ({error})"
            ) from error
        for i, (array, shape) in enumerate(zip(weights, shapes)):
            if list(array.shape) != list(shape):
                raise CorruptStateError(
                    agent_id, shard_path,
                    f"holds weight {i} of {component_key!r} with shape {list(array.shape)}, "
                    f"expected {list(shape)}",
                )
        return weights

    def _verify_shard(self, agent_id, shard_path, record):
        if shard_path in self._verified_shards:
            return
        try:
            data = self.filesystem.read_bytes(shard_path)
        except OSError as error:
            raise CorruptStateError(agent_id, shard_path, f"cannot be read ({error})") from error
        if len(data) != record["size"]:
            raise CorruptStateError(
                agent_id, shard_path, f"has {len(data)} bytes, the index records {record['size']}"
            )
        if _sha256(data) != record["sha256"]:
            raise CorruptStateError(agent_id, shard_path, "does not match its SHA-256 checksum")
        self._verified_shards.add(shard_path)

    def _read_state_folder(self, agent_id, folder, name):
        files = self._read_manifest(agent_id, folder, name)
        documents = {}
        for file_name, record in files.items():
            file_path = self.filesystem.join(folder, file_name)
            if file_name == WEIGHTS_FILE:
                # Weights are checked against their checksum when first read.
                self._check_size(agent_id, file_path, record["size"])
                continue
            try:
                data = self.filesystem.read_bytes(file_path)
            except OSError as error:
                raise CorruptStateError(agent_id, file_path, f"cannot be read ({error})") from error
            if len(data) != record["size"]:
                raise CorruptStateError(
                    agent_id, file_path,
                    f"has {len(data)} bytes, the manifest records {record['size']}",
                )
            if _sha256(data) != record["sha256"]:
                raise CorruptStateError(agent_id, file_path, "does not match its SHA-256 checksum")
            try:
                documents[file_name] = json.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise CorruptStateError(agent_id, file_path, f"is not valid JSON ({error})") from error
        for required in (STATE_FILE, PATHS_FILE, COMPONENTS_FILE, HISTORY_FILE):
            if required not in documents:
                raise CorruptStateError(
                    agent_id, self.filesystem.join(folder, MANIFEST_FILE),
                    f"does not list the required file {required!r}",
                )
        state = self._decode_state(agent_id, folder, name, documents)
        shard_records = documents[COMPONENTS_FILE]["shards"]
        self._check_shards(agent_id, shard_records)
        for shard_state, record in shard_records.items():
            self._shard_files[agent_id, shard_state] = record
        for key, component in state.components.items():
            self._shard_locations[key] = (agent_id, state.shards[key], component.weight_shapes)
        return state

    def _read_manifest(self, agent_id, folder, name):
        manifest_path = self.filesystem.join(folder, MANIFEST_FILE)
        try:
            manifest = json.loads(self.filesystem.read_bytes(manifest_path).decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CorruptStateError(agent_id, manifest_path, f"is not valid JSON ({error})") from error
        counters = parse_state_name(name)
        try:
            ok = (
                manifest["format"] == STATE_FORMAT
                and manifest["agent_id"] == agent_id
                and (manifest["cycle"], manifest["generation"]) == counters
            )
            files = manifest["files"]
            for record in files.values():
                ok = ok and isinstance(record["size"], int) and isinstance(record["sha256"], str)
        except (KeyError, TypeError, AttributeError) as error:
            raise CorruptStateError(agent_id, manifest_path, f"is malformed ({error!r})") from error
        if not ok:
            raise CorruptStateError(
                agent_id, manifest_path,
                f"does not describe {name} of agent {agent_id!r} in format {STATE_FORMAT!r}",
            )
        return files

    def _check_size(self, agent_id, file_path, expected):
        try:
            size = self.filesystem.size(file_path)
        except OSError as error:
            raise CorruptStateError(agent_id, file_path, f"is missing ({error})") from error
        if size != expected:
            raise CorruptStateError(agent_id, file_path, f"has {size} bytes, expected {expected}")

    def _check_shards(self, agent_id, shard_records):
        folder = self.agent_dir(agent_id)
        for shard_state, record in shard_records.items():
            self._check_size(
                agent_id, self.filesystem.join(folder, shard_state, WEIGHTS_FILE), record["size"]
            )

    def _decode_state(self, agent_id, folder, name, documents):
        file_name = STATE_FILE
        try:
            data = documents[STATE_FILE]
            if data["format"] != STATE_FORMAT or data["agent_id"] != agent_id:
                raise ValueError(f"format or agent_id does not match {agent_id!r}")
            state = AgentState(
                agent_id=agent_id,
                cycle=int(data["cycle"]),
                generation=int(data["generation"]),
                next_component_id=int(data["next_component_id"]),
                next_path_id=int(data["next_path_id"]),
                published=list(data["published"]),
                population=list(data["population"]),
                oracle_state=dict(data["oracle_state"]),
                config=dict(data["config"]),
                state_name=name,
            )
            if (state.cycle, state.generation) != parse_state_name(name):
                raise ValueError(f"cycle and generation do not match the folder name {name!r}")
            file_name = PATHS_FILE
            for record in documents[PATHS_FILE]["paths"]:
                path = Path.from_json(record)
                if path.agent_id != agent_id:
                    raise ValueError(f"path {path.key!r} belongs to another agent")
                state.paths[path.key] = path
            file_name = HISTORY_FILE
            state.history = [Path.from_json(record) for record in documents[HISTORY_FILE]["paths"]]
            file_name = COMPONENTS_FILE
            shard_records = documents[COMPONENTS_FILE]["shards"]
            for record in documents[COMPONENTS_FILE]["components"]:
                record = dict(record)
                shard_state = record.pop("shard")
                component = Component.from_json(record)
                if component.agent_id != agent_id:
                    raise ValueError(f"component {component.key!r} belongs to another agent")
                if (
                    shard_state not in shard_records
                    or parse_state_name(shard_state) is None
                    or component.weight_shapes is None
                ):
                    raise ValueError(f"component {component.key!r} has no weights file")
                state.components[component.key] = component
                state.shards[component.key] = shard_state
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise CorruptStateError(
                agent_id, self.filesystem.join(folder, file_name), f"is malformed ({error!r})"
            ) from error
        return state

    # ----------------------------------------------------------------------------------------
    # Publishing.

    def publish(self, state, components=(), weights=None):
        """Write `state` as ``state_<cycle>_<generation>`` of its agent, atomically.

        The caller sets `state.cycle` and `state.generation` (greater than those of the
        agent's latest state), `state.paths`, `state.published`, `state.population` and
        optionally `state.history`, `state.oracle_state` and `state.config`.

        The weights file of the new state contains only the agent's components that no
        end-of-cycle state contains yet: the new ones in `components` that a kept path uses,
        and, in an end-of-cycle state, those written by intermediate states (which are
        deleted afterwards). Components of earlier end-of-cycle states stay listed forever,
        because other agents' paths may reference them.

        Args:
            state: the `AgentState` to publish; updated in place (`components`, `shards`,
                `state_name`, and `history` cleared).
            components: `Component` records created by this agent since its previous state.
                Those that no kept path uses are dropped.
            weights: {component key: list of numpy arrays in `get_weights()` order}, or a
                callable from component key to that list, for every kept new component.

        Returns:
            The name of the state folder, e.g. ``"state_3_0"``.

        Raises:
            ValueError: when the counters do not increase, a path or component belongs to
                another agent, a kept path uses an unknown component, an id is not below its
                counter, or weights are missing or do not match their component.
        """
        agent_id = names.validate_agent_id(state.agent_id)
        name = self._check_counters(state)
        fs = self.filesystem
        agent_folder = self.agent_dir(agent_id)
        try:
            fs.makedirs(agent_folder)
        except NotADirectoryError as error:
            raise self._not_a_folder_error(agent_folder) from error
        self._remove_leftovers(agent_id)

        index, shards, to_write = self._plan_index(state, components)
        arrays, shapes = self._collect_weights(state, index, shards, to_write, weights)
        for key, component_shapes in shapes.items():
            index[key].weight_shapes = component_shapes

        old_shards = sorted({shard for shard in shards.values() if shard is not None})
        shard_records = {shard: self._shard_record(agent_id, shard) for shard in old_shards}
        documents = self._encode_state(state, index, shards, name)

        atomic = fs.is_atomic_rename(agent_folder)
        final_folder = fs.join(agent_folder, name)
        work_folder = final_folder
        if atomic:
            work_folder = fs.join(agent_folder, f"{TMP_PREFIX}{name}-{uuid.uuid4().hex}")
        fs.makedirs(work_folder)

        files = {}
        if to_write:
            # NOTE: the shard is built in memory before it is written, so publishing needs
            # about twice the size of the new weights in RAM.
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            data = buffer.getvalue()
            fs.write_bytes(fs.join(work_folder, WEIGHTS_FILE), data)
            files[WEIGHTS_FILE] = {"size": len(data), "sha256": _sha256(data)}
            shard_records[name] = files[WEIGHTS_FILE]
        documents[COMPONENTS_FILE]["shards"] = shard_records
        for file_name, document in documents.items():
            data = _json_bytes(document)
            fs.write_bytes(fs.join(work_folder, file_name), data)
            files[file_name] = {"size": len(data), "sha256": _sha256(data)}
        manifest = {
            "format": STATE_FORMAT, "agent_id": agent_id,
            "cycle": state.cycle, "generation": state.generation, "files": files,
        }
        if atomic:
            fs.write_bytes(fs.join(work_folder, MANIFEST_FILE), _json_bytes(manifest))
            fs.sync_folder(work_folder)
            fs.rename(work_folder, final_folder)
        else:
            # The manifest appears in one rename, so a reader never sees it half-written.
            fs.sync_folder(work_folder)
            temporary = fs.join(work_folder, f"{TMP_PREFIX}{MANIFEST_FILE}")
            fs.write_bytes(temporary, _json_bytes(manifest))
            fs.rename(temporary, fs.join(work_folder, MANIFEST_FILE))
        fs.sync_folder(agent_folder)

        state.components = index
        state.shards = {key: (name if shard is None else shard) for key, shard in shards.items()}
        state.history = []
        state.state_name = name
        for shard_state, record in shard_records.items():
            self._shard_files[agent_id, shard_state] = record
        for key, component in index.items():
            self._shard_locations[key] = (agent_id, state.shards[key], component.weight_shapes)
        if state.generation == 0:
            self._remove_intermediate_states(agent_id, before=(state.cycle, 0))
        logging.info("Agent %s published %s to %s.", agent_id, name, self.root)
        return name

    def _check_counters(self, state):
        for field in ("cycle", "generation", "next_component_id", "next_path_id"):
            value = getattr(state, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(
                    f"Expected state.{field} to be a non-negative integer. Received: {value!r}"
                )
        name = state_name(state.cycle, state.generation)
        # NOTE: one process per agent is assumed, not locked. A second writer that resumed the
        # same state fails here, or at the folder rename; with in-place writes (object stores)
        # two writers racing between this check and the manifest can still collide.
        existing = self.list_states(state.agent_id)
        latest = state_name(*existing[-1]) if existing else None
        if state.state_name != latest:
            raise ValueError(
                f"Cannot publish {name} of agent {state.agent_id!r}: the state was read from "
                f"{state.state_name}, but the agent's latest state is {latest}. Start from "
                f"Store.resume(agent_id), and run one process per agent."
            )
        if existing and existing[-1] >= (state.cycle, state.generation):
            raise ValueError(
                f"Cannot publish {name} of agent {state.agent_id!r}: its latest state is "
                f"{latest}. Increase state.cycle (end of cycle) or state.generation "
                f"(intermediate state)."
            )
        return name

    def _remove_leftovers(self, agent_id):
        """Delete temporary and manifest-less folders left by a crashed publish of this agent."""
        folder = self.agent_dir(agent_id)
        for entry in self.filesystem.listdir(folder):
            entry_path = self.filesystem.join(folder, entry)
            if entry.startswith(TMP_PREFIX):
                logging.info("Removing %s, left by an interrupted publish.", entry_path)
                self.filesystem.remove_tree(entry_path)
            elif parse_state_name(entry) is not None and not self.filesystem.exists(
                self.filesystem.join(entry_path, MANIFEST_FILE)
            ):
                logging.info("Removing %s, an incomplete state.", entry_path)
                self.filesystem.remove_tree(entry_path)

    def _remove_intermediate_states(self, agent_id, before):
        folder = self.agent_dir(agent_id)
        for entry in self._listdir(folder):
            counters = parse_state_name(entry)
            if counters is None or counters[1] == 0 or counters >= before:
                continue
            entry_path = self.filesystem.join(folder, entry)
            # Without its manifest the folder is incomplete, so a crash midway leaves nothing
            # that a reader would take for a state.
            self.filesystem.remove_file(self.filesystem.join(entry_path, MANIFEST_FILE))
            self.filesystem.remove_tree(entry_path)

    def _plan_index(self, state, components):
        """Return the new component index, shard map (None = this state) and keys to write."""
        agent_id = state.agent_id
        for key, path in state.paths.items():
            if path.agent_id != agent_id or key != path.key:
                raise ValueError(
                    f"Invalid state.paths of agent {agent_id!r}: key {key!r} maps to path {path.key!r}; "
                    f"a state keeps only its own paths, keyed by Path.key."
                )
            if path.id >= state.next_path_id:
                raise ValueError(
                    f"Path {key!r} has id {path.id} but state.next_path_id is "
                    f"{state.next_path_id}. Allocate path ids with state.new_path_id()."
                )
        for key in state.published:
            if key not in state.paths:
                raise ValueError(
                    f"Published path {key!r} is not in state.paths of agent {agent_id!r}. "
                    f"Add it with state.add_path(path)."
                )
        for key in state.population:
            owner, _ = names.parse_key(key)
            if owner == agent_id and key not in state.paths:
                raise ValueError(
                    f"Population member {key!r} is not in state.paths of agent {agent_id!r}."
                )

        new_components = {}
        for component in components:
            if not isinstance(component, Component):
                raise TypeError(f"Expected Component records. Received: {component!r}")
            if component.agent_id != agent_id:
                raise ValueError(
                    f"Component {component.key!r} belongs to agent {component.agent_id!r}; "
                    f"agent {agent_id!r} publishes only components it created."
                )
            if component.key in state.components:
                raise ValueError(f"Component {component.key!r} is already in the store.")
            if component.id >= state.next_component_id:
                raise ValueError(
                    f"Component {component.key!r} has id {component.id} but "
                    f"state.next_component_id is {state.next_component_id}. Allocate "
                    f"component ids with state.new_component_id()."
                )
            new_components[component.key] = component

        used = {key for path in state.paths.values() for key in path.components
                if names.parse_key(key)[0] == agent_id}
        index, shards, to_write = {}, {}, []
        for key, component in state.components.items():
            shard = state.shards[key]
            intermediate = parse_state_name(shard)[1] > 0
            if not intermediate:
                index[key], shards[key] = component, shard
            elif key in used:
                index[key] = component
                # An end-of-cycle state copies weights out of intermediate states.
                shards[key] = None if state.generation == 0 else shard
                if state.generation == 0:
                    to_write.append(key)
        for key in sorted(used):
            if key in index:
                continue
            if key not in new_components:
                paths = sorted(p.key for p in state.paths.values() if key in p.components)
                raise ValueError(
                    f"Path(s) {paths} use component {key!r} of agent {agent_id!r}, which is "
                    f"neither in the store nor in `components`. Pass its Component record."
                )
            index[key], shards[key] = new_components[key], None
            to_write.append(key)
        return index, shards, to_write

    def _collect_weights(self, state, index, shards, to_write, weights):
        arrays, shapes = {}, {}
        for key in to_write:
            component = index[key]
            if key in state.components:
                values = self.read_weights(key)
            else:
                if weights is None:
                    raise ValueError(
                        f"Missing weights for new component {key!r}. Pass weights={{key: "
                        f"layer.get_weights()}} or a callable."
                    )
                try:
                    values = weights(key) if callable(weights) else weights[key]
                except KeyError:
                    raise ValueError(f"Missing weights for new component {key!r}.") from None
            values = [np.asarray(value) for value in values]
            total = 0
            for i, value in enumerate(values):
                if value.dtype.kind not in _NUMPY_KINDS:
                    raise ValueError(
                        f"Weight {i} of component {key!r} has dtype {value.dtype}; the store "
                        f"accepts numeric arrays only (no object arrays, which need pickle)."
                    )
                total += int(value.size)
                arrays[f"{component.id}/{i}"] = value
            if total != component.num_params:
                raise ValueError(
                    f"Component {key!r} declares num_params={component.num_params} but its "
                    f"weights hold {total} values."
                )
            value_shapes = [list(value.shape) for value in values]
            if component.weight_shapes is not None and component.weight_shapes != value_shapes:
                raise ValueError(
                    f"Weights of component {key!r} have shapes {value_shapes}, expected "
                    f"{component.weight_shapes}."
                )
            shapes[key] = value_shapes
        return arrays, shapes

    def _shard_record(self, agent_id, shard_state):
        if (agent_id, shard_state) not in self._shard_files:
            # The state was read by another Store object; read its records here.
            self.read_state(agent_id)
        return self._shard_files[agent_id, shard_state]

    def _encode_state(self, state, index, shards, name):
        state_document = {
            "format": STATE_FORMAT,
            "agent_id": state.agent_id,
            "cycle": state.cycle,
            "generation": state.generation,
            "next_component_id": state.next_component_id,
            "next_path_id": state.next_path_id,
            "published": list(state.published),
            "population": list(state.population),
            "oracle_state": state.oracle_state,
            "config": state.config,
            "time": time.time(),
        }
        paths = [state.paths[key].to_json() for key in sorted(state.paths, key=_key_order)]
        records = []
        for key in sorted(index, key=_key_order):
            record = index[key].to_json()
            record["shard"] = name if shards[key] is None else shards[key]
            records.append(record)
        for document in (state_document,):
            try:
                json.dumps(document, allow_nan=True)
            except (TypeError, ValueError) as error:
                raise ValueError(
                    f"state.oracle_state and state.config of agent {state.agent_id!r} must be "
                    f"JSON-able: {error}"
                ) from error
        history = [path.to_json() for path in state.history]
        # Checked before anything is written, so a bad value leaves no partial state folder.
        for record in paths + history:
            try:
                json.dumps(record, allow_nan=True)
            except (TypeError, ValueError) as error:
                raise ValueError(
                    f"Path '{record['agent_id']}:{record['id']}' of agent {state.agent_id!r} "
                    f"has hparams or metrics that are not JSON-able ({error}). Convert numpy "
                    f"values with float() or int(), and sets to lists."
                ) from error
        return {
            STATE_FILE: state_document,
            PATHS_FILE: {"paths": paths},
            COMPONENTS_FILE: {"components": records, "shards": {}},
            HISTORY_FILE: {"paths": history},
        }


def _key_order(key):
    agent_id, id_ = names.parse_key(key)
    return agent_id, id_

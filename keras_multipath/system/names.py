"""Agent ids, task names and keys: the names that reach the file system.

An agent id is ``"<kind>~<task name with '/' replaced by '~'>"``, for example
``"singlepath~mnist"`` or ``"singlepath~root_model~random_init"``. It names the agent's folder
in the store, so it is validated before any file is touched. Components and paths are keyed
``"<agent_id>:<id>"`` with a non-negative integer id that is unique per agent.
"""

import re

# One segment of a task name or agent id: a letter, digit or underscore first, so that "."
# and ".." (and hidden names) cannot appear, then letters, digits, "_", "-" and ".".
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"
_TASK_NAME_RE = re.compile(rf"{_SEGMENT}(/{_SEGMENT})*")
_AGENT_ID_RE = re.compile(rf"{_SEGMENT}(~{_SEGMENT})+")
_MAX_NAME_LENGTH = 200

TASK_NAME_PATTERN = "segments of [A-Za-z0-9_.-] joined by '/', each starting with [A-Za-z0-9_]"
AGENT_ID_PATTERN = (
    "'<kind>~<task>' with segments of [A-Za-z0-9_.-] joined by '~', "
    "each starting with [A-Za-z0-9_]"
)

ROOT_TASK_PREFIX = "root_model/"
ROOT_AGENT_ID = "singlepath~root_model~random_init"


def validate_task_name(task_name):
    """Return `task_name` unchanged if it is a valid task name.

    Raises:
        TypeError: if `task_name` is not a string.
        ValueError: if it is empty, too long, absolute, contains ".." or "~", or any character
            outside the allowed set.
    """
    if not isinstance(task_name, str):
        raise TypeError(
            f"Expected the task name to be a string. Received: task_name={task_name!r} "
            f"of type {type(task_name).__name__}"
        )
    if len(task_name) > _MAX_NAME_LENGTH or not _TASK_NAME_RE.fullmatch(task_name):
        raise ValueError(
            f"Invalid task name {task_name!r}. Expected {TASK_NAME_PATTERN}, at most "
            f"{_MAX_NAME_LENGTH} characters, for example 'mnist' or 'clevr/count_all'."
        )
    return task_name


def validate_agent_id(agent_id):
    """Return `agent_id` unchanged if it is a valid agent id.

    Raises:
        TypeError: if `agent_id` is not a string.
        ValueError: if it does not match ``<kind>~<task>`` with safe segments, for example
            ``"../x"``, ``"/tmp/x"``, ``"a/b"`` or ``""``.
    """
    if not isinstance(agent_id, str):
        raise TypeError(
            f"Expected the agent id to be a string. Received: agent_id={agent_id!r} "
            f"of type {type(agent_id).__name__}"
        )
    if len(agent_id) > _MAX_NAME_LENGTH or not _AGENT_ID_RE.fullmatch(agent_id):
        raise ValueError(
            f"Invalid agent id {agent_id!r}. Expected {AGENT_ID_PATTERN}, at most "
            f"{_MAX_NAME_LENGTH} characters, for example 'singlepath~mnist'. "
            f"Build one with make_agent_id(kind, task_name)."
        )
    return agent_id


def make_agent_id(kind, task_name):
    """Return the agent id for an agent `kind` bound to `task_name`.

    Example:

    >>> make_agent_id("singlepath", "clevr/count_all")
    'singlepath~clevr~count_all'
    """
    if not isinstance(kind, str) or not re.fullmatch(_SEGMENT, kind):
        raise ValueError(
            f"Invalid agent kind {kind!r}. Expected one segment of [A-Za-z0-9_.-] starting "
            f"with [A-Za-z0-9_], for example 'singlepath'."
        )
    validate_task_name(task_name)
    return validate_agent_id(f"{kind}~{task_name.replace('/', '~')}")


def agent_kind(agent_id):
    """Return the kind part of `agent_id`, e.g. ``"singlepath"``."""
    return validate_agent_id(agent_id).split("~", 1)[0]


def agent_task_name(agent_id):
    """Return the task name of `agent_id`, with '~' mapped back to '/'."""
    return validate_agent_id(agent_id).split("~", 1)[1].replace("~", "/")


def is_root_agent(agent_id):
    """Return whether `agent_id` belongs to a root-model agent (task ``root_model/...``)."""
    return agent_task_name(agent_id).startswith(ROOT_TASK_PREFIX)


def make_key(agent_id, id_):
    """Return the key ``"<agent_id>:<id>"`` of a component or path."""
    validate_agent_id(agent_id)
    if isinstance(id_, bool) or not isinstance(id_, int) or id_ < 0:
        raise ValueError(f"Expected a non-negative integer id. Received: id={id_!r}")
    return f"{agent_id}:{id_}"


def parse_key(key):
    """Split a component or path key into ``(agent_id, id)``.

    Raises:
        ValueError: if `key` is not ``"<agent_id>:<non-negative integer>"``.
    """
    if not isinstance(key, str) or key.count(":") != 1:
        raise ValueError(
            f"Invalid key {key!r}. Expected '<agent_id>:<id>', for example 'singlepath~mnist:3'."
        )
    agent_id, id_text = key.split(":")
    validate_agent_id(agent_id)
    if not id_text.isdigit() or not id_text.isascii():
        raise ValueError(
            f"Invalid key {key!r}: the id {id_text!r} is not a non-negative integer."
        )
    return agent_id, int(id_text)

"""Parent selection with the "decay" policy and a uniform random fallback.

The agent walks its own population from the best score down and accepts each path with
probability `0.5 ** offsprings`, where `offsprings` counts the children the path already
had (persisted in its metrics, so it accumulates across cycles). When no own path is
accepted, the parent is drawn uniformly from every visible path: all agents of the class,
the root model and the agent's own paths. That fallback is what brings other tasks' models
into a lineage.
"""

DECAY_BASE = 0.5


def rank_paths(paths):
    """Return `paths` sorted best first: by score descending, ties by the smaller id.

    The oldest path wins ties because ids grow with creation time within an agent.
    """
    return sorted(paths, key=lambda path: (-float(path.metrics.get("score", 0.0)), path.id))


def select_parent(own_paths, visible_paths, rng, decay_base=DECAY_BASE):
    """Pick the parent of the next candidate.

    Args:
        own_paths: the agent's own population (objects with `metrics` dict and `id`).
            The chosen path's `metrics["offsprings"]` is incremented in place.
        visible_paths: every path the agent may start from, own paths included; the
            fallback draws uniformly from it.
        rng: `numpy.random.Generator`.
        decay_base: acceptance probability is `decay_base ** offsprings`.

    Returns:
        The selected path.

    Raises:
        ValueError: if no own path is accepted and `visible_paths` is empty.
    """
    for path in rank_paths(own_paths):
        offsprings = int(path.metrics.get("offsprings", 0))
        if rng.random() < decay_base**offsprings:
            path.metrics["offsprings"] = offsprings + 1
            return path
    visible_paths = list(visible_paths)
    if not visible_paths:
        raise ValueError(
            "No parent available: the agent has no own path and no visible path. "
            "Create a root model in the store first."
        )
    return visible_paths[int(rng.integers(len(visible_paths)))]

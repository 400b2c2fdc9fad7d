"""Candidate construction: mutate a parent path into a child description.

`make_candidate` decides, for every component of the child, where its weights come from:

- `share`: the child references a frozen (locked) ancestor component; no new weights.
- `clone`: a new component (new id, owned by the running agent) starts as a copy of an
  ancestor component and is trained. Ancestor components that are still trainable
  (unlocked) are always cloned, never trained in place, so published weights never change.
- `resample`: a new trainable `posembed_input` computed from the root model's position
  embedding, resampled bilinearly to the child's patch grid (class-token entry kept).
  NOTE: the source is the root path's component, at the root resolution. For a root
  imported at another resolution than its checkpoint this resamples twice, where the
  reference resamples the checkpoint's own embedding once.
- `new`: a new randomly initialised component (a head, or an encoder block beyond the
  deepest ancestor).

For each component name the nearest ancestor that has a component of that name decides.
Heads are inherited only from ancestors of the same agent, so a task never starts from
another task's classifier. A `posembed_input` of another resolution is skipped in the walk.
The result is a JSON-able dict, the trial value the oracle hands to the tuner.
"""

import copy
import math

from keras_multipath.agents import hparams as hp
from keras_multipath.agents.scoring import vit_forward_flops
from keras_multipath.layers.variants import get_variant

SHARE = "share"
CLONE = "clone"
RESAMPLE = "resample"
NEW = "new"


def component_names(num_layers, num_classes):
    """Return the component names of a ViT path in call order."""
    names = ["embedding", "cls", "posembed_input"]
    names += [f"encoderblock_{i}" for i in range(num_layers)]
    names.append("encoder_norm")
    if num_classes:
        names.append("head")
    return names


def expected_weight_shapes(variant, image_size, num_classes, name):
    """Return the weight shapes (lists) of component `name` of a ViT path, in layer order."""
    size = get_variant(variant)
    d, p, m, n = size["hidden_dim"], size["patch_size"], size["mlp_dim"], size["num_heads"]
    if name == "embedding":
        return [[p, p, 3, d], [d]]
    if name == "cls":
        return [[1, 1, d]]
    if name == "posembed_input":
        grid = (int(image_size) // p) ** 2
        return [[1, 1 + grid, d]]
    if name.startswith("encoderblock_"):
        hd = d // n
        return [
            [d], [d],
            [d, n, hd], [n, hd], [d, n, hd], [n, hd], [d, n, hd], [n, hd], [n, hd, d], [d],
            [d], [d],
            [d, m], [m], [m, d], [d],
        ]
    if name == "encoder_norm":
        return [[d], [d]]
    if name == "head":
        return [[d, int(num_classes)], [int(num_classes)]]
    raise ValueError(f"Unknown ViT component name {name!r}.")


def num_params_of(shapes):
    return int(sum(math.prod(shape) for shape in shapes))


def _named_components(system, path):
    """Return {component name: component key} of `path`."""
    return {system.component(key).name: key for key in path.components}


def is_compatible(system, path, variant):
    """Return whether `path` has the patch embedding of `variant` (same width and patch).

    Paths of agents built on another ViT size cannot be parents: their components do not
    fit this agent's model.
    """
    for key in path.components:
        component = system.component(key)
        if component.name == "embedding":
            return component.weight_shapes == expected_weight_shapes(variant, 0, 0, "embedding")
    return False


def mutate_candidate_hparams(parent_hparams, config, ds_hparams, rng):
    """Return the child's hyperparameters: defaults, then the parent's, mutated, then `ds`.

    Parent values outside this agent's grids (a parent of another configuration) move to
    the nearest grid value first.
    """
    hparams = copy.deepcopy(config.hparams_defaults)
    hparams.update(copy.deepcopy(parent_hparams))
    for key, grid in config.hparams_grids.items():
        if key in hparams:
            hparams[key] = hp.snap_to_grid(hparams[key], grid)
    hp.mutate_hparams(
        hparams, config.hparams_grids, rng, config.force_mutations,
        config.hparams_defaults.get(hp.MU_KEY, hp.DEFAULT_MU),
    )
    hparams.update(copy.deepcopy(ds_hparams))
    return hparams


def make_candidate(system, parent, agent_id, config, ds_hparams, rng, root_path=None):
    """Describe a child of `parent` for the running agent.

    Args:
        system: the `System` loaded at the start of the cycle, with the agent's new paths
            of this cycle added.
        parent: the parent `Path`.
        agent_id: the running agent.
        config: the agent's `AgentConfig`.
        ds_hparams: the generation's data hyperparameters, including `num_classes`.
        rng: `numpy.random.Generator`.
        root_path: the root model's path, source of resampled position embeddings;
            defaults to `system.root_path`.

    Returns:
        A JSON-able dict with `parent` (key), `hparams`, `threshold`, `flops` and
        `components`. `threshold` is the parent's score when the parent belongs to
        `agent_id`, else None. `components` lists, in call order, dicts with `name`,
        `action` (share, clone, resample or new), `source` (ancestor component key, or None)
        and `shapes` (weight shapes). Cloned and new components get their keys when the
        oracle allocates ids.
    """
    hparams = mutate_candidate_hparams(parent.hparams, config, ds_hparams, rng)
    num_layers = int(hparams["num_layers"])
    image_size = int(hparams["ds_image_size"])
    num_classes = int(hparams["num_classes"])
    variant = config.variant
    lineage = [parent] + list(system.ancestors(parent))
    named = [(path, _named_components(system, path)) for path in lineage]

    components = []
    for name in component_names(num_layers, num_classes):
        expected = expected_weight_shapes(variant, image_size, num_classes, name)
        entry = {"name": name, "action": NEW, "source": None, "shapes": expected}
        for ancestor, by_name in named:
            if name not in by_name:
                continue
            if name == "head" and ancestor.agent_id != agent_id:
                continue
            key = by_name[name]
            shapes = system.component(key).weight_shapes
            if shapes != expected:
                if name in ("posembed_input", "head"):
                    # Another resolution or another class count: look further up.
                    continue
                raise ValueError(
                    f"Component {key!r} ({name}) of ancestor {ancestor.key!r} has weight shapes "
                    f"{shapes}, expected {expected} for ViT variant {variant!r}. Its path "
                    f"belongs to an agent built on another ViT size."
                )
            trainable = system.is_trainable(key)
            clone = trainable or hp.do_mutate(
                hparams, hp.CLONE_PREFIX + name, config.hparams_grids, rng,
                config.force_mutations, config.hparams_defaults.get(hp.MU_KEY, hp.DEFAULT_MU),
            )
            entry.update(action=CLONE if clone else SHARE, source=key)
            break
        if entry["action"] == NEW and name == "posembed_input":
            root = root_path if root_path is not None else system.root_path
            if root is None:
                raise ValueError(
                    "No ancestor has a position embedding for image size "
                    f"{image_size}, and no root model is loaded to resample one from."
                )
            entry.update(action=RESAMPLE, source=_named_components(system, root)["posembed_input"])
        components.append(entry)

    size = get_variant(variant)
    flops = vit_forward_flops(
        image_size, size["patch_size"], size["hidden_dim"], size["num_heads"], size["mlp_dim"],
        num_layers, num_classes,
    )
    threshold = None
    if parent.agent_id == agent_id and "score" in parent.metrics:
        threshold = float(parent.metrics["score"])
    return {
        "parent": parent.key,
        "hparams": hparams,
        "threshold": threshold,
        "flops": int(flops),
        "components": components,
    }


def accounted_params(system, candidate, agent_id):
    """Return the accounted parameters of a candidate for `agent_id`.

    Shared components count `num_params / |locks ∪ {agent_id}|`; cloned, resampled and new
    components count fully.
    """
    total = 0.0
    for entry in candidate["components"]:
        if entry["action"] == SHARE:
            holders = system.locks.get(entry["source"], set()) | {agent_id}
            total += system.component(entry["source"]).num_params / len(holders)
        else:
            total += num_params_of(entry["shapes"])
    return total

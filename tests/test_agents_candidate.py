"""Tests of candidate construction: ancestor walk, reuse or clone, head, position
embedding and depth rules."""

import numpy as np
import pytest

from keras_multipath.agents import candidate as candidate_lib
from keras_multipath.agents.candidate import expected_weight_shapes, make_candidate
from keras_multipath.agents.config import get_agent_config
from keras_multipath.system import Component, Path, System

ROOT = "singlepath~root_model~random_init"
ME = "singlepath~mnist"
OTHER = "singlepath~digits"
VARIANT = "micro/4"


def make_config(share_probability=None):
    """The cpu config; with `share_probability` set, clone decisions are fixed (no `_mu_`
    grid, so stored probabilities do not mutate) and `num_layers` never mutates."""
    config = get_agent_config("cpu")
    if share_probability is None:
        return config
    grids = {k: v for k, v in config.hparams_grids.items() if k not in ("_mu_", "num_layers")}
    defaults = dict(config.hparams_defaults)
    for name in ("embedding", "cls", "posembed_input", "encoderblock_0", "encoderblock_1", "encoderblock_2", "head"):
        defaults[f"_mu_|clone:{name}"] = 1.0 - share_probability
    return config.replace(hparams_grids=grids, hparams_defaults=defaults)


class SystemBuilder:
    """Builds a `System` of paths with ViT component records (metadata only)."""

    def __init__(self):
        self.system = System(root_agent_id=ROOT)
        self.ids = {}

    def add_path(self, agent_id, image_size, num_layers, num_classes, parent=None, locked=True,
                 reuse=None):
        reuse = dict(reuse or {})
        keys = []
        for name in candidate_lib.component_names(num_layers, num_classes):
            if name in reuse:
                keys.append(reuse[name])
                continue
            component_id = self.ids.get(agent_id, 0)
            self.ids[agent_id] = component_id + 1
            shapes = expected_weight_shapes(VARIANT, image_size, num_classes, name)
            component = Component(name, agent_id, component_id, candidate_lib.num_params_of(shapes),
                                  {"class_name": "x"}, shapes)
            self.system.add_component(component)
            keys.append(component.key)
        path_id = self.ids.get(agent_id + "/paths", 0)
        self.ids[agent_id + "/paths"] = path_id + 1
        task = "root_model/random_init" if agent_id == ROOT else agent_id.split("~")[1]
        path = Path(agent_id, task, path_id, hparams={"num_layers": num_layers, "ds_image_size": image_size},
                    components=keys, parent=parent.key if parent else None, metrics={"score": 0.5})
        self.system.add_path(path)
        if locked:
            self.system.published.setdefault(agent_id, []).append(path.key)
            self.system.lock_path(path, agent_id)
        return path


def ds(image_size=16, num_classes=10):
    return {"ds_image_size": image_size, "num_classes": num_classes}


def actions(candidate):
    return {entry["name"]: (entry["action"], entry["source"]) for entry in candidate["components"]}


@pytest.fixture()
def builder():
    b = SystemBuilder()
    b.root = b.add_path(ROOT, 16, 2, 0)
    return b


def test_candidate_from_root_shares_frozen_components(builder):
    config = make_config(share_probability=1.0)
    candidate = make_candidate(builder.system, builder.root, ME, config, ds(), np.random.default_rng(0))
    got = actions(candidate)
    root_keys = dict(zip(candidate_lib.component_names(2, 0), builder.root.components))
    for name in ("embedding", "cls", "posembed_input", "encoderblock_0", "encoderblock_1"):
        assert got[name] == ("share", root_keys[name]), name
    # The final norm is always cloned (forced mutation) and the headless root gives no head.
    assert got["encoder_norm"] == ("clone", root_keys["encoder_norm"])
    assert got["head"] == ("new", None)
    assert candidate["threshold"] is None
    assert candidate["parent"] == builder.root.key


def test_candidate_clone_probability_near_mu(builder):
    config = make_config()
    rng = np.random.default_rng(1)
    clones = []
    for _ in range(1500):
        candidate = make_candidate(builder.system, builder.root, ME, config, ds(), rng)
        clones.append(actions(candidate)["encoderblock_0"][0] == "clone")
    # The clone probability starts at _mu_ = 0.2 and its self-tuning moves cancel on average.
    assert abs(np.mean(clones) - 0.2) < 0.035


def test_trainable_ancestor_always_cloned(builder):
    config = make_config(share_probability=1.0)
    own = builder.add_path(ME, 16, 2, 10, parent=builder.root, locked=False)
    candidate = make_candidate(builder.system, own, ME, config, ds(), np.random.default_rng(2))
    got = actions(candidate)
    own_keys = dict(zip(candidate_lib.component_names(2, 10), own.components))
    for name, key in own_keys.items():
        assert got[name] == ("clone", key), name
    assert candidate["threshold"] == 0.5


def test_head_only_from_same_agent(builder):
    config = make_config(share_probability=1.0)
    mine = builder.add_path(ME, 16, 2, 10, parent=builder.root, locked=True)
    theirs = builder.add_path(OTHER, 16, 2, 10, parent=mine, locked=True)
    candidate = make_candidate(builder.system, theirs, ME, config, ds(), np.random.default_rng(3))
    got = actions(candidate)
    their_keys = dict(zip(candidate_lib.component_names(2, 10), theirs.components))
    my_keys = dict(zip(candidate_lib.component_names(2, 10), mine.components))
    # The other agent's head is skipped; the walk finds this agent's head one step up.
    assert got["head"] == ("share", my_keys["head"])
    assert got["encoderblock_1"] == ("share", their_keys["encoderblock_1"])
    assert candidate["threshold"] is None


def test_head_new_when_no_same_agent_ancestor(builder):
    config = make_config(share_probability=1.0)
    theirs = builder.add_path(OTHER, 16, 2, 10, parent=builder.root, locked=True)
    candidate = make_candidate(builder.system, theirs, ME, config, ds(num_classes=10), np.random.default_rng(4))
    assert actions(candidate)["head"] == ("new", None)


def test_posembed_from_ancestor_with_same_resolution(builder):
    config = make_config(share_probability=1.0)
    at_24 = builder.add_path(OTHER, 24, 2, 10, parent=builder.root, locked=True)
    at_16 = builder.add_path(OTHER, 16, 2, 10, parent=at_24, locked=True)
    candidate = make_candidate(builder.system, at_16, ME, config, ds(image_size=24), np.random.default_rng(5))
    posembed_24 = dict(zip(candidate_lib.component_names(2, 10), at_24.components))["posembed_input"]
    assert actions(candidate)["posembed_input"] == ("share", posembed_24)
    assert candidate["components"][2]["shapes"] == [[1, 37, 32]]


def test_posembed_resampled_from_root(builder):
    config = make_config(share_probability=1.0)
    candidate = make_candidate(builder.system, builder.root, ME, config, ds(image_size=20), np.random.default_rng(6))
    root_posembed = builder.root.components[2]
    assert actions(candidate)["posembed_input"] == ("resample", root_posembed)
    assert candidate["components"][2]["shapes"] == [[1, 26, 32]]


def test_deeper_candidate_gets_new_block(builder):
    config = make_config(share_probability=1.0)
    builder.root.hparams["num_layers"] = 3
    candidate = make_candidate(builder.system, builder.root, ME, config, ds(), np.random.default_rng(7))
    got = actions(candidate)
    assert got["encoderblock_2"] == ("new", None)
    assert [e["name"] for e in candidate["components"]][3:6] == ["encoderblock_0", "encoderblock_1", "encoderblock_2"]


def test_shallower_candidate_drops_top_blocks(builder):
    config = make_config(share_probability=1.0)
    builder.root.hparams["num_layers"] = 0
    candidate = make_candidate(builder.system, builder.root, ME, config, ds(), np.random.default_rng(8))
    assert [e["name"] for e in candidate["components"]] == ["embedding", "cls", "posembed_input", "encoder_norm", "head"]
    assert candidate["flops"] < make_candidate(
        builder.system, builder.add_path(OTHER, 16, 2, 0, parent=builder.root), ME, config, ds(),
        np.random.default_rng(8))["flops"]


def test_accounted_params_share_and_clone(builder):
    config = make_config(share_probability=1.0)
    mine = builder.add_path(ME, 16, 2, 10, parent=builder.root, locked=True)
    builder.system.lock_path(mine, OTHER)
    candidate = make_candidate(builder.system, mine, ME, config, ds(), np.random.default_rng(9))
    block = candidate_lib.num_params_of(expected_weight_shapes(VARIANT, 16, 10, "encoderblock_0"))
    norm = candidate_lib.num_params_of(expected_weight_shapes(VARIANT, 16, 10, "encoder_norm"))
    accounted = candidate_lib.accounted_params(builder.system, candidate, ME)
    shared_params = sum(
        candidate_lib.num_params_of(e["shapes"]) for e in candidate["components"] if e["action"] == "share"
    )
    # Shared components are locked by this agent and one other agent, so each costs half.
    assert accounted == pytest.approx(shared_params / 2 + norm)
    assert block > 0


def test_incompatible_parent_rejected(builder):
    config = make_config(share_probability=1.0).replace(variant="tiny/4")
    with pytest.raises(ValueError, match="belongs to an agent built on another ViT size"):
        make_candidate(builder.system, builder.root, ME, config, ds(), np.random.default_rng(0))

"""Tests of the singlepath agent configurations."""

import json

import pytest

from keras_multipath.agents import hparams as hp
from keras_multipath.agents.config import AgentConfig, get_agent_config


def test_reference_vit_l_config():
    config = get_agent_config("Vit")
    assert (config.variant, config.batch_size, config.root_image_size) == ("L/16", 16, 384)
    assert config.hparams_grids["num_layers"] == tuple(range(26))
    assert config.hparams_grids["ds_image_size"] == (224, 384)
    assert config.hparams_defaults["num_layers"] == 24
    assert config.force_mutations == ("clone:encoder_norm",)
    assert (config.num_samples_per_cycle, config.max_task_population_size) == (16, 5)
    assert config.scorer == {"scale_factor": 0.99, "base_accounted_params": 2.2e9, "base_flops": 3.8e12}
    # 300,000 examples between validations at batch 16, four validations.
    assert config.steps_between_validations(1_281_167) == 18_750
    assert config.total_steps(1_281_167) == 75_000
    assert config.total_steps(50_000) == 4 * 3_125


def test_reference_b_and_ti3_configs():
    vit_b, vit_t3 = get_agent_config("VitB"), get_agent_config("VitT3")
    assert (vit_b.variant, vit_b.batch_size, vit_b.hparams_defaults["ds_image_size"]) == ("B/16", 256, 80)
    assert vit_b.hparams_grids["num_layers"] == tuple(range(13))
    assert vit_b.hparams_grids["ds_image_size"] == (16, 32, 48, 64, 80, 96, 112)
    assert (vit_t3.variant, vit_t3.batch_size, vit_t3.hparams_defaults["num_layers"]) == ("Ti/16", 512, 3)
    assert vit_t3.hparams_grids["num_layers"] == (0, 1, 2, 3)


def test_common_defaults_and_grids():
    config = get_agent_config("VitB")
    assert config.hparams_defaults["_mu_"] == 0.2
    assert config.hparams_defaults["opt_lr"] == 0.02
    assert config.hparams_defaults["opt_momentum"] == 0.8
    assert config.hparams_defaults["opt_nesterov"] is True
    assert config.hparams_defaults["opt_lr_warmup_ratio"] == 0.02
    assert len(config.hparams_grids["_mu_"]) == 15
    assert config.hparams_grids["_mu_"][0] == 0.02
    assert config.hparams_grids["_mu_"][-1] == 0.3
    hp.check_on_grids(config.hparams_defaults, config.hparams_grids)


def test_cpu_config_budget():
    config = get_agent_config("cpu")
    assert config.variant == "micro/4"
    # A 10,000-image task with 8,000 training images: 4 candidates of 4 x 63 steps.
    assert config.total_steps(8_000) == 252
    assert config.num_samples_per_cycle * config.total_steps(8_000) == 1_008
    assert config.num_generations == 4


def test_validation_batching():
    config = get_agent_config("cpu")
    assert config.validation_batching(5_000) == (32, 31)
    assert config.validation_batching(100) == (25, 4)
    with pytest.raises(ValueError, match="validation split is empty"):
        config.validation_batching(0)


def test_config_json_round_trip():
    config = get_agent_config("Vit").replace(num_samples_per_cycle=4)
    data = json.loads(json.dumps(config.to_dict()))
    assert AgentConfig.from_dict(data) == config


def test_config_errors():
    with pytest.raises(ValueError, match="Unknown agent config 'vit'. Known configs: Vit, VitB"):
        get_agent_config("vit")
    with pytest.raises(ValueError, match="batch_size=0"):
        get_agent_config("cpu").replace(batch_size=0)
    with pytest.raises(ValueError, match="Hyperparameter 'opt_lr'"):
        config = get_agent_config("cpu")
        config.replace(hparams_defaults=dict(config.hparams_defaults, opt_lr=0.03))
    with pytest.raises(ValueError, match="Unknown ViT variant 'XL/16'"):
        get_agent_config("cpu").replace(variant="XL/16")

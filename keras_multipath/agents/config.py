"""Configurations of the singlepath agent.

Three reference configurations follow the muNet agents `Vit` (ViT-L/16 root), `VitB`
(ViT-B/16) and `VitT3` (ViT-Ti/16 capped to 3 blocks). `cpu` is a small configuration for a
random-init `micro/4` root on 16 px images, sized so that one cycle on a 10,000-image task
runs in a few minutes on 2 CPU cores.

Deviations from the reference code, each fixing a quirk:

- Root models are headless. The reference root carries an unused 1-class zero head, which
  no agent ever reuses because heads are inherited only within one agent.
- Candidate hyperparameters start from the agent's defaults updated with the parent's
  values, and a parent value outside this agent's grid moves to the nearest grid value
  (for example a 12-block parent for a grid 0..3). The reference copies the parent's
  hyperparameters as they are and fails on such parents.
- The SGD velocity is float32 (the reference stores it in bfloat16), and Keras' SGD folds
  the learning rate into the velocity, see `keras_multipath.training.schedule`.
- `cpu` scales the score constants to its model size so the penalties keep the weight they
  have for ViT-L (about 0.14 % for a fully cloned model, 0.1 % for its FLOPs). The reference
  `VitB`/`VitT3` keep the ViT-L constants, where the penalty is negligible.
"""

import dataclasses
import math

from keras_multipath.agents import hparams as hp
from keras_multipath.agents.scoring import Scorer
from keras_multipath.layers.variants import get_variant


@dataclasses.dataclass
class AgentConfig:
    """Settings of one singlepath agent class.

    Attributes:
        name: configuration name, for example "Vit" or "cpu".
        variant: ViT variant name of the root model (see `keras_multipath.layers.variants`).
        root_image_size: resolution of the root model in pixels.
        batch_size: training batch size.
        num_train_examples_between_validations_max: cap on the examples between two
            validations; the steps between validations are
            `ceil(min(num_train_examples, cap) / batch_size)`.
        num_validations_per_path_training: validations per candidate (training steps are
            this times the steps between validations).
        num_validation_examples_max: cap on the validation subset.
        num_samples_per_cycle: candidates per cycle.
        max_task_population_size: population kept after each generation.
        force_mutations: mutation actions that always apply.
        scorer: dict of `Scorer` arguments.
        hparams_defaults: default hyperparameters of a candidate.
        hparams_grids: mutation grids; `num_layers` and `ds_image_size` included.
        candidates_per_generation: candidates sharing one input pipeline (the reference uses
            one per accelerator; 1 trains the candidates of a cycle one after another).
    """

    name: str
    variant: str
    root_image_size: int
    batch_size: int
    num_train_examples_between_validations_max: int
    num_validations_per_path_training: int
    num_validation_examples_max: int
    num_samples_per_cycle: int
    max_task_population_size: int
    force_mutations: tuple
    scorer: dict
    hparams_defaults: dict
    hparams_grids: dict
    candidates_per_generation: int = 1

    def __post_init__(self):
        get_variant(self.variant)
        for field in (
            "batch_size",
            "num_train_examples_between_validations_max",
            "num_validations_per_path_training",
            "num_validation_examples_max",
            "num_samples_per_cycle",
            "max_task_population_size",
            "candidates_per_generation",
        ):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Expected {field} to be a positive int. Received: {field}={value!r}")
        self.force_mutations = tuple(self.force_mutations)
        self.hparams_grids = {key: tuple(grid) for key, grid in self.hparams_grids.items()}
        hp.check_on_grids(self.hparams_defaults, self.hparams_grids)
        Scorer(**self.scorer)

    @property
    def num_generations(self):
        """Generations per cycle, `ceil(num_samples_per_cycle / candidates_per_generation)`."""
        return math.ceil(self.num_samples_per_cycle / self.candidates_per_generation)

    def make_scorer(self):
        return Scorer(**self.scorer)

    def steps_between_validations(self, num_train_examples):
        """Return the training steps between two validations for a training split size."""
        examples = min(int(num_train_examples), self.num_train_examples_between_validations_max)
        return max(1, math.ceil(examples / self.batch_size))

    def total_steps(self, num_train_examples):
        """Return the training steps of one candidate."""
        return self.num_validations_per_path_training * self.steps_between_validations(
            num_train_examples
        )

    def validation_batching(self, num_validation_examples):
        """Return `(batch_size, num_batches)` of the fixed validation subset.

        The subset has `min(num_validation_examples_max, |val|)` examples. When that is
        smaller than the cap, the batch is shrunk to `floor(n / ceil(n / batch_size))` so
        that equal batches cover almost all of it.
        """
        n = int(num_validation_examples)
        if n < 1:
            raise ValueError(f"The validation split is empty (num_validation_examples={n}).")
        if n >= self.num_validation_examples_max:
            n = self.num_validation_examples_max
            batch = min(self.batch_size, n)
            return batch, n // batch
        num_batches = math.ceil(n / self.batch_size)
        return n // num_batches, num_batches

    def to_dict(self):
        """Return a JSON-able dict; `AgentConfig.from_dict` restores it."""
        result = dataclasses.asdict(self)
        result["force_mutations"] = list(self.force_mutations)
        result["hparams_grids"] = {key: list(grid) for key, grid in self.hparams_grids.items()}
        return result

    @classmethod
    def from_dict(cls, config):
        return cls(**config)

    def replace(self, **changes):
        """Return a copy with some fields changed, for example `num_samples_per_cycle`."""
        return dataclasses.replace(self, **changes)


def _config(name, variant, image_size, image_sizes, batch_size, num_layers, **overrides):
    size = get_variant(variant)
    defaults = dict(hp.COMMON_DEFAULTS, num_layers=num_layers, ds_image_size=image_size)
    grids = dict(
        hp.COMMON_GRIDS,
        num_layers=tuple(range(0, overrides.pop("max_layers", size["num_layers"]) + 1)),
        ds_image_size=tuple(image_sizes),
    )
    settings = dict(
        name=name,
        variant=variant,
        root_image_size=image_size,
        batch_size=batch_size,
        num_train_examples_between_validations_max=300_000,
        num_validations_per_path_training=4,
        num_validation_examples_max=10_000,
        num_samples_per_cycle=16,
        max_task_population_size=5,
        force_mutations=("clone:encoder_norm",),
        scorer=dict(scale_factor=0.99, base_accounted_params=2.2e9, base_flops=3.8e12),
        hparams_defaults=defaults,
        hparams_grids=grids,
    )
    settings.update(overrides)
    return AgentConfig(**settings)


def _reference_configs():
    sizes_16_to_112 = tuple(range(16, 113, 16))
    return {
        # ViT-L/16 may grow one block beyond the root (a new random `encoderblock_24`).
        "Vit": _config("Vit", "L/16", 384, (224, 384), 16, 24, max_layers=25),
        "VitB": _config("VitB", "B/16", 80, sizes_16_to_112, 256, 12),
        "VitT3": _config("VitT3", "Ti/16", 32, sizes_16_to_112, 512, 3, max_layers=3),
        # micro/4 headless at 16 px: about 19.6k parameters and 0.74 MFLOPs per image, so the
        # score constants are scaled by 2.2e9 / 303.7e6 and 3.8e12 / 383.7e9 (the ViT-L
        # ratios). 4 candidates of 4 x 63 steps of batch 32 per cycle.
        "cpu": _config(
            "cpu",
            "micro/4",
            16,
            (8, 12, 16, 20, 24),
            32,
            2,
            num_train_examples_between_validations_max=2_000,
            num_validation_examples_max=1_000,
            num_samples_per_cycle=4,
            scorer=dict(scale_factor=0.99, base_accounted_params=1.4e5, base_flops=7.3e6),
        ),
    }


AGENT_CONFIG_NAMES = ("Vit", "VitB", "VitT3", "cpu")


def get_agent_config(name):
    """Return a new `AgentConfig` by name: "Vit", "VitB", "VitT3" or "cpu"."""
    configs = _reference_configs()
    if name not in configs:
        raise ValueError(f"Unknown agent config '{name}'. Known configs: {', '.join(configs)}.")
    return configs[name]

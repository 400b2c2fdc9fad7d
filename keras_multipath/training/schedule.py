"""Learning-rate schedule and optimizer of the candidate training protocol."""

import math

import keras
from keras import ops

MIN_LR_FRACTION = 1e-3
CLIP_GLOBAL_NORM = 1.0


@keras.saving.register_keras_serializable(package="keras_multipath")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from `learning_rate / 1000` then cosine decay to 0.

    The warm-up steps count inside `total_steps`: for `step < warmup_steps` the rate grows
    linearly from `learning_rate / 1000` to `learning_rate`, then it follows half a cosine
    from `learning_rate` at `warmup_steps` down to 0 at `total_steps`, and stays 0 after.

    Args:
        learning_rate: peak learning rate.
        total_steps: training steps T, warm-up included.
        warmup_steps: length of the linear warm-up, `0 <= warmup_steps <= total_steps`.

    Call arguments:
        step: the optimizer iteration (a scalar tensor or int).

    Returns:
        The learning rate as a float32 scalar.

    Example:

    >>> schedule = WarmupCosine(0.1, total_steps=100, warmup_steps=10)
    >>> round(float(schedule(10)), 6)
    0.1
    """

    def __init__(self, learning_rate, total_steps, warmup_steps=0):
        if not learning_rate > 0:
            raise ValueError(f"Expected learning_rate > 0. Received: learning_rate={learning_rate}")
        if int(total_steps) < 1:
            raise ValueError(f"Expected total_steps >= 1. Received: total_steps={total_steps}")
        if not 0 <= int(warmup_steps) <= int(total_steps):
            raise ValueError(
                "Expected 0 <= warmup_steps <= total_steps. Received: "
                f"warmup_steps={warmup_steps}, total_steps={total_steps}"
            )
        self.learning_rate = float(learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        peak = self.learning_rate
        start = peak * MIN_LR_FRACTION
        warmup = float(max(self.warmup_steps, 1))
        warmup_lr = start + (peak - start) * step / warmup
        decay_steps = float(max(self.total_steps - self.warmup_steps, 1))
        progress = ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        cosine_lr = 0.5 * peak * (1.0 + ops.cos(math.pi * progress))
        return ops.where(step < self.warmup_steps, warmup_lr, cosine_lr)

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
        }


def make_optimizer(hparams, total_steps):
    """Build the SGD optimizer of a candidate from its hyperparameters.

    SGD with momentum `opt_momentum` and Nesterov flag `opt_nesterov`, gradients clipped to
    global norm 1.0, learning rate `WarmupCosine(opt_lr, total_steps,
    int(opt_lr_warmup_ratio * total_steps))`.

    NOTE: Keras' SGD multiplies the learning rate into the velocity, while Optax (the
    reference) applies it after the momentum trace. Both agree for a constant rate and
    differ slightly under a schedule. The velocity is kept in the variable dtype
    (float32), not bfloat16 as in the reference.

    Args:
        hparams: dict with `opt_lr`, `opt_lr_warmup_ratio`, `opt_momentum`,
            `opt_nesterov` and optionally `opt_lr_schedule` (only "cosine").
        total_steps: training steps of the candidate.

    Returns:
        A `keras.optimizers.SGD`.
    """
    missing = [
        key
        for key in ("opt_lr", "opt_lr_warmup_ratio", "opt_momentum", "opt_nesterov")
        if key not in hparams
    ]
    if missing:
        raise ValueError(f"Missing optimizer hyperparameters {missing} in {sorted(hparams)}.")
    schedule_name = hparams.get("opt_lr_schedule", "cosine")
    if schedule_name != "cosine":
        raise ValueError(
            f"Unsupported opt_lr_schedule {schedule_name!r}. Only 'cosine' is implemented."
        )
    warmup_steps = int(float(hparams["opt_lr_warmup_ratio"]) * int(total_steps))
    schedule = WarmupCosine(hparams["opt_lr"], total_steps, warmup_steps)
    return keras.optimizers.SGD(
        learning_rate=schedule,
        momentum=float(hparams["opt_momentum"]),
        nesterov=bool(hparams["opt_nesterov"]),
        global_clipnorm=CLIP_GLOBAL_NORM,
    )

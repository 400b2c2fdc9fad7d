"""`PathTuner`: the keras-tuner worker that trains one candidate path per trial.

`run_trial` reads the candidate description, the trial value `candidate` (a JSON string
made by the agent's oracle). It assembles a `keras.Model` whose frozen components are the
shared layer objects of the system and whose cloned or new components are fresh layers. It
trains the model with the candidate protocol:

- softmax cross-entropy on integer labels, mean over the batch;
- SGD with momentum and Nesterov flag, global-norm clipping at 1.0, linear warm-up from
  `lr / 1000` then cosine decay to 0 (`keras_multipath.training.schedule`);
- `total_steps = num_validations * steps_between_validations`, with a validation after
  every `steps_between_validations` steps on a fixed validation subset;
- after each validation the score is computed, and when it is strictly greater than the
  best so far (initially the parent's score for a parent of the same agent, else -inf) the
  trainable components are snapshotted;
- at the end an improved candidate gets its best snapshot back and its new components are
  staged in the trial folder for the agent to publish.

A loss that becomes NaN or infinite ends the candidate as a failed trial
(`keras_tuner.errors.FailedTrialError`) with the step in the message; the search goes on.
The tuner never calls `keras.backend.clear_session()`, because the shared component layers
must stay alive between trials. Only the layers of cloned and new components are trainable,
so only their weights reach the optimizer.

Input pipelines are reused across trials when every iteration of them yields the same
stream (`keras_multipath.data.is_replayable`): all candidates read one validation pipeline
per batch size and resolution, and candidates of one generation that share a batch size,
resolution and augmentations read one training pipeline. Building a pipeline traces its
preprocessing functions: about 0.1 s per augmented training pipeline on one idle CPU core
(measured on the digits task).
"""

import collections
import json
import math
import time

import keras
import numpy as np
from absl import logging
from keras_tuner.errors import FailedTrialError
from keras_tuner.src.engine import base_tuner

from keras_multipath.agents import candidate as candidate_lib
from keras_multipath.agents import staging
from keras_multipath.agents.scoring import Scorer
from keras_multipath.agents.singlepath import CANDIDATE_VALUE
from keras_multipath.data import is_replayable, make_dataset, resolve_ds_hparams
from keras_multipath.layers.variants import get_variant
from keras_multipath.layers.vit import (
    ClassToken,
    EncoderBlock,
    EncoderNorm,
    Head,
    PatchEmbedding,
    PositionEmbedding,
    apply_vit_components,
    resample_position_embedding,
)
from keras_multipath.system import multipath_model, parse_key
from keras_multipath.system.assembly import Assembler
from keras_multipath.training.schedule import make_optimizer

# Input pipelines a `PathTuner` keeps for reuse by later trials.
MAX_CACHED_DATASETS = 8


class _NonFiniteLoss(Exception):
    """Raised inside `fit` at the first NaN or infinite training loss."""

    def __init__(self, step, loss):
        super().__init__(step, loss)
        self.step, self.loss = step, loss


class _LossGuard(keras.callbacks.Callback):
    """Interrupt training at the first non-finite training loss, before any validation."""

    def __init__(self):
        super().__init__()
        self.step = 0

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        loss = float(np.asarray((logs or {}).get("loss", 0.0)))
        if not math.isfinite(loss):
            raise _NonFiniteLoss(self.step, loss)


class _Validator(keras.callbacks.Callback):
    """Score each validation and snapshot the trainable layers on a strict improvement."""

    def __init__(self, scorer, accounted_params, flops, threshold, trainable_layers):
        super().__init__()
        self.scorer = scorer
        self.accounted_params = accounted_params
        self.flops = flops
        self.best_score = -math.inf if threshold is None else float(threshold)
        self.trainable_layers = trainable_layers
        self.evals = []
        self.snapshot = None

    def on_epoch_end(self, epoch, logs=None):
        quality = float(np.asarray((logs or {}).get("val_accuracy", float("nan"))))
        score = self.scorer.score(quality, self.accounted_params, self.flops)
        self.evals.append({"quality": quality, "score": score})
        if score > self.best_score:
            self.best_score = score
            self.snapshot = {
                key: [np.array(keras.ops.convert_to_numpy(w)) for w in layer.weights]
                for key, layer in self.trainable_layers.items()
            }


class PathTuner(base_tuner.BaseTuner):
    """Train the candidates proposed by a `SinglepathOracle` on one task.

    Args:
        oracle: a `keras_multipath.agents.SinglepathOracle`.
        task: the `keras_multipath.data.Task` of the oracle's agent.
        directory, project_name, overwrite: keras-tuner project folder settings; rerunning
            with the same folder resumes the search.
        verbose: Keras `fit` verbosity inside trials.

    Example:

    >>> oracle = SinglepathOracle(store, "mnist_5k", 10, 4000, get_agent_config("cpu"))
    >>> tuner = PathTuner(oracle, get_task("mnist_5k"), directory="/tmp/search")
    >>> tuner.search()
    """

    def __init__(self, oracle, task, directory=None, project_name=None, overwrite=False,
                 verbose=0, **kwargs):
        self.task = task
        self.store = oracle.store
        self.verbose = verbose
        self._assembler = None
        self._datasets = collections.OrderedDict()
        super().__init__(oracle, directory=directory, project_name=project_name,
                         overwrite=overwrite, **kwargs)
        oracle.test_evaluator = self.evaluate_test

    # ----------------------------------------------------------------------------------------
    # Layers of components.

    @property
    def assembler(self):
        """The process's one `Assembler`, pointed at the oracle's current system.

        The oracle reloads the system at every cycle start. The assembler and its layer cache
        outlive that reload, so a component keeps one layer object for the whole process.
        `Assembler.layer` freezes a cached layer whose component has been published since.
        """
        system = self.oracle.system
        if self._assembler is None:
            self._assembler = Assembler(self.store, system)
        elif self._assembler.system is not system:
            self._assembler.system = system
        return self._assembler

    def _new_layer(self, entry, image_size, num_classes):
        size = get_variant(self.oracle.config.variant)
        name, d = entry["name"], size["hidden_dim"]
        patch = size["patch_size"]
        grid = (image_size // patch, image_size // patch)
        tokens = (None, 1 + grid[0] * grid[1], d)
        if name == "embedding":
            layer, input_shape = PatchEmbedding(d, patch), (None, image_size, image_size, 3)
        elif name == "cls":
            layer, input_shape = ClassToken(d), (None, grid[0] * grid[1], d)
        elif name == "posembed_input":
            layer, input_shape = PositionEmbedding(grid, d), tokens
        elif name.startswith("encoderblock_"):
            layer, input_shape = EncoderBlock(d, size["num_heads"], size["mlp_dim"]), tokens
        elif name == "encoder_norm":
            layer, input_shape = EncoderNorm(), tokens
        elif name == "head":
            layer, input_shape = Head(num_classes), (None, d)
        else:
            raise ValueError(f"Unknown ViT component name {name!r}.")
        layer.build(input_shape)
        return layer

    def _candidate_layer(self, entry, image_size, num_classes, agent_id):
        """Return the layer of one component of a candidate, registering new components."""
        assembler = self.assembler
        action, key = entry["action"], entry["key"]
        if action == candidate_lib.SHARE:
            return assembler.layer(key)
        if key in assembler.system.components:
            # A retried trial: the component was registered by the interrupted attempt.
            assembler.forget(key)
        ids = _PreallocatedId(agent_id, parse_key(key)[1])
        if action == candidate_lib.CLONE:
            self._ensure_source_layer(entry["source"])
            component = assembler.clone(entry["source"], ids)
        else:
            layer = self._new_layer(entry, image_size, num_classes)
            if action == candidate_lib.RESAMPLE:
                source = assembler.layer(entry["source"])
                values = keras.ops.convert_to_numpy(source.embeddings)
                layer.set_weights(
                    [resample_position_embedding(values, layer.grid_size, source.grid_size)]
                )
            component = assembler.create_component(entry["name"], layer, ids)
        if component.key != key:
            raise RuntimeError(f"Component id mismatch: {component.key!r} != {key!r}.")
        layer = assembler.layer(key)
        layer.trainable = True
        return layer

    def _ensure_source_layer(self, key):
        """Make the layer of a clone source available when it is neither cached nor stored
        in the loaded system (a component of this cycle written by an earlier process)."""
        assembler = self.assembler
        if key in assembler.cached_keys or assembler.system.is_stored(key):
            return
        trial_id = self.oracle.search["component_trials"].get(key)
        if trial_id is not None:
            weights = staging.read_staged_components(self.get_trial_dir(trial_id))[1][key]
        else:
            weights = self.store.read_weights(key)
        assembler.restore(key, weights)

    def assemble(self, candidate):
        """Build the model of a candidate description.

        Returns:
            `(model, trainable_layers)`: a `keras.Model` from images to logits and
            {component key: layer} of its cloned, resampled and new components. A
            multipath candidate's model takes {resolution key: images}.
        """
        if candidate.get("kind") == "multipath":
            return multipath_model.assemble_candidate(
                self.assembler, candidate, ensure_layer=self._ensure_source_layer
            )
        hparams = candidate["hparams"]
        image_size = int(hparams["ds_image_size"])
        num_classes = int(hparams["num_classes"])
        layers, trainable = {}, {}
        for entry in candidate["components"]:
            layer = self._candidate_layer(entry, image_size, num_classes, candidate["agent_id"])
            layers[entry["name"]] = layer
            if entry["action"] != candidate_lib.SHARE:
                trainable[entry["key"]] = layer
        inputs = keras.Input((image_size, image_size, 3))
        model = keras.Model(inputs, apply_vit_components(layers, inputs))
        return model, trainable

    def path_model(self, path):
        """Build the `keras.Model` of a path of the current system."""
        for key in path.components:
            self._ensure_source_layer(key)
        return self.assembler.build_model(path)

    # ----------------------------------------------------------------------------------------
    # Trials.

    def run_trial(self, trial, *args, **kwargs):
        previous = self.oracle.finished_result(trial.trial_id)
        if previous is not None:
            if previous["status"] != "COMPLETED":
                raise FailedTrialError(previous.get("message") or "The candidate failed earlier.")
            return previous["metrics"]

        candidate = json.loads(trial.hyperparameters.values[CANDIDATE_VALUE])
        started = time.time()
        model, trainable = self.assemble(candidate)
        hparams = candidate["hparams"]
        image_size = _image_sizes(hparams["ds_image_size"])
        total_steps = int(candidate["total_steps"])
        steps = int(candidate["steps_between_validations"])
        num_validations = max(1, total_steps // steps)

        model.compile(
            optimizer=make_optimizer(hparams, total_steps),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )
        train = self.dataset(
            "train", candidate["batch_size"], image_size, ds_hparams=hparams,
            seed=candidate["data_seed"],
        )
        validation = self.dataset(
            "validation", candidate["batch_size"], image_size,
            max_validation_examples=candidate["num_validation_examples_max"],
        )
        validator = _Validator(
            Scorer(**candidate["scorer"]), candidate["accounted_params"], candidate["flops"],
            candidate["threshold"], trainable,
        )
        try:
            model.fit(
                train, epochs=num_validations, steps_per_epoch=steps, validation_data=validation,
                callbacks=[_LossGuard(), validator], verbose=self.verbose, shuffle=False,
            )
        except _NonFiniteLoss as error:
            self._forget_candidate(trainable)
            raise FailedTrialError(
                f"Candidate {candidate['path_key']} failed: the training loss became "
                f"{error.loss} at step {error.step} of {total_steps} "
                f"(opt_lr={hparams['opt_lr']}). The candidate is discarded."
            ) from None

        improved = validator.snapshot is not None
        qualities = [e["quality"] for e in validator.evals]
        quality = max(qualities)
        if improved:
            score = validator.best_score
            for key, layer in trainable.items():
                layer.set_weights(validator.snapshot[key])
            self._stage(trial.trial_id, trainable)
        else:
            score = validator.evals[int(np.argmax(qualities))]["score"]
            self._forget_candidate(trainable)
        num_trainable = sum(
            candidate_lib.num_params_of(e["shapes"]) for e in candidate["components"]
            if e["action"] != candidate_lib.SHARE
        )
        metrics = {
            "score": float(score),
            "quality": float(quality),
            "improved": float(improved),
            "accounted_params": float(candidate["accounted_params"]),
            "flops": float(candidate["flops"]),
            "num_params": float(model.count_params()),
            "num_trainable_params": float(num_trainable),
            "train_seconds": time.time() - started,
        }
        if candidate.get("kind") == "multipath":
            metrics.update(multipath_model.multipath_metrics(
                model, candidate["trained_params"], candidate["activated_params"], validation
            ))
        return metrics

    def dataset(self, split, batch_size, image_sizes, ds_hparams=None, seed=0, **kwargs):
        """Return `make_dataset(self.task, split, ...)`, reusing an equal replayable one.

        At most `MAX_CACHED_DATASETS` pipelines are kept, the least recently used going
        first, and a training pipeline of a new seed (a new generation) drops the training
        pipelines of other seeds, which no later candidate reads.
        """
        ds_hparams = {
            key: value for key, value in resolve_ds_hparams(ds_hparams).items()
            if key != "ds_image_size"
        }
        if not is_replayable(self.task, split):
            return make_dataset(self.task, split, batch_size, image_sizes=image_sizes,
                                ds_hparams=ds_hparams, seed=seed, **kwargs)
        key = json.dumps([split, batch_size, image_sizes, ds_hparams, seed, kwargs],
                         sort_keys=True)
        if key not in self._datasets:
            if split == "train":
                for old_key, (old_split, _, old_seed) in list(self._datasets.items()):
                    if old_split == "train" and old_seed != seed:
                        del self._datasets[old_key]
            dataset = make_dataset(self.task, split, batch_size, image_sizes=image_sizes,
                                   ds_hparams=ds_hparams, seed=seed, **kwargs)
            self._datasets[key] = (split, dataset, seed)
        self._datasets.move_to_end(key)
        while len(self._datasets) > MAX_CACHED_DATASETS:
            self._datasets.popitem(last=False)
        return self._datasets[key][1]

    def _stage(self, trial_id, trainable):
        """Write the new components of an improved candidate into the trial folder."""
        system = self.assembler.system
        records = [system.component(key) for key in trainable]
        weights = {
            key: [np.array(w) for w in layer.get_weights()] for key, layer in trainable.items()
        }
        staging.stage_components(self.get_trial_dir(trial_id), records, weights)

    def _forget_candidate(self, trainable):
        """Drop the layers and records of a candidate that did not join the population."""
        for key in trainable:
            self.assembler.forget(key)

    def evaluate_test(self, path):
        """Return the accuracy of `path` on the whole test split (weighted by examples)."""
        model = self.path_model(path)
        model.compile(
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )
        test = self.dataset(
            "test", self.oracle.config.batch_size, _image_sizes(path.hparams["ds_image_size"])
        )
        result = float(model.evaluate(test, verbose=0, return_dict=True)["accuracy"])
        logging.info("Path %s test accuracy %.4f.", path.key, result)
        return result

    def save_model(self, trial_id, model, step=0):
        """Models are not saved per trial: improved candidates stage their new components."""

    def load_model(self, trial):
        """Return the frozen model of the trial's candidate, when it joined the system."""
        candidate = json.loads(trial.hyperparameters.values[CANDIDATE_VALUE])
        return self.path_model(self.oracle.system.path(candidate["path_key"]))



def _image_sizes(ds_image_size):
    """Return `make_dataset`'s image_sizes for a path's `ds_image_size`: an int, or a list
    (a multipath path's resolutions, giving {str(size): images} inputs)."""
    if isinstance(ds_image_size, (list, tuple)):
        return [int(size) for size in ds_image_size]
    return int(ds_image_size)


class _PreallocatedId:
    """Id source for `Assembler.clone`/`create_component` that hands out the id the oracle
    already allocated for the component."""

    def __init__(self, agent_id, id_):
        self.agent_id = agent_id
        self._id = id_

    def new_component_id(self):
        return self._id


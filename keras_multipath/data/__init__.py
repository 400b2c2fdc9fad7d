"""Tasks and input pipelines: offline datasets, TFDS, image folders, numpy arrays."""

from keras_multipath.data.arrays import from_arrays
from keras_multipath.data.augment import DS_HPARAM_DEFAULTS, preprocess_image, resolve_ds_hparams
from keras_multipath.data.folder import from_image_folder
from keras_multipath.data.offline import OFFLINE_TASKS, MissingDatasetError
from keras_multipath.data.pipeline import is_replayable, make_dataset, validation_batching
from keras_multipath.data.registry import get_task, list_tasks
from keras_multipath.data.task import SPLITS, Task, TaskSplit, stratified_split
from keras_multipath.data.tfds_tasks import get_tfds_task, split_table

__all__ = [
    "DS_HPARAM_DEFAULTS",
    "MissingDatasetError",
    "OFFLINE_TASKS",
    "SPLITS",
    "Task",
    "TaskSplit",
    "from_arrays",
    "from_image_folder",
    "get_task",
    "get_tfds_task",
    "is_replayable",
    "list_tasks",
    "make_dataset",
    "preprocess_image",
    "resolve_ds_hparams",
    "split_table",
    "stratified_split",
    "validation_batching",
]

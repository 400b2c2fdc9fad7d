"""TensorFlow Datasets (TFDS) image classification tasks and their split rules.

Validation always comes from labelled data, and test data is never used for selection.
Splits of the datasets listed in `SPLIT_TABLE` follow the µ4Net reference; every other
dataset follows the default rule:

- test: the dataset's `test` split if it has one, else `train[0%:5%]`;
- validation: the `validation` split if it has one, else the next 5 % slice of `train`
  (`train[5%:10%]` when test took the first slice, `train[0%:5%]` otherwise);
- train: `train` minus the slices taken above.

imagenet_v2 and cifar10_1 are the validation sets of imagenet2012 and cifar10, so they are
not tasks themselves. VTAB tasks, which need the task_adaptation label functions, are not
covered here.
"""

from absl import logging

# Each entry maps split -> list of (TFDS dataset, split expression) parts, concatenated in
# order. None as the dataset means the task's own dataset.
_FIRST_HALF_VALIDATION = {
    "train": [(None, "train")],
    "validation": [(None, "validation[:50%]")],
    "test": [(None, "validation[50%:]")],
}
_TEST_ONLY = {
    "train": [(None, "test[10%:]")],
    "validation": [(None, "test[5%:10%]")],
    "test": [(None, "test[:5%]")],
}
SPLIT_TABLE = {
    "imagenet2012": {
        "train": [(None, "train")],
        "validation": [("imagenet_v2", "test")],
        "test": [(None, "validation")],
    },
    "cifar10": {
        "train": [(None, "train")],
        "validation": [("cifar10_1", "test")],
        "test": [(None, "test")],
    },
    "cifar100": {
        "train": [(None, "train[:98%]")],
        "validation": [(None, "train[98%:]")],
        "test": [(None, "test")],
    },
    "visual_domain_decathlon": _FIRST_HALF_VALIDATION,
    "i_naturalist2017": _FIRST_HALF_VALIDATION,
    "i_naturalist2018": _FIRST_HALF_VALIDATION,
    "places365_small": _FIRST_HALF_VALIDATION,
    "cmaterdb": {
        "train": [(None, "train[20%:]")],
        "validation": [(None, "train[:20%]")],
        "test": [(None, "test")],
    },
    "omniglot": {
        "train": [(None, "train")],
        "validation": [(None, "small1")],
        "test": [(None, "small2")],
    },
    "controlled_noisy_web_labels": {
        "train": [(None, "train_00")],
        "validation": [(None, "validation[:50%]")],
        "test": [(None, "validation[50%:]")],
    },
    "cycle_gan": {
        "train": [(None, "trainA[10%:]+trainB[10%:]")],
        "validation": [(None, "trainA[:10%]+trainB[:10%]")],
        "test": [(None, "testA+testB")],
    },
    "imagenet_a": _TEST_ONLY,
    "imagenet_r": _TEST_ONLY,
    "imagenet_sketch": _TEST_ONLY,
    "siscore": _TEST_ONLY,
    "pet_finder": {
        "train": [(None, "train[10%:]")],
        "validation": [(None, "train[5%:10%]")],
        "test": [(None, "train[:5%]")],
    },
    "quickdraw_bitmap": {
        "train": [(None, "train[20000:]")],
        "validation": [(None, "train[10000:20000]")],
        "test": [(None, "train[:10000]")],
    },
    "stanford_online_products": {
        "train": [(None, "train")],
        "validation": [(None, "test[:10000]")],
        "test": [(None, "test[10000:]")],
    },
}
# Datasets whose class label is not the supervised label of their TFDS metadata.
LABEL_KEYS = {"stanford_online_products": "super_class_id"}
VALIDATION_ONLY_DATASETS = {"imagenet_v2": "imagenet2012", "cifar10_1": "cifar10"}


def base_name(name):
    """Return the dataset family of a TFDS name: "cycle_gan/maps:3.0.0" -> "cycle_gan"."""
    return name.split(":")[0].split("/")[0]


def split_table(name, available_splits=None):
    """Return the train, validation and test split expressions of a TFDS dataset.

    Args:
        name: TFDS name, optionally with config and version ("cmaterdb/bangla:1.0.0").
        available_splits: names of the dataset's splits, needed for datasets that follow the
            default rule.

    Returns:
        dict from "train", "validation", "test" to a list of `(dataset, split expression)`
        parts, where `dataset` is the TFDS name to read from.

    Raises:
        ValueError: for imagenet_v2 or cifar10_1, or when the default rule needs
            `available_splits` and they are missing or lack a `train` split.
    """
    family = base_name(name)
    if family in VALIDATION_ONLY_DATASETS:
        raise ValueError(
            f"'{name}' is the validation set of '{VALIDATION_ONLY_DATASETS[family]}' and cannot "
            f"be a task of its own. Use '{VALIDATION_ONLY_DATASETS[family]}'."
        )
    if family in SPLIT_TABLE:
        return {
            split: [(dataset or name, expression) for dataset, expression in parts]
            for split, parts in SPLIT_TABLE[family].items()
        }

    if available_splits is None:
        raise ValueError(
            f"TFDS dataset '{name}' follows the default split rule, which needs its split names. "
            f"Prepare the dataset (tfds.builder(name).download_and_prepare()) or pass "
            f"available_splits=[...]."
        )
    available = set(available_splits)
    if "train" not in available:
        raise ValueError(
            f"TFDS dataset '{name}' has no 'train' split (it has {sorted(available)}), so the "
            f"default split rule cannot carve a validation split from it."
        )
    offset = 0
    if "test" in available:
        test = "test"
    else:
        test, offset = "train[0%:5%]", 5
    if "validation" in available:
        validation = "validation"
    else:
        validation, offset = f"train[{offset}%:{offset + 5}%]", offset + 5
    train = f"train[{offset}%:]" if offset else "train"
    return {"train": [(name, train)], "validation": [(name, validation)], "test": [(name, test)]}


def get_tfds_task(name, data_dir=None, available_splits=None, image_key="image", label_key=None):
    """Build a `Task` from a prepared TFDS dataset.

    The dataset must already be prepared in `data_dir` (or the TFDS default folder): this
    function never downloads. Examples are read lazily, one `tf.data` pipeline per split.

    Args:
        name: TFDS name, e.g. "cifar100" or "cmaterdb/bangla".
        data_dir: TFDS data folder.
        available_splits: split names to use for the default rule when the dataset's
            metadata lists none (as under `tfds.testing.mock_data`).
        image_key: feature holding the image.
        label_key: feature holding the class label; defaults to the table `LABEL_KEYS`, then
            to the dataset's supervised label, then "label".

    Returns:
        A `Task` named "tfds:<name>".
    """
    import tensorflow_datasets as tfds

    from keras_multipath.data.task import Task, TaskSplit

    builder = tfds.builder(name, data_dir=data_dir)
    info = builder.info
    prepared_splits = list(info.splits.keys())
    table = split_table(name, prepared_splits or available_splits)

    if label_key is None:
        supervised = info.supervised_keys
        label_key = LABEL_KEYS.get(base_name(name)) or (supervised[1] if supervised else "label")
    for key in (image_key, label_key):
        if key not in info.features:
            raise ValueError(
                f"TFDS dataset '{name}' has no feature '{key}'. Its features: {sorted(info.features)}"
            )
    label_feature = info.features[label_key]
    num_classes = getattr(label_feature, "num_classes", None)
    if num_classes is None:
        raise ValueError(f"Feature '{label_key}' of TFDS dataset '{name}' is not a ClassLabel.")
    image_shape = tuple(info.features[image_key].shape)
    class_names = getattr(label_feature, "names", None)

    builders = {name: builder}

    def part_builder(dataset_name):
        if dataset_name not in builders:
            builders[dataset_name] = tfds.builder(dataset_name, data_dir=data_dir)
        return builders[dataset_name]

    def make_dataset_fn(parts):
        def dataset_fn(shuffle_files, seed):
            datasets = []
            for dataset_name, expression in parts:
                read_config = tfds.ReadConfig(shuffle_seed=seed) if seed is not None else None
                dataset = part_builder(dataset_name).as_dataset(
                    split=expression, shuffle_files=shuffle_files, read_config=read_config
                )
                datasets.append(dataset.map(lambda ex: (ex[image_key], ex[label_key])))
            combined = datasets[0]
            for dataset in datasets[1:]:
                combined = combined.concatenate(dataset)
            return combined

        return dataset_fn

    splits = {}
    for split, parts in table.items():
        dataset_fn = make_dataset_fn(parts)
        size = _count_examples(part_builder, parts, dataset_fn)
        splits[split] = TaskSplit(dataset_fn=dataset_fn, size=size)
    logging.info("TFDS task %s: %s", name, {s: p for s, p in table.items()})
    return Task(f"tfds:{name}", num_classes, image_shape, splits, class_names, source=f"TFDS {name}")


def _count_examples(part_builder, parts, dataset_fn):
    total = 0
    for dataset_name, expression in parts:
        split_infos = part_builder(dataset_name).info.splits
        if not split_infos:
            # Without split metadata (mocked or unprepared datasets) the examples are counted
            # by reading the split once.
            return int(dataset_fn(False, None).reduce(0, lambda count, *_: count + 1).numpy())
        total += split_infos[expression].num_examples
    return total

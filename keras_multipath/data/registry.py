"""Look up tasks by name: offline datasets, TFDS datasets and image folders."""

from keras_multipath.data import offline

TFDS_PREFIX = "tfds:"
FOLDER_PREFIX = "folder:"
SOURCES = ("offline", "tfds", "folder")


def list_tasks():
    """Return the names of the offline tasks, which `get_task` loads with no download."""
    return sorted(offline.OFFLINE_TASKS)


def get_task(name, source=None, **kwargs):
    """Return the `Task` called `name`.

    A name "tfds:<dataset>" (or `source="tfds"`) reads a prepared TFDS dataset with the
    split rules of `keras_multipath.data.tfds_tasks`. A name "folder:<path>" (or
    `source="folder"`) reads an image folder. Any other name must be one of `list_tasks()`.

    Args:
        name: task name.
        source: "offline", "tfds" or "folder". By default the name's prefix ("tfds:" or
            "folder:") selects it, and a name without a prefix is "offline".
        **kwargs: passed to the loader: `seed` (and `image_size` for ELPV, `data_dir` for
            Fashion-MNIST) for offline tasks, the arguments of `get_tfds_task` (e.g.
            `data_dir`) for TFDS, and of `from_image_folder` for folders.

    Raises:
        ValueError: for an unknown name or source.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"Expected a task name string. Received: {name!r}")
    if source is None:
        if name.startswith(TFDS_PREFIX):
            source, name = "tfds", name[len(TFDS_PREFIX):]
        elif name.startswith(FOLDER_PREFIX):
            source, name = "folder", name[len(FOLDER_PREFIX):]
        else:
            source = "offline"
    if source not in SOURCES:
        raise ValueError(f"Unknown task source '{source}'. Known sources: {', '.join(SOURCES)}")
    if not name:
        if source == "tfds":
            missing, example = "dataset name", "'tfds:cifar10'"
        else:
            missing, example = "folder path", "'folder:/data/flowers'"
        raise ValueError(
            f"Missing the {missing} after the '{source}:' prefix. Pass a name such as {example}."
        )

    if source == "tfds":
        from keras_multipath.data.tfds_tasks import get_tfds_task

        return get_tfds_task(name, **kwargs)
    if source == "folder":
        from keras_multipath.data.folder import from_image_folder

        return from_image_folder(name, name=f"{FOLDER_PREFIX}{name}", **kwargs)
    if name not in offline.OFFLINE_TASKS:
        raise ValueError(
            f"Unknown task '{name}'. Known tasks: {', '.join(list_tasks())}; use 'tfds:<name>' "
            f"for a TFDS dataset or 'folder:<path>' for an image folder."
        )
    return offline.OFFLINE_TASKS[name](**kwargs)

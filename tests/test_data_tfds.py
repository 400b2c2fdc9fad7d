"""Tests of TFDS tasks: the split table, the default rule, a locally built dataset and mock data."""

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_multipath.data import get_task, is_replayable, make_dataset, split_table

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="TFDS tasks use tf.data only, whatever the Keras backend; they run on the tensorflow backend",
)


def _flat(table):
    return {split: "+".join(f"{d}:{e}" for d, e in parts) for split, parts in table.items()}


@pytest.mark.parametrize(
    "name, expected",
    [
        ("cifar100", {"train": "cifar100:train[:98%]", "validation": "cifar100:train[98%:]", "test": "cifar100:test"}),
        ("cifar10", {"train": "cifar10:train", "validation": "cifar10_1:test", "test": "cifar10:test"}),
        ("imagenet2012", {"train": "imagenet2012:train", "validation": "imagenet_v2:test",
                          "test": "imagenet2012:validation"}),
        ("cmaterdb/bangla", {"train": "cmaterdb/bangla:train[20%:]", "validation": "cmaterdb/bangla:train[:20%]",
                             "test": "cmaterdb/bangla:test"}),
        ("cycle_gan/maps", {"train": "cycle_gan/maps:trainA[10%:]+trainB[10%:]",
                            "validation": "cycle_gan/maps:trainA[:10%]+trainB[:10%]",
                            "test": "cycle_gan/maps:testA+testB"}),
        ("siscore/rotation", {"train": "siscore/rotation:test[10%:]", "validation": "siscore/rotation:test[5%:10%]",
                              "test": "siscore/rotation:test[:5%]"}),
        ("visual_domain_decathlon/dtd", {"train": "visual_domain_decathlon/dtd:train",
                                         "validation": "visual_domain_decathlon/dtd:validation[:50%]",
                                         "test": "visual_domain_decathlon/dtd:validation[50%:]"}),
        ("quickdraw_bitmap", {"train": "quickdraw_bitmap:train[20000:]",
                              "validation": "quickdraw_bitmap:train[10000:20000]",
                              "test": "quickdraw_bitmap:train[:10000]"}),
        ("omniglot", {"train": "omniglot:train", "validation": "omniglot:small1", "test": "omniglot:small2"}),
    ],
)
def test_split_table_listed_datasets(name, expected):
    assert _flat(split_table(name)) == expected


@pytest.mark.parametrize(
    "available, expected",
    [
        (["train", "validation", "test"], {"train": "train", "validation": "validation", "test": "test"}),
        (["train", "test"], {"train": "train[5%:]", "validation": "train[0%:5%]", "test": "test"}),
        (["train", "validation"], {"train": "train[5%:]", "validation": "validation", "test": "train[0%:5%]"}),
        (["train"], {"train": "train[10%:]", "validation": "train[5%:10%]", "test": "train[0%:5%]"}),
    ],
)
def test_split_table_default_rule(available, expected):
    table = split_table("beans", available)
    assert {split: parts[0][1] for split, parts in table.items()} == expected
    assert all(parts[0][0] == "beans" for parts in table.values())


def test_split_table_errors():
    with pytest.raises(ValueError, match="validation set of 'cifar10'"):
        split_table("cifar10_1")
    with pytest.raises(ValueError, match="has no 'train' split"):
        split_table("beans", ["test"])
    with pytest.raises(ValueError, match="pass available_splits"):
        split_table("beans")


class KerasMultipathToyShapes(tfds.core.GeneratorBasedBuilder):
    """Three-class 8x8 RGB images whose pixels encode the split, class and index."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(8, 8, 3)),
            "label": tfds.features.ClassLabel(names=["circle", "square", "star"]),
        })
        return tfds.core.DatasetInfo(builder=self, features=features, supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 60), "test": self._generate_examples(1, 15)}

    def _generate_examples(self, split_id, count):
        for index in range(count):
            yield f"{split_id}-{index}", {"image": toy_image(split_id, index), "label": index % 3}


def toy_image(split_id, index):
    image = np.zeros((8, 8, 3), np.uint8)
    image[..., 0] = index
    image[..., 1] = 100 * split_id
    image[..., 2] = 50 * (index % 3)
    return image


@pytest.fixture(scope="module")
def toy_data_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    KerasMultipathToyShapes(data_dir=data_dir).download_and_prepare()
    return data_dir


def test_local_tfds_dataset_task(toy_data_dir):
    task = get_task("keras_multipath_toy_shapes", source="tfds", data_dir=toy_data_dir)

    assert task.name == "tfds:keras_multipath_toy_shapes"
    assert task.num_classes == 3
    assert task.class_names == ("circle", "square", "star")
    assert task.image_shape == (8, 8, 3)
    # Default rule with train and test splits: validation is train[0%:5%] (3 of 60).
    assert [task.num_examples(s) for s in task.splits] == [57, 3, 15]

    for split, split_id in (("train", 0), ("validation", 0), ("test", 1)):
        images, labels = task.as_numpy(split)
        assert len(images) == task.num_examples(split)
        for image, label in zip(images, labels):
            np.testing.assert_array_equal(image, toy_image(split_id, int(image[0, 0, 0])))
            assert label == image[0, 0, 0] % 3
    train_indices = set(task.as_numpy("train")[0][:, 0, 0, 0].tolist())
    validation_indices = set(task.as_numpy("validation")[0][:, 0, 0, 0].tolist())
    assert not train_indices & validation_indices
    assert len(train_indices | validation_indices) == 60


def test_local_tfds_pipeline_covers_each_example_once(toy_data_dir):
    task = get_task("tfds:keras_multipath_toy_shapes", data_dir=toy_data_dir)
    dataset = make_dataset(task, "train", 19, ds_hparams={"ds_flip_left_right": True}, seed=3)
    indices = []
    for images, labels in dataset.take(6):
        assert images.shape == (19, 8, 8, 3)
        # Pixel index / 127.5 - 1 survives the flip because all pixels of an image share one value in channel 0.
        indices.extend(np.rint((images.numpy()[:, 0, 0, 0] + 1.0) * 127.5).astype(int).tolist())
    first_epoch, second_epoch = indices[:57], indices[57:114]
    assert sorted(first_epoch) == sorted(train_indices_of(task))
    assert sorted(second_epoch) == sorted(first_epoch)
    assert first_epoch != second_epoch


def test_local_tfds_uncached_pipeline_shuffles_examples(toy_data_dir):
    task = get_task("tfds:keras_multipath_toy_shapes", data_dir=toy_data_dir)
    first = make_dataset(task, "train", 19, cache=False, shuffle_buffer=30, seed=3)
    again = make_dataset(task, "train", 19, cache=False, shuffle_buffer=30, seed=3)
    order = [i for images, _ in first.take(3) for i in _pixel_indices(images)]
    assert sorted(order) == sorted(train_indices_of(task))
    assert order != sorted(order)
    assert order == [i for images, _ in again.take(3) for i in _pixel_indices(images)]


def test_local_tfds_replayable_only_when_cached(toy_data_dir):
    task = get_task("tfds:keras_multipath_toy_shapes", data_dir=toy_data_dir)
    assert is_replayable(task, "train")
    assert is_replayable(task, "validation", cache=False)
    assert not is_replayable(task, "train", cache=False)
    dataset = make_dataset(task, "train", 19, seed=3)
    first = [i for images, _ in dataset.take(9) for i in _pixel_indices(images)]
    again = [i for images, _ in dataset.take(9) for i in _pixel_indices(images)]
    assert again == first
    assert sorted(first[:57]) == sorted(first[57:114]) == sorted(train_indices_of(task))
    assert first[:57] != first[57:114]


def _pixel_indices(images):
    return np.rint((images.numpy()[:, 0, 0, 0] + 1.0) * 127.5).astype(int).tolist()


def train_indices_of(task):
    return task.as_numpy("train")[0][:, 0, 0, 0].tolist()


def test_mock_data_listed_dataset():
    with tfds.testing.mock_data(num_examples=12):
        task = get_task("tfds:cifar100")
        assert task.num_classes == 100
        assert task.image_shape == (32, 32, 3)
        # mock_data returns num_examples for every split expression.
        assert [task.num_examples(s) for s in task.splits] == [12, 12, 12]
        images, labels = next(iter(make_dataset(task, "train", 4, image_sizes=[16, 32], seed=0)))
    assert images["16"].shape == (4, 16, 16, 3)
    assert images["32"].shape == (4, 32, 32, 3)
    assert labels.numpy().min() >= 0
    assert labels.numpy().max() < 100


def test_mock_data_default_rule_dataset():
    with tfds.testing.mock_data(num_examples=9):
        task = get_task("beans", source="tfds", available_splits=["train", "validation", "test"])
        assert task.num_classes == 3
        assert task.image_shape == (500, 500, 3)
        validation = list(make_dataset(task, "validation", 4, image_sizes=16))
    # validation_batching(9, 4): 3 batches of 3 examples.
    assert [images.shape for images, _ in validation] == [(3, 16, 16, 3)] * 3


def test_stanford_online_products_uses_super_class():
    with tfds.testing.mock_data(num_examples=3):
        task = get_task("tfds:stanford_online_products")
    assert task.num_classes == 12

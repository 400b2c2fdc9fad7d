import keras_multipath


def test_package_version():
    assert keras_multipath.__version__ == "0.1.0"

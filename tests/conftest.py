"""Test set-up: quiet TensorFlow, two logical CPU devices (for tf.distribute tests), fixed seeds."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np
import pytest
import tensorflow as tf

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
except RuntimeError:  # already initialised by an earlier import
    pass

import keras

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(autouse=True)
def _seed_and_clear():
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()


@pytest.fixture(scope="session")
def fashion_mnist_slice():
    """200 real Fashion-MNIST training images (20 per class), as float32 in [0, 1], NHWC."""
    from train.data import read_idx

    x = read_idx(os.path.join(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(FASHION_MNIST_DIR, "train-labels-idx1-ubyte.gz"))
    idx = np.concatenate([np.flatnonzero(y == c)[:20] for c in range(10)])
    return (x[idx, ..., None].astype("float32") / 255.0), y[idx].astype("int64")

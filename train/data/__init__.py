"""Datasets for the runner: ``load(name, ...)`` looks ``name`` up in the registry and assembles its pipelines.

``load(name, ...)`` returns a :class:`Data`: batched ``train`` / ``test`` / ``validation``
pipelines of ``(float32 NHWC image, int64 label)`` and ``train_stream()``, the un-batched
shuffled and augmented training stream the pruning sample is drawn from (as in the authors' code, alecwangcq/GraSP).
Each dataset family lives in its own module and registers its specs (``base.register``):
``fashion_mnist`` (IDX files), ``cifar`` (tensorflow-datasets), ``tiny_imagenet`` (JPEG
folders), ``imagenet`` (tensorflow-datasets, manual archives); ``pipeline`` is the shared
shuffle/augment/normalise/batch assembly. See docs/data.md for where each dataset is looked
for and how it is preprocessed.
"""
from __future__ import annotations

import dataclasses

from train.data.base import SPECS, DataNotFoundError, Source, Spec, default_data_dir, names, register
from train.data.pipeline import Data, assemble

# The families register their datasets on import, in the order names() lists them.
from train.data import fashion_mnist, cifar, tiny_imagenet, imagenet  # noqa: E402,F401  isort: skip
from train.data.fashion_mnist import _FASHION_FILES, DEBIAN_FASHION_MNIST_DIR, read_idx  # noqa: E402

__all__ = ["Data", "DataNotFoundError", "DEBIAN_FASHION_MNIST_DIR", "Source", "Spec", "default_data_dir", "load",
           "names", "read_idx", "register", "_FASHION_FILES"]


def load(
    name: str,
    *,
    data_dir: str | None = None,
    batch_size: int = 128,
    seed: int = 0,
    validation_split: float = 0.0,
    augment: bool = True,
    train_limit: int | None = None,
    test_limit: int | None = None,
    download: bool = False,
    manual_dir: str | None = None,
) -> Data:
    """Load dataset ``name`` (one of ``names()``) as batched, preprocessed ``tf.data`` pipelines.

    ``data_dir``: where to look (see docs/data.md; default ``default_data_dir()``, and for
    Fashion-MNIST the Debian package then Keras' downloader). ``seed`` fixes the shuffle
    order of every epoch and the augmentation, together with TensorFlow's global seed (which
    tf.data mixes into every op seed): call ``keras.utils.set_random_seed(seed)`` first.
    ``validation_split``: the fraction of the training files held out as ``validation`` --
    a fixed random subset, the same for every seed.
    ``augment=False`` trains on un-augmented (still shuffled) images. ``train_limit`` keeps
    only that many training examples (a fixed random subset), for quick runs; ``test_limit``
    evaluates on the first that many test examples. ``download``
    lets tensorflow-datasets fetch CIFAR; ``manual_dir`` holds the ImageNet archives
    (default ``<data_dir>/downloads/manual``). Raises ``DataNotFoundError`` for missing
    data and ``ValueError`` for bad arguments.
    """
    if name not in SPECS:
        raise ValueError(f"Unknown dataset {name!r}; valid names: {', '.join(names())}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}.")
    if train_limit is not None and (not isinstance(train_limit, int) or train_limit < 1):
        raise ValueError(f"train_limit must be a positive integer or None, got {train_limit!r}.")
    if test_limit is not None and (not isinstance(test_limit, int) or test_limit < 1):
        raise ValueError(f"test_limit must be a positive integer or None, got {test_limit!r}.")
    spec = SPECS[name]
    parts = spec.loader(name, spec, Source(data_dir, download, manual_dir, validation_split, train_limit))
    if test_limit is not None:
        parts = dataclasses.replace(parts, test=parts.test.take(test_limit))
    return assemble(name, spec, parts, batch_size, seed, augment)

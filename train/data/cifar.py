"""CIFAR-10 and CIFAR-100 from tensorflow-datasets, read into memory as uint8 arrays."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from train.data.base import Source, Spec, default_data_dir, register, tfds_split
from train.data.pipeline import Parts, in_memory


def _as_arrays(ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """All ``(image, label)`` pairs of a finite dataset, stacked into two numpy arrays."""
    batches = [(x.numpy(), y.numpy()) for x, y in ds.batch(10_000)]
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def load_parts(name: str, spec: Spec, source: Source) -> Parts:
    """CIFAR-10/100 from tensorflow-datasets, read into memory as uint8 arrays."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=source.data_dir or default_data_dir())
    if source.download:
        builder.download_and_prepare()
    how = (
        f"On a machine with internet run `tfds build {name} --data_dir=DIR` (or, from Python, "
        f"`train.data.load({name!r}, data_dir=DIR, download=True)`), then pass --data_dir=DIR."
    )
    (x, y), (xt, yt) = (_as_arrays(tfds_split(builder, split, how)) for split in ("train", "test"))
    where = f"tfds:{builder.data_dir}"
    return in_memory(x, y, (xt, yt), spec.pad, source.validation_split, source.train_limit, where)


register("cifar10", Spec(10, (32, 32, 3), (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), 4, load_parts))
register("cifar100", Spec(100, (32, 32, 3), (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761), 4, load_parts))

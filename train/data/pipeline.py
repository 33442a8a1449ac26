"""The assembly every dataset goes through: raw splits -> shuffled, augmented, normalised, batched ``Data``.

Each epoch's order and augmentation are a pure function of (seed, epoch): a resumed run sees
exactly the batches an uninterrupted one saw (tests/test_data.py, tests/test_resume.py).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import tensorflow as tf

from train.data.base import Parts, Spec

_HOLDOUT_SEED = 20200101  # the validation hold-out is the same for every --seed
_EPOCH_SALT = 0x6772617370  # mixed into every epoch seed ("grasp"), so epochs differ from other seed uses
_LAST_EPOCH = 2**31  # "endless" epoch streams stop here


@dataclasses.dataclass(frozen=True)
class Data:
    """One dataset, ready for ``model.fit``: batched pipelines plus what the runner needs to know."""

    name: str
    train: tf.data.Dataset  # one epoch, shuffled (afresh at each iteration), augmented, normalised, batched
    test: tf.data.Dataset  # normalised, batched, in file order
    validation: tf.data.Dataset | None  # held out from the training files; None unless asked
    num_classes: int
    input_shape: tuple[int, int, int]
    train_size: int
    test_size: int
    validation_size: int
    steps_per_epoch: int  # batches in one pass over the training examples (the last may be partial)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str  # where the examples were read from
    _stream: Callable[[int], tf.data.Dataset] = dataclasses.field(repr=False, compare=False)
    _epochs: Callable[..., tf.data.Dataset] = dataclasses.field(repr=False, compare=False)
    _seed: int = dataclasses.field(repr=False, compare=False)

    def train_stream(self, seed: int | None = None) -> tf.data.Dataset:
        """The training examples one by one, shuffled, augmented and normalised like ``train``.

        This is where the pruning sample comes from (as in the authors' code): batch it and hand it
        to ``grasp_tf`` (``data.train_stream().batch(250)`` etc.). It runs through epoch 0,
        1, 2, ... of ``train_epochs`` (unbatched), endlessly, so with the load's seed (the
        default) the sample is drawn from the first epoch the runner trains on. Each call
        builds a fresh pipeline: drawing from it never changes what ``train`` yields.
        """
        return self._stream(self._seed if seed is None else seed)

    def train_epochs(self, first_epoch: int = 0, steps_per_epoch: int | None = None) -> tf.data.Dataset:
        """Batches of epoch ``first_epoch``, then the next epoch's, endlessly (for ``fit(steps_per_epoch=)``).

        Each epoch's order and augmentation are a pure function of (seed, epoch number), so a
        run resumed at epoch ``e`` sees exactly the batches an uninterrupted run saw there.
        ``steps_per_epoch`` caps the batches taken from each epoch (default: all of them,
        ``self.steps_per_epoch``).
        """
        return self._epochs(first_epoch, steps_per_epoch)


def size(ds: tf.data.Dataset) -> int:
    """The number of elements of a dataset of known cardinality."""
    n = int(ds.cardinality())
    if n < 0:
        raise ValueError("internal: dataset of unknown size")
    return n


def epoch_seed(seed: int, key: tf.Tensor) -> tf.Tensor:
    """The stateless seed pair of one epoch: a pure function of the load's seed and the epoch key.

    ``stateless_fold_in(s, d)`` is ``[hash(s), d]``: the pair is ``[hash(seed), key]``.
    """
    return tf.random.experimental.stateless_fold_in(tf.constant([seed, _EPOCH_SALT], tf.int64), key)


def assemble(name: str, spec: Spec, parts: Parts, batch_size: int, seed: int, augment: bool) -> Data:
    """Wrap raw splits into the shuffled/augmented/normalised/batched pipelines of a ``Data``."""
    mean = tf.constant(spec.mean, tf.float32)
    std = tf.constant(spec.std, tf.float32)

    def finish(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.ensure_shape(image, spec.input_shape)
        return (tf.cast(image, tf.float32) / 255.0 - mean) / std, tf.cast(label, tf.int64)

    def epoch(s: int, key: tf.Tensor) -> tf.Tensor:
        """One pass over the training examples: order and augmentation depend on (s, key) only."""
        pair = epoch_seed(s, tf.cast(key, tf.int64))

        def permute(j: tf.Tensor, window: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
            order = tf.random.experimental.stateless_shuffle(
                tf.range(tf.shape(window[1])[0]), seed=tf.random.experimental.stateless_fold_in(pair, -1 - j))
            return tf.gather(window[0], order), tf.gather(window[1], order)

        # Stateless shuffle: each window of `shuffle_buffer` examples (all of them, for the
        # in-memory datasets) is permuted by a seed derived from (s, key, window index).
        ds = parts.train.batch(parts.shuffle_buffer).enumerate().map(permute).unbatch()
        if not augment:
            return ds.map(lambda x, y: finish(parts.decode_eval(x), y), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.enumerate().map(  # the i-th example of the epoch gets its own stateless seed
            lambda i, ex: finish(parts.decode_train(ex[0], tf.random.experimental.stateless_fold_in(pair, i)),
                                 ex[1]),
            num_parallel_calls=tf.data.AUTOTUNE)

    steps = -(-size(parts.train) // batch_size)

    def epochs(first: int, steps_per_epoch: int | None = None) -> tf.data.Dataset:
        take = steps if steps_per_epoch is None else min(steps_per_epoch, steps)
        keys = tf.data.Dataset.range(first, _LAST_EPOCH)
        return keys.flat_map(lambda e: epoch(seed, e).batch(batch_size).take(take)).prefetch(tf.data.AUTOTUNE)

    def stream(s: int) -> tf.data.Dataset:
        return tf.data.Dataset.range(_LAST_EPOCH).flat_map(lambda e: epoch(s, e))

    # `train` reshuffles at every iteration: its epoch key is drawn from a seeded generator.
    fresh_key = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    train = fresh_key.flat_map(lambda k: epoch(seed, k).batch(batch_size))

    def evaluation(ds: tf.data.Dataset) -> tf.data.Dataset:
        ds = ds.map(lambda x, y: finish(parts.decode_eval(x), y), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    val = parts.validation
    return Data(
        name=name,
        train=train.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(tf.data.AUTOTUNE),
        test=evaluation(parts.test),
        validation=None if val is None else evaluation(val),
        num_classes=spec.num_classes,
        input_shape=spec.input_shape,
        train_size=size(parts.train),
        test_size=size(parts.test),
        validation_size=0 if val is None else size(val),
        steps_per_epoch=steps,
        mean=spec.mean,
        std=spec.std,
        source=parts.source,
        _stream=stream,
        _epochs=epochs,
        _seed=seed,
    )


def num_held_out(n: int, validation_split: float) -> int:
    """How many of ``n`` training examples ``validation_split`` holds out; both parts non-empty."""
    n_val = int(round(validation_split * n))
    if validation_split > 0 and not 0 < n_val < n:
        raise ValueError(f"validation_split={validation_split} of {n} examples leaves an empty split.")
    return n_val


def holdout(n: int, validation_split: float, train_limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and held-out examples: a fixed random split, independent of --seed."""
    n_val = num_held_out(n, validation_split)
    perm = np.random.default_rng(_HOLDOUT_SEED).permutation(n)
    val, train = np.sort(perm[:n_val]), perm[n_val:]
    if train_limit is not None:
        train = train[:train_limit]
    return np.sort(train), val


def pad_crop_flip(image: tf.Tensor, seed: tf.Tensor, pad: int) -> tf.Tensor:
    """Zero-pad by ``pad``, crop back to the original size at a random offset, random left-right flip."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    image = tf.image.stateless_random_crop(padded, image.shape, seed=crop_seed)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def in_memory(
    x: np.ndarray,
    y: np.ndarray,
    test: tuple[np.ndarray, np.ndarray],
    pad: int,
    validation_split: float,
    train_limit: int | None,
    source: str,
) -> Parts:
    """Parts for uint8 NHWC image arrays held in memory (Fashion-MNIST, CIFAR)."""
    train_idx, val_idx = holdout(len(x), validation_split, train_limit)
    y = y.astype(np.int64)
    return Parts(
        train=tf.data.Dataset.from_tensor_slices((x[train_idx], y[train_idx])),
        test=tf.data.Dataset.from_tensor_slices((test[0], test[1].astype(np.int64))),
        validation=tf.data.Dataset.from_tensor_slices((x[val_idx], y[val_idx])) if len(val_idx) else None,
        shuffle_buffer=len(train_idx),
        decode_train=lambda image, seed: pad_crop_flip(image, seed, pad),
        decode_eval=lambda image: image,
        source=source,
    )

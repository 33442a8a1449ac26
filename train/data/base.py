"""What every dataset family shares: the spec registry (each spec names its loader), raw parts, errors, default root.

A family module (``fashion_mnist``, ``cifar``, ``tiny_imagenet``, ``imagenet``) describes each
of its datasets with a :class:`Spec` and calls :func:`register`; ``train.data.load`` looks the
name up here and calls the spec's loader. Adding a dataset is one ``register`` call.
"""
from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any, Callable

import tensorflow as tf

if TYPE_CHECKING:
    import tensorflow_datasets as tfds


class DataNotFoundError(ValueError):
    """A dataset's files are missing; the message says where we looked and how to get them."""


@dataclasses.dataclass(frozen=True)
class Source:
    """Where and how the user asked for a dataset (the arguments of ``load`` a loader may need)."""

    data_dir: str | None
    download: bool
    manual_dir: str | None
    validation_split: float
    train_limit: int | None


@dataclasses.dataclass(frozen=True)
class Spec:
    """Fixed facts about one dataset: classes, model input shape, normalisation, crop padding, loader."""

    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad: int  # pad-and-random-crop padding of the small-image recipe; 0 for ImageNet
    loader: Callable[[str, "Spec", Source], "Parts"] = dataclasses.field(repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class Parts:
    """Raw ``(example, label)`` datasets of each split, and how to turn an example into an image."""

    train: tf.data.Dataset
    test: tf.data.Dataset
    validation: tf.data.Dataset | None
    shuffle_buffer: int
    decode_train: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]  # (example, seed pair) -> HWC image
    decode_eval: Callable[[tf.Tensor], tf.Tensor]  # example -> HWC image
    source: str


SPECS: dict[str, Spec] = {}


def register(name: str, spec: Spec) -> None:
    """Make ``name`` loadable by ``train.data.load`` (names are listed in registration order)."""
    if name in SPECS:
        raise ValueError(f"dataset {name!r} is already registered")
    SPECS[name] = spec


def names() -> tuple[str, ...]:
    """The dataset names ``load`` accepts."""
    return tuple(SPECS)


def default_data_dir() -> str:
    """The root searched when no ``data_dir`` is given: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``."""
    return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def tfds_split(builder: tfds.core.DatasetBuilder, split: str, how: str, **kwargs: Any) -> tf.data.Dataset:
    """``builder.as_dataset(split)``, turning tfds' "could not find data" into ``DataNotFoundError``."""
    try:
        return builder.as_dataset(split=split, as_supervised=True, **kwargs)
    except AssertionError as e:  # what tfds raises for an unprepared dataset
        raise DataNotFoundError(
            f"{builder.name} is not prepared in {builder.data_dir} (tensorflow-datasets). {how}"
        ) from e

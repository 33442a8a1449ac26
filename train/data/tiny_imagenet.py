"""Tiny-ImageNet (200 classes, 64x64) from its standard ``tiny-imagenet-200`` folder of JPEG files."""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from train.data.base import DataNotFoundError, Source, Spec, default_data_dir, register
from train.data.pipeline import Parts, holdout, pad_crop_flip


def _tiny_imagenet_root(data_dir: str | None) -> str:
    """The ``tiny-imagenet-200`` folder: ``data_dir`` itself or its child of that name."""
    base = data_dir or default_data_dir()
    looked = [base, os.path.join(base, "tiny-imagenet-200")]
    for root in looked:
        if os.path.isfile(os.path.join(root, "wnids.txt")):
            return root
    raise DataNotFoundError(
        f"Tiny-ImageNet not found: looked for wnids.txt in {' and '.join(looked)}. Download "
        "http://cs231n.stanford.edu/tiny-imagenet-200.zip, unzip it into DIR (giving "
        "DIR/tiny-imagenet-200/) and pass DIR as --data_dir."
    )


def _tiny_imagenet_files(root: str) -> tuple[list[str], list[int], list[str], list[int]]:
    """Training and validation image paths with labels; class index = rank of the wnid in sorted order.

    Sorted wnids match the class indices of torchvision's ImageFolder (the reference). Validation
    labels come from ``val/val_annotations.txt``, not from the folder layout.
    """
    with open(os.path.join(root, "wnids.txt")) as f:
        wnids = sorted({line.strip() for line in f if line.strip()})
    index = {w: i for i, w in enumerate(wnids)}
    train_paths, train_labels = [], []
    for wnid in wnids:
        folder = os.path.join(root, "train", wnid, "images")
        if not os.path.isdir(folder):
            raise DataNotFoundError(f"Tiny-ImageNet at {root} is incomplete: {folder} is missing.")
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith((".jpeg", ".jpg")))
        train_paths += [os.path.join(folder, f) for f in files]
        train_labels += [index[wnid]] * len(files)
    annotations = os.path.join(root, "val", "val_annotations.txt")
    if not os.path.isfile(annotations):
        raise DataNotFoundError(f"Tiny-ImageNet at {root} is incomplete: {annotations} is missing.")
    val_paths, val_labels = [], []
    with open(annotations) as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2 or fields[1] not in index:
                raise ValueError(
                    f"{annotations}:{line_no}: expected '<file> <wnid> ...' with a wnid from wnids.txt."
                )
            path = os.path.join(root, "val", "images", fields[0])
            if not os.path.isfile(path):
                raise DataNotFoundError(f"Tiny-ImageNet at {root} is incomplete: {path} is missing.")
            val_paths.append(path)
            val_labels.append(index[fields[1]])
    order = np.argsort(val_paths, kind="stable")  # file order, whatever the annotation order
    return train_paths, train_labels, [val_paths[i] for i in order], [val_labels[i] for i in order]


def _read_jpeg(path: tf.Tensor) -> tf.Tensor:
    """A JPEG file as an RGB uint8 image (Tiny-ImageNet has some greyscale files)."""
    return tf.io.decode_jpeg(tf.io.read_file(path), channels=3)


def load_parts(name: str, spec: Spec, source: Source) -> Parts:
    """Tiny-ImageNet from its standard folder; its labelled ``val`` split is the test set."""
    root = _tiny_imagenet_root(source.data_dir)
    paths, labels, val_paths, val_labels = _tiny_imagenet_files(root)
    paths, labels = np.asarray(paths), np.asarray(labels, np.int64)
    train_idx, held_idx = holdout(len(paths), source.validation_split, source.train_limit)
    return Parts(
        train=tf.data.Dataset.from_tensor_slices((paths[train_idx], labels[train_idx])),
        test=tf.data.Dataset.from_tensor_slices((np.asarray(val_paths), np.asarray(val_labels, np.int64))),
        validation=(
            tf.data.Dataset.from_tensor_slices((paths[held_idx], labels[held_idx])) if len(held_idx) else None
        ),
        shuffle_buffer=len(train_idx),
        decode_train=lambda path, seed: pad_crop_flip(
            tf.ensure_shape(_read_jpeg(path), spec.input_shape), seed, spec.pad
        ),
        decode_eval=_read_jpeg,
        source=root,
    )


# The official GraSP code's Tiny-ImageNet statistics (utils/data_utils.py).
register("tiny_imagenet", Spec(200, (64, 64, 3), (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821), 4, load_parts))

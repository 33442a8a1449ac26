"""Fashion-MNIST from its four IDX files (the Debian package, a directory, or Keras' downloader)."""
from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from train.data.base import DataNotFoundError, Source, Spec, register
from train.data.pipeline import Parts, in_memory

_FASHION_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def read_idx(path: str) -> np.ndarray:
    """An IDX file (optionally gzipped), as used by MNIST and Fashion-MNIST, as a numpy array.

    Raises ``ValueError`` naming ``path`` for anything that is not a whole IDX file (a truncated
    or non-gzip ``.gz``, a short header, fewer or more values than the header says).
    """
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ValueError(f"{path} is not a readable gzip file ({type(e).__name__}: {e}); truncated? "
                         "Download it again.") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number).")
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}.get(data[2])
    if dtype is None:
        raise ValueError(f"{path}: unknown IDX element type 0x{data[2]:02x}.")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, a {ndim}-dimensional header needs "
                         f"{4 + 4 * ndim}).")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    arr = np.frombuffer(data, dtype=np.dtype(dtype), count=(len(data) - 4 - 4 * ndim) // np.dtype(dtype).itemsize,
                        offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {arr.size} values (truncated?).")
    return arr.reshape(shape).astype(dtype[1:])


def check_arrays(paths: list[str], arrays: list[np.ndarray], shape: tuple[int, int]) -> None:
    """``ValueError`` naming the file unless images are (n, *shape) and each split has one label per image."""
    for i in (0, 2):
        (xp, yp), (x, y) = paths[i:i + 2], arrays[i:i + 2]
        if x.ndim != 3 or x.shape[1:] != shape:
            raise ValueError(f"{xp} holds images of shape {x.shape[1:]} (array {x.shape}); expected "
                             f"{shape[0]}x{shape[1]} images, an array of shape (n, {shape[0]}, {shape[1]}).")
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(f"{yp} holds {len(y) if y.ndim == 1 else y.shape} labels for the {len(x):,} images "
                             f"of {xp}: one label per image expected.")


def _find_idx_files(directory: str) -> list[str] | None:
    """Paths of the four Fashion-MNIST IDX files in ``directory`` (gzipped or not), or None."""
    paths = []
    for stem in _FASHION_FILES:
        candidates = (os.path.join(directory, stem + ".gz"), os.path.join(directory, stem))
        found = [p for p in candidates if os.path.isfile(p)]
        if not found:
            return None
        paths.append(found[0])
    return paths


def _fashion_mnist_arrays(
    data_dir: str | None,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], str]:
    """Fashion-MNIST train and test arrays, and where they came from.

    With ``data_dir``: its IDX files (or those in ``data_dir/fashion-mnist``), nothing else.
    Without: the Debian package's files, else Keras' downloader (cache ``~/.keras/datasets``).
    """
    looked = [data_dir, os.path.join(data_dir, "fashion-mnist")] if data_dir else [DEBIAN_FASHION_MNIST_DIR]
    for directory in looked:
        paths = _find_idx_files(directory)
        if paths:
            x, y, xt, yt = arrays = [read_idx(p) for p in paths]
            check_arrays(paths, arrays, (28, 28))
            return (x, y), (xt, yt), directory
    how = (
        "Put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
        "t10k-labels-idx1-ubyte.gz (from https://github.com/zalandoresearch/fashion-mnist) in one "
        "directory and pass it as --data_dir, or install Debian's package (apt-get install "
        "dataset-fashion-mnist)."
    )
    if data_dir:
        raise DataNotFoundError(
            f"Fashion-MNIST not found: looked for its four IDX files in {' and '.join(looked)}. {how}"
        )
    import keras

    try:
        (x, y), (xt, yt) = keras.datasets.fashion_mnist.load_data()
    except Exception as e:  # Keras raises a bare Exception when the download fails
        raise DataNotFoundError(
            f"Fashion-MNIST not found in {DEBIAN_FASHION_MNIST_DIR} and Keras could not download it "
            f"({e}). {how}"
        ) from e
    return (x, y), (xt, yt), "keras.datasets.fashion_mnist"


def load_parts(name: str, spec: Spec, source: Source) -> Parts:
    """Fashion-MNIST's splits, held in memory as uint8 NHWC arrays."""
    (x, y), (xt, yt), where = _fashion_mnist_arrays(source.data_dir)
    return in_memory(x[..., None], y, (xt[..., None], yt), spec.pad, source.validation_split, source.train_limit,
                     where)


# Mean/std of the 60,000 training images (all pixels), tested in tests/test_data.py.
register("fashion_mnist", Spec(10, (28, 28, 1), (0.2860,), (0.3530,), 4, load_parts))

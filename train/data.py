"""Datasets for the runner: real loaders, augmentation and normalisation (reference item 18).

``load(name, ...)`` returns a :class:`Data`: batched ``train`` / ``test`` / ``validation``
pipelines of ``(float32 NHWC image, int64 label)`` and ``train_stream()``, the un-batched
shuffled and augmented training stream the pruning sample is drawn from (reference item 7).
See docs/data.md for where each dataset is looked for and how it is preprocessed.
"""
from __future__ import annotations

import dataclasses
import gzip
import os
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import tensorflow as tf

if TYPE_CHECKING:
    import tensorflow_datasets as tfds


class DataNotFoundError(ValueError):
    """A dataset's files are missing; the message says where we looked and how to get them."""


@dataclasses.dataclass(frozen=True)
class _Spec:
    """Fixed facts about one dataset: classes, model input shape, normalisation, crop padding."""

    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad: int  # pad-and-random-crop padding of the small-image recipe; 0 for ImageNet


_SPECS: dict[str, _Spec] = {
    # Mean/std of the 60,000 training images (all pixels), tested in tests/test_data.py.
    "fashion_mnist": _Spec(10, (28, 28, 1), (0.2860,), (0.3530,), 4),
    "cifar10": _Spec(10, (32, 32, 3), (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), 4),
    "cifar100": _Spec(100, (32, 32, 3), (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761), 4),
    # The official GraSP code's Tiny-ImageNet statistics (utils/data_utils.py).
    "tiny_imagenet": _Spec(200, (64, 64, 3), (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821), 4),
    "imagenet2012": _Spec(1000, (224, 224, 3), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 0),
}

_FASHION_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_HOLDOUT_SEED = 20200101  # the validation hold-out is the same for every --seed
_IMAGENET_SHUFFLE_BUFFER = 10_000
_EPOCH_SALT = 0x6772617370  # mixed into every epoch seed ("grasp"), so epochs differ from other seed uses
_LAST_EPOCH = 2**31  # "endless" epoch streams stop here


def names() -> tuple[str, ...]:
    """The dataset names ``load`` accepts."""
    return tuple(_SPECS)


def default_data_dir() -> str:
    """The root searched when no ``data_dir`` is given: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``."""
    return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


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

        This is where the pruning sample comes from (reference item 7): batch it and hand it
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


def read_idx(path: str) -> np.ndarray:
    """An IDX file (optionally gzipped), as used by MNIST and Fashion-MNIST, as a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number).")
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}.get(data[2])
    if dtype is None:
        raise ValueError(f"{path}: unknown IDX element type 0x{data[2]:02x}.")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    arr = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {arr.size} values.")
    return arr.reshape(shape).astype(dtype[1:])


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
    if name not in _SPECS:
        raise ValueError(f"Unknown dataset {name!r}; valid names: {', '.join(names())}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}.")
    if train_limit is not None and (not isinstance(train_limit, int) or train_limit < 1):
        raise ValueError(f"train_limit must be a positive integer or None, got {train_limit!r}.")
    if test_limit is not None and (not isinstance(test_limit, int) or test_limit < 1):
        raise ValueError(f"test_limit must be a positive integer or None, got {test_limit!r}.")
    spec = _SPECS[name]
    if name == "fashion_mnist":
        (x, y), (xt, yt), source = _fashion_mnist_arrays(data_dir)
        test = (xt[..., None], yt)
        parts = _in_memory(x[..., None], y, test, spec.pad, validation_split, train_limit, source)
    elif name in ("cifar10", "cifar100"):
        parts = _cifar(name, data_dir, download, validation_split, train_limit)
    elif name == "tiny_imagenet":
        parts = _tiny_imagenet(data_dir, validation_split, train_limit)
    else:
        parts = _imagenet(data_dir, manual_dir, validation_split, train_limit)
    if test_limit is not None:
        parts = dataclasses.replace(parts, test=parts.test.take(test_limit))
    return _assemble(name, spec, parts, batch_size, seed, augment)


# ----------------------------------------------------------------------------- assembly


@dataclasses.dataclass(frozen=True)
class _Parts:
    """Raw ``(example, label)`` datasets of each split, and how to turn an example into an image."""

    train: tf.data.Dataset
    test: tf.data.Dataset
    validation: tf.data.Dataset | None
    shuffle_buffer: int
    decode_train: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]  # (example, seed pair) -> HWC image
    decode_eval: Callable[[tf.Tensor], tf.Tensor]  # example -> HWC image
    source: str


def _size(ds: tf.data.Dataset) -> int:
    """The number of elements of a dataset of known cardinality."""
    n = int(ds.cardinality())
    if n < 0:
        raise ValueError("internal: dataset of unknown size")
    return n


def _epoch_seed(seed: int, key: tf.Tensor) -> tf.Tensor:
    """The stateless seed pair of one epoch: a pure function of the load's seed and the epoch key.

    ``stateless_fold_in(s, d)`` is ``[hash(s), d]``: the pair is ``[hash(seed), key]``.
    """
    return tf.random.experimental.stateless_fold_in(tf.constant([seed, _EPOCH_SALT], tf.int64), key)


def _assemble(name: str, spec: _Spec, parts: _Parts, batch_size: int, seed: int, augment: bool) -> Data:
    """Wrap raw splits into the shuffled/augmented/normalised/batched pipelines of a ``Data``."""
    mean = tf.constant(spec.mean, tf.float32)
    std = tf.constant(spec.std, tf.float32)

    def finish(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.ensure_shape(image, spec.input_shape)
        return (tf.cast(image, tf.float32) / 255.0 - mean) / std, tf.cast(label, tf.int64)

    def epoch(s: int, key: tf.Tensor) -> tf.Tensor:
        """One pass over the training examples: order and augmentation depend on (s, key) only."""
        pair = _epoch_seed(s, tf.cast(key, tf.int64))

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

    steps = -(-_size(parts.train) // batch_size)

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
        train_size=_size(parts.train),
        test_size=_size(parts.test),
        validation_size=0 if val is None else _size(val),
        steps_per_epoch=steps,
        mean=spec.mean,
        std=spec.std,
        source=parts.source,
        _stream=stream,
        _epochs=epochs,
        _seed=seed,
    )


def _num_held_out(n: int, validation_split: float) -> int:
    """How many of ``n`` training examples ``validation_split`` holds out; both parts non-empty."""
    n_val = int(round(validation_split * n))
    if validation_split > 0 and not 0 < n_val < n:
        raise ValueError(f"validation_split={validation_split} of {n} examples leaves an empty split.")
    return n_val


def _holdout(n: int, validation_split: float, train_limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and held-out examples: a fixed random split, independent of --seed."""
    n_val = _num_held_out(n, validation_split)
    perm = np.random.default_rng(_HOLDOUT_SEED).permutation(n)
    val, train = np.sort(perm[:n_val]), perm[n_val:]
    if train_limit is not None:
        train = train[:train_limit]
    return np.sort(train), val


def _pad_crop_flip(image: tf.Tensor, seed: tf.Tensor, pad: int) -> tf.Tensor:
    """Zero-pad by ``pad``, crop back to the original size at a random offset, random left-right flip."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    image = tf.image.stateless_random_crop(padded, image.shape, seed=crop_seed)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def _in_memory(
    x: np.ndarray,
    y: np.ndarray,
    test: tuple[np.ndarray, np.ndarray],
    pad: int,
    validation_split: float,
    train_limit: int | None,
    source: str,
) -> _Parts:
    """Parts for uint8 NHWC image arrays held in memory (Fashion-MNIST, CIFAR)."""
    train_idx, val_idx = _holdout(len(x), validation_split, train_limit)
    y = y.astype(np.int64)
    return _Parts(
        train=tf.data.Dataset.from_tensor_slices((x[train_idx], y[train_idx])),
        test=tf.data.Dataset.from_tensor_slices((test[0], test[1].astype(np.int64))),
        validation=tf.data.Dataset.from_tensor_slices((x[val_idx], y[val_idx])) if len(val_idx) else None,
        shuffle_buffer=len(train_idx),
        decode_train=lambda image, seed: _pad_crop_flip(image, seed, pad),
        decode_eval=lambda image: image,
        source=source,
    )


# ----------------------------------------------------------------------------- Fashion-MNIST


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
            x, y, xt, yt = (read_idx(p) for p in paths)
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


# ----------------------------------------------------------------------------- tensorflow-datasets


def _tfds_split(builder: tfds.core.DatasetBuilder, split: str, how: str, **kwargs: Any) -> tf.data.Dataset:
    """``builder.as_dataset(split)``, turning tfds' "could not find data" into ``DataNotFoundError``."""
    try:
        return builder.as_dataset(split=split, as_supervised=True, **kwargs)
    except AssertionError as e:  # what tfds raises for an unprepared dataset
        raise DataNotFoundError(
            f"{builder.name} is not prepared in {builder.data_dir} (tensorflow-datasets). {how}"
        ) from e


def _as_arrays(ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """All ``(image, label)`` pairs of a finite dataset, stacked into two numpy arrays."""
    batches = [(x.numpy(), y.numpy()) for x, y in ds.batch(10_000)]
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def _cifar(
    name: str, data_dir: str | None, download: bool, validation_split: float, train_limit: int | None
) -> _Parts:
    """CIFAR-10/100 from tensorflow-datasets, read into memory as uint8 arrays."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir or default_data_dir())
    if download:
        builder.download_and_prepare()
    how = (
        f"On a machine with internet run `tfds build {name} --data_dir=DIR` (or load with "
        "download=True) and pass DIR as --data_dir."
    )
    (x, y), (xt, yt) = (_as_arrays(_tfds_split(builder, split, how)) for split in ("train", "test"))
    source = f"tfds:{builder.data_dir}"
    return _in_memory(x, y, (xt, yt), _SPECS[name].pad, validation_split, train_limit, source)


def _imagenet(
    data_dir: str | None, manual_dir: str | None, validation_split: float, train_limit: int | None
) -> _Parts:
    """ImageNet 2012 from tensorflow-datasets, prepared from the manually downloaded archives."""
    import tensorflow_datasets as tfds

    root = data_dir or default_data_dir()
    manual_dir = manual_dir or os.path.join(root, "downloads", "manual")
    builder = tfds.builder("imagenet2012", data_dir=root)
    archives = [os.path.join(manual_dir, f) for f in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")]
    if not builder.is_prepared() and all(os.path.isfile(a) for a in archives):
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    read = dict(
        decoders={"image": tfds.decode.SkipDecoding()},
        # Files in a fixed order (tfds shuffled the records when it prepared them); each epoch
        # permutes windows of them by seeds from (seed, epoch), so a resumed epoch replays exactly.
        shuffle_files=False,
    )
    how = (
        f"Put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (from https://image-net.org, registration "
        f"needed) in {manual_dir} (or pass manual_dir); the next load prepares them (hours, ~150 GB)."
    )
    full = _tfds_split(builder, "train", how, **read)
    n = _size(full)
    n_val = _num_held_out(n, validation_split)
    n_train = n - n_val if train_limit is None else min(train_limit, n - n_val)
    train = full if n_train == n else _tfds_split(builder, f"train[:{n_train}]", how, **read)
    validation = None
    if n_val:
        validation = _tfds_split(builder, f"train[{n - n_val}:]", how, decoders=read["decoders"])
    return _Parts(
        train=train,
        test=_tfds_split(builder, "validation", how, decoders=read["decoders"]),
        validation=validation,
        shuffle_buffer=_IMAGENET_SHUFFLE_BUFFER,
        decode_train=_imagenet_train_image,
        decode_eval=_imagenet_eval_image,
        source=f"tfds:{builder.data_dir}",
    )


def _imagenet_train_image(jpeg: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """ResNet training crop: random area 8-100 % and aspect 3/4-4/3, resized to 224, random flip."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.image.extract_jpeg_shape(jpeg),
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        seed=crop_seed,
        min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    image = tf.image.decode_and_crop_jpeg(jpeg, window, channels=3)
    image = tf.image.resize(image, [224, 224], antialias=True)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def _imagenet_eval_image(jpeg: tf.Tensor) -> tf.Tensor:
    """ResNet evaluation crop: shorter side resized to 256, then the central 224x224."""
    image = tf.io.decode_jpeg(jpeg, channels=3)
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    new_hw = tf.cast(tf.round(hw * 256.0 / tf.reduce_min(hw)), tf.int32)
    image = tf.image.resize(image, new_hw, antialias=True)
    top, left = (new_hw[0] - 224) // 2, (new_hw[1] - 224) // 2
    return image[top: top + 224, left: left + 224]


# ----------------------------------------------------------------------------- Tiny-ImageNet


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


def _tiny_imagenet(data_dir: str | None, validation_split: float, train_limit: int | None) -> _Parts:
    """Tiny-ImageNet from its standard folder; its labelled ``val`` split is the test set."""
    root = _tiny_imagenet_root(data_dir)
    paths, labels, val_paths, val_labels = _tiny_imagenet_files(root)
    paths, labels = np.asarray(paths), np.asarray(labels, np.int64)
    train_idx, held_idx = _holdout(len(paths), validation_split, train_limit)
    spec = _SPECS["tiny_imagenet"]
    return _Parts(
        train=tf.data.Dataset.from_tensor_slices((paths[train_idx], labels[train_idx])),
        test=tf.data.Dataset.from_tensor_slices((np.asarray(val_paths), np.asarray(val_labels, np.int64))),
        validation=(
            tf.data.Dataset.from_tensor_slices((paths[held_idx], labels[held_idx])) if len(held_idx) else None
        ),
        shuffle_buffer=len(train_idx),
        decode_train=lambda path, seed: _pad_crop_flip(
            tf.ensure_shape(_read_jpeg(path), spec.input_shape), seed, spec.pad
        ),
        decode_eval=_read_jpeg,
        source=root,
    )

"""Tests of train/data.py: every loader on real on-disk formats, preprocessing, determinism, errors."""
import collections
import gzip
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from train import data

FASHION_MNIST_DIR = data.DEBIAN_FASHION_MNIST_DIR
_IDX_TYPES = {np.dtype("uint8"): 0x08, np.dtype("int32"): 0x0C, np.dtype("float32"): 0x0D}


def _write_idx(path: str, arr: np.ndarray) -> None:
    """Write ``arr`` as an IDX file (gzipped if ``path`` ends in .gz), the MNIST on-disk format."""
    dims = b"".join(d.to_bytes(4, "big") for d in arr.shape)
    header = bytes([0, 0, _IDX_TYPES[arr.dtype], arr.ndim]) + dims
    payload = header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    with (gzip.open if path.endswith(".gz") else open)(path, "wb") as f:
        f.write(payload)


def _raw(images: np.ndarray, d: data.Data) -> np.ndarray:
    """Undo the normalisation of a batch: back to uint8 pixels."""
    return np.round((images * np.array(d.std) + np.array(d.mean)) * 255.0).astype(np.uint8)


def _epoch(ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """One full pass over a batched dataset, as stacked numpy arrays."""
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_names_and_unknown_name_lists_valid_names():
    """The runner's --dataset choices; a typo must name every valid choice."""
    assert data.names() == ("fashion_mnist", "cifar10", "cifar100", "tiny_imagenet", "imagenet2012")
    with pytest.raises(ValueError) as e:
        data.load("cifar11")
    assert all(name in str(e.value) for name in data.names())


@pytest.mark.parametrize(
    "kwargs", [{"validation_split": 1.0}, {"validation_split": -0.1}, {"batch_size": 0}, {"train_limit": 0}]
)
def test_bad_arguments_are_rejected(kwargs):
    """Out-of-range options fail before any data is read."""
    with pytest.raises(ValueError):
        data.load("fashion_mnist", **kwargs)


def test_read_idx_round_trip(tmp_path):
    """read_idx returns exactly what was written, for each element type, gzipped or not."""
    rng = np.random.default_rng(0)
    arrays = [
        rng.integers(0, 256, (3, 4, 5)).astype(np.uint8),
        rng.integers(-(2**31), 2**31 - 1, 7).astype(np.int32),
        rng.normal(size=(2, 3)).astype(np.float32),
    ]
    for i, arr in enumerate(arrays):
        for suffix in ("", ".gz"):
            path = str(tmp_path / f"a{i}{suffix}")
            _write_idx(path, arr)
            out = data.read_idx(path)
            assert out.dtype == arr.dtype and out.shape == arr.shape
            np.testing.assert_array_equal(out, arr)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x00")
    with pytest.raises(ValueError, match="IDX"):
        data.read_idx(str(tmp_path / "bad"))


def test_fashion_mnist_from_debian_package():
    """The offline default: shapes, sizes, labels, documented statistics and exact normalisation."""
    d = data.load("fashion_mnist", batch_size=256)
    assert d.source == FASHION_MNIST_DIR
    assert (d.num_classes, d.input_shape, d.validation) == (10, (28, 28, 1), None)
    assert (d.train_size, d.test_size) == (60000, 10000)
    raw_train = data.read_idx(os.path.join(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz")) / 255.0
    assert abs(raw_train.mean() - d.mean[0]) < 1e-4 and abs(raw_train.std() - d.std[0]) < 1e-4
    x, y = next(iter(d.train))
    assert x.shape == (256, 28, 28, 1) and x.dtype == tf.float32 and y.dtype == tf.int64
    assert 0 <= int(tf.reduce_min(y)) and int(tf.reduce_max(y)) < 10
    xt, yt = next(iter(d.test))  # test set: file order, no augmentation
    raw_x = data.read_idx(os.path.join(FASHION_MNIST_DIR, "t10k-images-idx3-ubyte.gz"))[:256, ..., None]
    raw_y = data.read_idx(os.path.join(FASHION_MNIST_DIR, "t10k-labels-idx1-ubyte.gz"))[:256]
    np.testing.assert_allclose(xt.numpy(), (raw_x / 255.0 - 0.2860) / 0.3530, atol=1e-5)
    np.testing.assert_array_equal(yt.numpy(), raw_y)


def test_seed_fixes_order_and_augmentation_of_every_epoch():
    """Same seed -> same batches epoch after epoch; epochs reshuffle; another seed differs;
    the runner's epochs are a pure function of (seed, epoch): starting at epoch 1 gives
    exactly the second epoch; the pruning stream runs through the runner's epochs."""

    def two_epochs(d):
        return [_epoch(d.train) for _ in range(2)]

    a = data.load("fashion_mnist", seed=0, train_limit=512)
    b = data.load("fashion_mnist", seed=0, train_limit=512)
    (a1x, a1y), (a2x, a2y) = two_epochs(a)
    (b1x, b1y), (b2x, b2y) = two_epochs(b)
    np.testing.assert_array_equal(a1x, b1x)
    np.testing.assert_array_equal(a2x, b2x)
    np.testing.assert_array_equal(a1y, b1y)
    assert not np.array_equal(a1y, a2y)
    assert sorted(a1y) == sorted(a2y)  # the same 512 examples each epoch
    _, c1y = _epoch(data.load("fashion_mnist", seed=1, train_limit=512).train)
    assert not np.array_equal(c1y, a1y)

    assert a.steps_per_epoch == 4
    e0x, e0y = _epoch(a.train_epochs(0).take(8))  # epochs 0 and 1, 4 batches each
    e1x, e1y = _epoch(b.train_epochs(1).take(4))  # a fresh pipeline resumed at epoch 1
    np.testing.assert_array_equal(e0x[512:], e1x)
    np.testing.assert_array_equal(e0y[512:], e1y)
    assert not np.array_equal(e0y[:512], e0y[512:]) and sorted(e0y[:512]) == sorted(e0y[512:])
    assert not np.array_equal(e0x[:512], e0x[512:])
    capped = _epoch(a.train_epochs(1, steps_per_epoch=2).take(2))[1]
    np.testing.assert_array_equal(capped, e1y[:256])  # a cap takes the first batches of each epoch

    stream_x, stream_y = _epoch(b.train_stream().batch(512).take(2))
    np.testing.assert_array_equal(stream_x, e0x)
    np.testing.assert_array_equal(stream_y, e0y)
    other_stream_y = _epoch(a.train_stream(seed=1).batch(512).take(1))[1]
    assert not np.array_equal(other_stream_y, e0y[:512])


def test_validation_split_partitions_training_set_independently_of_seed():
    """Held-out and training examples together are exactly the training files, each once; the
    held-out subset is a random one (not a block of files, which are class-sorted for Tiny-ImageNet)
    and the same for every seed."""
    d = data.load("fashion_mnist", seed=0, validation_split=0.1, augment=False, batch_size=2000)
    assert (d.train_size, d.validation_size, d.test_size) == (54000, 6000, 10000)
    tx, ty = _epoch(d.train)
    vx, vy = _epoch(d.validation)
    assert len(tx) == 54000 and len(vx) == 6000

    def counts(x, y):
        return collections.Counter(img.tobytes() + bytes([label]) for img, label in zip(x, y))

    raw_x = data.read_idx(os.path.join(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz"))[..., None]
    raw_y = data.read_idx(os.path.join(FASHION_MNIST_DIR, "train-labels-idx1-ubyte.gz"))
    held_out = counts(_raw(vx, d), vy)
    assert counts(_raw(tx, d), ty) + held_out == counts(raw_x, raw_y)
    assert held_out != counts(raw_x[:6000], raw_y[:6000]) and held_out != counts(raw_x[-6000:], raw_y[-6000:])
    assert len(np.unique(vy)) == 10
    other = data.load("fashion_mnist", seed=1, validation_split=0.1, batch_size=2000)
    np.testing.assert_array_equal(_epoch(other.validation)[1], vy)


def test_fashion_mnist_from_data_dir_of_idx_files(tmp_path):
    """``data_dir`` of IDX files (gzipped, or in a fashion-mnist/ child) wins over the Debian copy."""
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 256, (30, 28, 28)).astype(np.uint8), (np.arange(30) % 10).astype(np.uint8)
    xt, yt = rng.integers(0, 256, (10, 28, 28)).astype(np.uint8), np.arange(10).astype(np.uint8)
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for stem, arr in zip(data._FASHION_FILES, (x, y, xt, yt)):
        _write_idx(str(folder / f"{stem}.gz"), arr)
    d = data.load("fashion_mnist", data_dir=str(tmp_path), batch_size=64)
    assert (d.train_size, d.test_size, d.source) == (30, 10, str(folder))
    test_x, test_y = _epoch(d.test)
    np.testing.assert_array_equal(_raw(test_x, d)[..., 0], xt)
    np.testing.assert_array_equal(test_y, yt)
    train_x, train_y = _epoch(data.load("fashion_mnist", data_dir=str(folder), augment=False).train)
    assert sorted(map(bytes, _raw(train_x, d))) == sorted(map(bytes, x[..., None]))


def test_augmentation_is_pad_crop_flip_of_the_original():
    """Each augmented image is a zero-padded, shifted crop of its original, sometimes mirrored;
    shapes are kept and most images really change."""
    plain = data.load("fashion_mnist", seed=3, train_limit=64, augment=False, batch_size=64)
    aug = data.load("fashion_mnist", seed=3, train_limit=64, augment=True, batch_size=64)
    (px, py), (ax, ay) = next(iter(plain.train)), next(iter(aug.train))
    assert ax.shape == px.shape == (64, 28, 28, 1)
    np.testing.assert_array_equal(py, ay)  # same shuffle order; only the pixels differ
    originals, augmented = _raw(px.numpy(), plain), _raw(ax.numpy(), aug)
    all_matches = []  # every (dy, dx, flip) reproducing each image: black borders allow several
    for orig, out in zip(originals, augmented):
        padded = np.pad(orig, ((4, 4), (4, 4), (0, 0)))
        crops = {(dy, dx): padded[dy: dy + 28, dx: dx + 28] for dy in range(9) for dx in range(9)}
        matches = [
            (dy, dx, flip)
            for (dy, dx), crop in crops.items()
            for flip in (False, True)
            if np.array_equal(crop[:, ::-1] if flip else crop, out)
        ]
        assert matches, "augmented image is not a pad-crop-flip of its original"
        all_matches.append(matches)
    assert any(all(flip for _, _, flip in m) for m in all_matches)  # some images must be mirrored
    assert any(not any(flip for _, _, flip in m) for m in all_matches)  # and some must not
    assert any(all(max(abs(dy - 4), abs(dx - 4)) > 2 for dy, dx, _ in m) for m in all_matches)  # pad 4, not 2
    assert sum(not np.array_equal(o, a) for o, a in zip(originals, augmented)) > 48


@pytest.mark.parametrize(
    "name,classes,reference_stats",
    [
        ("cifar10", 10, ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))),
        ("cifar100", 100, ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))),
    ],
)
def test_cifar_through_tfds(tmp_path, name, classes, reference_stats):
    """CIFAR goes through tensorflow-datasets' builder; tfds' mock data (MockPolicy.USE_CODE needs
    no downloaded metadata) replaces only the records, so our loader's output must be exactly
    tfds' examples, normalised with the dataset's statistics."""
    with tfds.testing.mock_data(num_examples=24, policy=tfds.testing.MockPolicy.USE_CODE):
        d = data.load(name, data_dir=str(tmp_path), batch_size=8, validation_split=0.25)
        ref_x, ref_y = next(iter(tfds.load(name, split="test", as_supervised=True).batch(24)))
    assert d.source.startswith("tfds:") and (d.num_classes, d.input_shape) == (classes, (32, 32, 3))
    assert (d.mean, d.std) == reference_stats  # the authors' per-channel statistics
    assert (d.train_size, d.validation_size, d.test_size) == (18, 6, 24)
    x, y = next(iter(d.train))
    assert x.shape == (8, 32, 32, 3) and y.dtype == tf.int64
    test_x, test_y = _epoch(d.test)
    np.testing.assert_array_equal(_raw(test_x, d), ref_x.numpy())
    np.testing.assert_array_equal(test_y, ref_y.numpy())
    assert test_y.max() < classes


def test_imagenet_through_tfds_resnet_preprocessing(tmp_path):
    """ImageNet goes through tensorflow-datasets; any image size comes out 224x224x3, train crops
    are random (two seeds differ), evaluation crops are deterministic."""
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        d = data.load("imagenet2012", data_dir=str(tmp_path), batch_size=6, seed=0)
        e = data.load("imagenet2012", data_dir=str(tmp_path), batch_size=6, seed=1)
        pipelines = (d.train, d.train_stream(seed=5).batch(6), d.test, e.test)
        (x, y), (x2, _), (t1, _), (t2, _) = (next(iter(ds)) for ds in pipelines)
    assert (d.num_classes, d.input_shape) == (1000, (224, 224, 3))
    assert x.shape == x2.shape == t1.shape == (6, 224, 224, 3) and int(tf.reduce_max(y)) < 1000
    assert not np.allclose(np.sort(x.numpy().ravel()), np.sort(x2.numpy().ravel()))
    np.testing.assert_array_equal(t1, t2)


def _tiny_imagenet_tree(root) -> dict[str, int]:
    """A small Tiny-ImageNet folder in the standard layout; every image's brightness encodes its class.

    wnids.txt is not in sorted order, and val_annotations.txt lists the files in an order
    unrelated to their names or classes, so a loader that labels by position fails.
    """
    wnids = ["n09999999", "n01443537", "n04067472"]  # class index = rank in sorted order
    level = {w: 30 + 90 * sorted(wnids).index(w) for w in wnids}
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for w in wnids:
        (root / "train" / w / "images").mkdir(parents=True)
        (root / "train" / w / f"{w}_boxes.txt").write_text("")
        for i in range(4):
            shape = (64, 64) if (w == "n04067472" and i == 0) else (64, 64, 3)  # one greyscale JPEG
            image = Image.fromarray(np.full(shape, level[w], np.uint8))
            image.save(root / "train" / w / "images" / f"{w}_{i}.JPEG")
    (root / "val" / "images").mkdir(parents=True)
    val_classes = {f"val_{i}.JPEG": w for i, w in enumerate(["n09999999", "n01443537", "n04067472"] * 2)}
    val_classes["val_1.JPEG"], val_classes["val_4.JPEG"] = "n04067472", "n01443537"
    for fname, w in val_classes.items():
        Image.fromarray(np.full((64, 64, 3), level[w], np.uint8)).save(root / "val" / "images" / fname)
    order = ["val_3.JPEG", "val_0.JPEG", "val_5.JPEG", "val_1.JPEG", "val_4.JPEG", "val_2.JPEG"]
    lines = [f"{f}\t{val_classes[f]}\t0\t0\t63\t63" for f in order]
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return {f: sorted(wnids).index(w) for f, w in val_classes.items()}


def test_tiny_imagenet_folder_labels(tmp_path):
    """Labels of train images come from their class folder and of val images from
    val_annotations.txt, with class index = rank of the wnid; 64x64x3 even for greyscale files."""
    root = tmp_path / "tiny-imagenet-200"
    root.mkdir()
    val_labels = _tiny_imagenet_tree(root)
    d = data.load("tiny_imagenet", data_dir=str(tmp_path), augment=False, batch_size=5)
    assert (d.num_classes, d.input_shape, d.source) == (200, (64, 64, 3), str(root))
    assert (d.train_size, d.test_size) == (12, 6)

    def class_of(images):
        return np.round((_raw(images, d).mean(axis=(1, 2, 3)) - 30) / 90).astype(int)

    test_x, test_y = _epoch(d.test)
    np.testing.assert_array_equal(test_y, [val_labels[f"val_{i}.JPEG"] for i in range(6)])
    np.testing.assert_array_equal(class_of(test_x), test_y)
    train_x, train_y = _epoch(d.train)
    assert train_x.shape == (12, 64, 64, 3) and sorted(train_y) == [0] * 4 + [1] * 4 + [2] * 4
    np.testing.assert_array_equal(class_of(train_x), train_y)
    held = data.load("tiny_imagenet", data_dir=str(root), validation_split=0.25)
    assert (held.train_size, held.validation_size) == (9, 3)
    aug_x, _ = _epoch(held.train)
    assert aug_x.shape == (9, 64, 64, 3)


def test_missing_data_says_where_it_looked_and_how_to_get_it(tmp_path):
    """Each loader's missing-data error names the searched paths and the way to get the data."""
    cases = [
        ("fashion_mnist", {}, [str(tmp_path / "nothing"), "dataset-fashion-mnist", "--data_dir"]),
        ("tiny_imagenet", {}, [str(tmp_path / "nothing" / "tiny-imagenet-200"), "tiny-imagenet-200.zip"]),
        ("cifar10", {}, [str(tmp_path / "nothing"), "tfds build cifar10", "--data_dir=DIR",
                         "train.data.load('cifar10', data_dir=DIR, download=True)"]),  # no flag offers download
        ("imagenet2012", {}, [str(tmp_path / "nothing" / "downloads" / "manual"), "ILSVRC2012_img_val.tar"]),
        ("imagenet2012", {"manual_dir": str(tmp_path / "archives")}, [str(tmp_path / "archives")]),
    ]
    for name, kwargs, needles in cases:
        with pytest.raises(data.DataNotFoundError) as e:
            data.load(name, data_dir=str(tmp_path / "nothing"), **kwargs)
        assert all(n in str(e.value) for n in needles), (name, str(e.value))
    root = tmp_path / "tiny-imagenet-200"
    root.mkdir()
    _tiny_imagenet_tree(root)
    os.remove(root / "val" / "images" / "val_2.JPEG")
    with pytest.raises(data.DataNotFoundError, match="val_2.JPEG"):
        data.load("tiny_imagenet", data_dir=str(tmp_path))

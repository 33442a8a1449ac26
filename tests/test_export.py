"""Export: SavedModels (sparse / dense storage) and TFLite files reload to the same outputs, zeros and report."""
import json
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import grasp_tf
from grasp_tf import masking
from grasp_tf.prunable import prunable_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def convnet():
    """Small Fashion-MNIST CNN: Conv2D, BatchNorm (non-trivial statistics), Dropout (a seed variable), Dense."""
    inp = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Conv2D(16, 3, activation="relu", name="conv1")(inp)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(32, 3, name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.3)(x)
    model = keras.Model(inp, keras.layers.Dense(10, name="fc")(x))
    rng = np.random.default_rng(0)
    bn = model.get_layer("bn")
    bn.moving_mean.assign(rng.normal(0, 0.1, 32).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, 32).astype("float32"))
    return model


def mlp():
    """784-512-512-10 MLP: its variables, not the graph, dominate a SavedModel's size."""
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(512, activation="relu", name="fc1"),
                             keras.layers.Dense(512, activation="relu", name="fc2"),
                             keras.layers.Dense(10, name="fc3")])


def magnitude_masks(model, sparsity):
    """Global |w| masks (cheap; the scoring method is not under test here)."""
    return masking.masks_from_scores({w.key: np.abs(w.variable.numpy()) for w in prunable_weights(model)}, sparsity)


@pytest.fixture
def pruned():
    """The CNN pruned to 90% and its masks."""
    model = convnet()
    masks = magnitude_masks(model, 0.9)
    return grasp_tf.apply_masks(model, masks), masks


def du(path):
    """Bytes of every file under ``path``."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def run_tflite(path, x):
    """Outputs of the TFLite file on ``x`` in TF's interpreter (default XNNPACK delegate)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(model_path=str(path))
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


@pytest.mark.parametrize("storage", ["sparse", "dense"])
def test_saved_model_round_trip(tmp_path, pruned, fashion_mnist_slice, storage):
    model, masks = pruned
    x, _ = fashion_mnist_slice
    expected = model.predict(x, verbose=0)
    report = grasp_tf.export_saved_model(model, tmp_path / "export", storage=storage)

    loaded = tf.saved_model.load(str(tmp_path / "export"))
    for _ in range(2):  # the first call fills the sparse cache, the second reads it
        np.testing.assert_allclose(loaded.serve(x).numpy(), expected, atol=1e-5, rtol=0)
    signature = loaded.signatures["serving_default"]
    np.testing.assert_allclose(signature(image=tf.constant(x))["output_0"].numpy(), expected, atol=1e-5, rtol=0)
    if storage == "dense":  # Keras' TFSMLayer needs fully-shaped variables: dense storage only (docs/export.md)
        layer = keras.layers.TFSMLayer(str(tmp_path / "export"), call_endpoint="serve")
        np.testing.assert_allclose(layer(x).numpy(), expected, atol=1e-5, rtol=0)

    weights = {k: v.numpy() for k, v in loaded.dense_weights().items()}
    stripped = grasp_tf.strip_pruning(model)
    for layer in stripped.layers:
        for var in layer.weights:
            np.testing.assert_array_equal(weights[f"{layer.name}/{var.name}"], var.numpy())
    for key, mask in masks.items():
        np.testing.assert_array_equal(weights[key] != 0, mask, err_msg=f"{key}: zeros differ from the mask")

    with open(tmp_path / "export" / "sparsity.json") as f:
        assert json.load(f) == report
    assert report["storage"] == storage and report["format"] == "saved_model"
    for key, mask in masks.items():
        entry = report["weights"][key]
        assert (entry["total"], entry["kept"], entry["nonzero"]) == (mask.size, mask.sum(), mask.sum())
        assert entry["stored_values"] == (mask.sum() if storage == "sparse" else mask.size)
    assert report["global"]["sparsity"] == pytest.approx(masking.sparsity_of(masks))
    pruned_count = sum(m.size - m.sum() for m in masks.values())
    assert report["parameters"]["dense"] - report["parameters"]["sparse"] == pruned_count
    assert report["size"]["raw_bytes"] == du(tmp_path / "export") - os.path.getsize(tmp_path / "export" / "sparsity.json")


def test_sparse_saved_model_is_a_tenth_of_dense_at_98_percent(tmp_path):
    base = mlp()
    model = grasp_tf.apply_masks(base, magnitude_masks(base, 0.98))
    dense = grasp_tf.export_saved_model(model, tmp_path / "dense", storage="dense")
    sparse = grasp_tf.export_saved_model(model, tmp_path / "sparse")
    assert sparse["size"]["raw_bytes"] * 10 <= dense["size"]["raw_bytes"], (sparse["size"], dense["size"])
    assert sparse["size"]["gzip_bytes"] < dense["size"]["gzip_bytes"]
    nonzero = sum(np.count_nonzero(v) for v in grasp_tf.strip_pruning(model).get_weights())
    assert sparse["parameters"]["stored"] == nonzero  # exactly the non-zero values, nothing else


def test_every_index_encoding_reloads_exactly(tmp_path):
    """Each kernel gets the cheapest encoding for its pattern, and each decodes in the graph to the same values."""
    rng = np.random.default_rng(0)
    n = 300 * 300
    patterns = {"bitmask": rng.random(n) < 0.5, "gaps_uint8": rng.random(n) < 0.05,
                "gaps_uint16": rng.random(n) < 0.003, "indices_int32": np.isin(np.arange(n), [5, 80_000])}
    model = keras.Sequential([keras.Input((300,))] + [keras.layers.Dense(300, name=k) for k in patterns])
    for kind, keep in patterns.items():
        kernel = model.get_layer(kind).kernel
        kernel.assign(kernel.numpy() * keep.reshape(300, 300))
    report = grasp_tf.export_saved_model(model, tmp_path / "export")
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    weights = loaded.dense_weights()
    for kind in patterns:
        assert report["weights"][f"{kind}/kernel"]["stored_as"] == kind
        np.testing.assert_array_equal(weights[f"{kind}/kernel"].numpy(), model.get_layer(kind).kernel.numpy())
    x = rng.normal(size=(4, 300)).astype("float32")
    np.testing.assert_allclose(loaded.serve(x).numpy(), model(x).numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("sparse", [True, False])
def test_tflite_round_trip(tmp_path, pruned, fashion_mnist_slice, sparse):
    """TFLite (XNNPACK) sums in another order than TF; on these O(1) logits the difference stays below 1e-5."""
    model, masks = pruned
    x, _ = fashion_mnist_slice
    report = grasp_tf.export_tflite(model, tmp_path / "model.tflite", sparse=sparse)
    np.testing.assert_allclose(run_tflite(tmp_path / "model.tflite", x), model.predict(x, verbose=0),
                               atol=1e-5, rtol=0)
    assert report["size"]["raw_bytes"] == os.path.getsize(tmp_path / "model.tflite")
    assert report["global"]["sparsity"] == pytest.approx(masking.sparsity_of(masks))
    dense_bytes = 4 * report["parameters"]["dense"]
    assert (report["size"]["raw_bytes"] < dense_bytes / 3) == sparse  # sparse=True really compresses at 90%


def test_unpruned_model_exports_as_zero_sparsity(tmp_path, fashion_mnist_slice):
    model = convnet()
    x, _ = fashion_mnist_slice
    report = grasp_tf.export_saved_model(model, tmp_path / "export")
    assert report["global"]["sparsity"] == 0.0
    assert all(w["stored_as"] == "dense" and w["kept"] == w["total"] for w in report["weights"].values())
    loaded = tf.saved_model.load(str(tmp_path / "export"))  # keep a reference while calling it
    np.testing.assert_allclose(loaded.serve(x).numpy(), model.predict(x, verbose=0), atol=1e-5, rtol=0)


def test_existing_path_is_refused_unless_overwrite(tmp_path, pruned):
    model, _ = pruned
    target = tmp_path / "export"
    grasp_tf.export_saved_model(model, target, storage="dense")
    with pytest.raises(FileExistsError, match="overwrite=True") as refused:
        grasp_tf.export_saved_model(model, target)
    assert refused.value.filename == str(target)  # what train.export names in its one line
    assert json.loads((target / "sparsity.json").read_text())["storage"] == "dense"  # untouched
    grasp_tf.export_saved_model(model, target, overwrite=True)
    assert json.loads((target / "sparsity.json").read_text())["storage"] == "sparse"
    assert sorted(os.listdir(tmp_path)) == ["export"]  # no temporary directories left

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a SavedModel directory"):
        grasp_tf.export_saved_model(model, tmp_path / "notes", overwrite=True)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"

    (tmp_path / "model.tflite").write_bytes(b"old")
    with pytest.raises(FileExistsError):
        grasp_tf.export_tflite(model, tmp_path / "model.tflite")
    assert (tmp_path / "model.tflite").read_bytes() == b"old"


def test_unwritable_path_raises_oserror_and_writes_nothing(tmp_path, pruned):
    model, _ = pruned
    (tmp_path / "file").write_text("not a directory")
    for export in (grasp_tf.export_saved_model, grasp_tf.export_tflite):
        with pytest.raises(OSError, match="not a directory"):
            export(model, tmp_path / "file" / "export")
        with pytest.raises(OSError, match="Cannot write"):
            export(model, tmp_path / "file" / "deeper" / "export")
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_failed_conversion_leaves_nothing(tmp_path, pruned):
    """TF 2.21's TFLite runs float16 sparse tensors to NaN: refused after conversion, before anything is published."""
    model, _ = pruned
    with pytest.raises(ValueError, match="TFLite cannot run"):
        grasp_tf.export_tflite(model, tmp_path / "model.tflite", quantize="float16")
    assert os.listdir(tmp_path) == []


def test_bad_arguments(tmp_path, pruned):
    model, _ = pruned
    with pytest.raises(ValueError, match="storage"):
        grasp_tf.export_saved_model(model, tmp_path / "a", storage="csr")
    with pytest.raises(ValueError, match="quantize"):
        grasp_tf.export_tflite(model, tmp_path / "a.tflite", quantize="int4")
    with pytest.raises(ValueError, match="not built"):
        grasp_tf.export_saved_model(keras.Sequential([keras.layers.Dense(2)]), tmp_path / "b")
    assert os.listdir(tmp_path) == []


@pytest.mark.subprocess
def test_cli_exports_a_run_directory(tmp_path, pruned):
    model, masks = pruned
    model.save(tmp_path / "model.keras")
    cmd = [sys.executable, "-m", "train.export", f"--run_dir={tmp_path}", "--tflite"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "90.00% of" in done.stdout
    report = json.loads((tmp_path / "export" / "sparsity.json").read_text())
    assert report["global"]["kept"] == sum(m.sum() for m in masks.values())
    assert (tmp_path / "export.tflite").is_file()
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2
    # The last line (TF's start-up lines may precede it: conftest sets TF_CPP_MIN_LOG_LEVEL, which shows them).
    assert again.stderr.strip().splitlines()[-1:] == [
        f"error: {tmp_path / 'export'} already exists; add --overwrite to replace it"]

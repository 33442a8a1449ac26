"""One key per weight: sub-models with equally named layers, composed, keep every mask, and strip/export verify."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import grasp_tf
from grasp_tf import cloning, export, keys

X = np.random.default_rng(0).standard_normal((4, 16)).astype("float32")


def sub(name, seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((16,)), keras.layers.Dense(12, name="hidden"),
                             keras.layers.Dense(5, name="out")], name=name)


def every(step, shape):
    """A keep-mask keeping every ``step``-th entry in C order: exactly ceil(size / step) kept."""
    return (np.arange(int(np.prod(shape))) % step == 0).reshape(shape)


A_MASKS = {"hidden/kernel": every(5, (16, 12)), "out/kernel": every(5, (12, 5))}  # 39 + 12 kept
B_MASKS = {"hidden/kernel": every(2, (16, 12)), "out/kernel": every(2, (12, 5))}  # 96 + 30 kept


def composed(pruned=True):
    """Two sub-models pruned separately (or not), composed into one model: their layers share names."""
    a, b = sub("a", 1), sub("b", 2)
    if pruned:
        a, b = grasp_tf.apply_masks(a, A_MASKS), grasp_tf.apply_masks(b, B_MASKS)
    inp = keras.Input((16,))
    return keras.Model(inp, keras.layers.Add()([a(inp), b(inp)]), name="composed")


def full(masks, prefix):
    return {f"{prefix}/{k}": m for k, m in masks.items()}


def test_composed_sub_models_keep_every_mask_and_count():
    model = composed()
    masks = grasp_tf.get_masks(model)
    assert sorted(masks) == ["a/hidden/kernel", "a/out/kernel", "b/hidden/kernel", "b/out/kernel"]
    for key, want in {**full(A_MASKS, "a"), **full(B_MASKS, "b")}.items():
        np.testing.assert_array_equal(masks[key], want, err_msg=key)
    report = grasp_tf.sparsity_report(model)
    assert (report["global"]["kept"], report["global"]["total"]) == (177, 504)  # was (126, 252): b only
    assert report["global"]["nonzero"] == 177
    assert report["weights"]["a/hidden/kernel"]["layer"] == "hidden"


def test_composed_model_strips_and_exports_the_same_network(tmp_path):
    model = composed()
    want = np.asarray(model(X))
    stripped = grasp_tf.strip_pruning(model)
    np.testing.assert_array_equal(stripped(X), want)  # was max |diff| ~0.9: one sub-model's masks on both
    assert grasp_tf.sparsity_report(stripped)["global"]["nonzero"] == 177
    for storage in ("sparse", "dense"):
        grasp_tf.export_saved_model(model, tmp_path / storage, storage=storage)
        loaded = tf.saved_model.load(str(tmp_path / storage))
        np.testing.assert_allclose(loaded.serve(X), want, rtol=1e-6, atol=1e-6)
        weights = loaded.dense_weights()
        assert {"a/hidden/kernel", "b/hidden/kernel", "a/hidden/bias", "b/out/bias"} <= set(weights)
        assert int(np.count_nonzero(weights["a/hidden/kernel"])) == 39


def test_keys_are_short_unless_they_collide_and_masks_move_between_plain_pruned_and_stripped():
    plain = composed(pruned=False)
    table = keys.index(plain)
    assert sorted(e.key for e in table.entries if e.layer.name == "hidden") == [
        "a/hidden/bias", "a/hidden/kernel", "b/hidden/bias", "b/hidden/kernel"]
    assert table.ambiguous == {}
    masks = grasp_tf.get_masks(composed())
    again = grasp_tf.apply_masks(plain, masks)  # the masks of the composed model apply to its plain twin
    assert sorted(grasp_tf.get_masks(again)) == sorted(masks)
    assert grasp_tf.sparsity_report(again)["global"]["kept"] == 177
    alone = sub("c", 3)  # no collision: today's short keys
    assert [w.key for w in grasp_tf.prunable.prunable_weights(alone)] == ["hidden/kernel", "out/kernel"]


def test_short_key_of_a_composed_model_is_refused_with_the_full_keys():
    plain = composed(pruned=False)
    full_keys = r"\['a/hidden/kernel', 'b/hidden/kernel'\]"
    with pytest.raises(ValueError, match=r"'hidden/kernel' names 2 weights .* " + full_keys):
        grasp_tf.apply_masks(plain, {"hidden/kernel": A_MASKS["hidden/kernel"]})


def test_missing_masks_are_named_and_stay_dense():
    plain = composed(pruned=False)
    with pytest.warns(UserWarning, match=r"2 prunable weight\(s\) get no mask and stay dense: b/hidden/kernel, "
                                         r"b/out/kernel\."):
        pruned = grasp_tf.apply_masks(plain, full(A_MASKS, "a"))
    assert grasp_tf.sparsity_report(pruned)["global"]["kept"] == 39 + 12 + 192 + 60


class Twins(keras.Model):
    """Two attributes given the same layer name: even their full paths are equal."""

    def __init__(self):
        super().__init__()
        self.first = keras.layers.Dense(3, name="same")
        self.second = keras.layers.Dense(3, name="same")

    def call(self, x):
        return self.second(self.first(x))


def test_weights_equal_even_by_full_path_are_refused():
    model = Twins()
    model(np.zeros((1, 3), "float32"))
    assert sorted(keys.index(model).ambiguous) == ["same/bias", "same/kernel"]
    with pytest.raises(ValueError, match="2 different weights of the model are all known as 'same/kernel'"):
        grasp_tf.sparsity_report(model)


def test_a_strip_that_changes_the_network_is_an_error(monkeypatch):
    model = composed()
    copy = cloning.copy_weights

    def corrupting_copy(source, target, table, masks):
        copy(source, target, table, masks)
        if not any(keys.is_wrapper(l) for l in target.layers[1].layers):  # the stripped clone only
            kernel = target.layers[1].layers[0].kernel
            kernel.assign(kernel + 0.5)

    monkeypatch.setattr(cloning, "copy_weights", corrupting_copy)
    with pytest.raises(ValueError, match=r"strip_pruning\('composed'\) does not compute the masked model: max"):
        grasp_tf.strip_pruning(model)


@pytest.mark.parametrize("storage", ["sparse", "dense"])
def test_an_export_that_changes_the_network_writes_nothing(tmp_path, monkeypatch, storage):
    model = composed()
    wrong = grasp_tf.strip_pruning(model)
    wrong.get_layer("b").get_layer("out").bias.assign(np.full(5, 0.25, "float32"))
    monkeypatch.setattr(export, "strip_pruning", lambda m: wrong)
    with pytest.raises(ValueError, match=f"The {storage} SavedModel export of 'composed' does not compute the "
                                         r"masked model: max \|Δ\| 0\.25"):
        grasp_tf.export_saved_model(model, tmp_path / "out", storage=storage)
    with pytest.raises(ValueError, match="converted to TFLite for 'composed' does not compute the masked model"):
        grasp_tf.export_tflite(model, tmp_path / "out.tflite")
    assert os.listdir(tmp_path) == []


def test_every_conv_and_dense_kernel_is_prunable_by_default_in_both_keras():
    """Keras 3 names DepthwiseConv2D's weight ``kernel``, tf_keras ``depthwise_kernel``: both are pruned."""
    from grasp_tf.prunable import prunable_weights

    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.DepthwiseConv2D(3, name="dw"),
                              keras.layers.SeparableConv2D(4, 3, name="sep"), keras.layers.Flatten(),
                              keras.layers.Dense(2, name="out")])
    assert [w.key for w in prunable_weights(model)] == [
        "dw/kernel", "sep/depthwise_kernel", "sep/pointwise_kernel", "out/kernel"]

"""Fixed-mask wrapping: masks applied, read back, kept at exactly zero through training, saving and stripping."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from grasp_tf import FixedMaskWrapper, apply_masks, get_masks, keys, sparsity_report, strip_pruning
from grasp_tf.prunable import prunable_weights

X = np.random.default_rng(1).random((8, 8, 8, 3)).astype("float32")


def random_masks(model, density=0.5, seed=0, prunable=None):
    """Random keep-masks for the model's prunable weights (scoring is not under test here)."""
    rng = np.random.default_rng(seed)
    return {pw.key: rng.random(tuple(pw.variable.shape)) < density for pw in prunable_weights(model, prunable)}


def values(model, names):
    """Current value of each keyed weight of ``model``."""
    table = keys.index(model)
    return {k: table.by_key[k].variable.numpy() for k in names}


def assert_pruned_exactly_zero(model, masks):
    for key, value in values(model, masks).items():
        assert np.count_nonzero(value[~masks[key]]) == 0, f"{key}: pruned weights moved"


def assert_masks_equal(got, want):
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def convnet(name="net"):
    """Functional CNN with every default-prunable kind we use: Conv2D, BN, SeparableConv2D, Dense."""
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, name="conv")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.SeparableConv2D(5, 3, activation="relu", name="sep")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(4, name="fc")(x), name=name)


def masked_reference(model, masks):
    """An unwrapped copy of ``model`` whose masked weights are multiplied by their masks."""
    ref = keras.models.clone_model(model)
    ref.set_weights(model.get_weights())
    table = keys.index(ref)
    for key, mask in masks.items():
        var = table.by_key[key].variable
        var.assign(var.numpy() * mask)
    return ref


def sgd(**kwargs):
    return keras.optimizers.SGD(0.05, momentum=0.9, **kwargs)


def test_wrapped_model_matches_masked_plain_model_and_leaves_caller_untouched():
    model = convnet()
    model.get_layer("bn").moving_variance.assign(np.linspace(0.5, 2.0, 6))  # not the initial value
    masks = random_masks(model)
    before = [v.numpy().copy() for v in model.weights]
    pruned = apply_masks(model, masks)

    # Every unmasked weight (BN statistics, biases) was copied exactly.
    for key, value in values(model, keys.index(model).by_key).items():
        np.testing.assert_array_equal(values(pruned, [key])[key], value * masks.get(key, 1), err_msg=key)
    assert pruned is not model
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.weights)), "caller's weights changed"
    assert not {id(v) for v in model.weights} & {id(v) for v in pruned.weights}, "variables shared"
    assert {l.name for l in pruned.layers if isinstance(l, FixedMaskWrapper)} == {
        "prune_low_magnitude_conv", "prune_low_magnitude_sep", "prune_low_magnitude_fc"}
    assert_masks_equal(get_masks(pruned), masks)
    assert_pruned_exactly_zero(pruned, masks)
    ref = masked_reference(model, masks)
    for training in (False, True):
        np.testing.assert_array_equal(pruned(X, training=training), ref(X, training=training))


def test_wrapper_surface_is_prune_low_magnitude_compatible():
    dense = keras.layers.Dense(3, name="d")
    mask = np.array([[1, 0, 1], [0, 1, 1]], bool)
    wrapper = FixedMaskWrapper(dense, masks={"kernel": mask})
    model = keras.Sequential([keras.Input((2,)), wrapper])

    assert wrapper.name == "prune_low_magnitude_d" and wrapper.layer is dense
    [(weight, mask_var, threshold)] = wrapper.pruning_vars
    assert weight is dense.kernel
    assert {v.name for v in (mask_var, threshold, wrapper.pruning_step)} == {"mask", "threshold", "pruning_step"}
    assert not any(v.trainable for v in (mask_var, threshold, wrapper.pruning_step))
    assert {id(v) for v in model.trainable_weights} == {id(dense.kernel), id(dense.bias)}
    np.testing.assert_array_equal(mask_var.numpy(), mask.astype("float32"))
    assert np.count_nonzero(dense.kernel.numpy()[~mask]) == 0


@pytest.mark.parametrize("decay", ["optimizer_weight_decay", "l2_kernel_regularizer"])
def test_pruned_weights_stay_exactly_zero_after_50_sgd_momentum_decay_steps(decay):
    reg = keras.regularizers.L2(1e-2) if decay == "l2_kernel_regularizer" else None
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, kernel_regularizer=reg, name="conv")(inp)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inp, keras.layers.Dense(4, kernel_regularizer=reg, name="fc")(x))
    masks = random_masks(model)
    pruned = apply_masks(model, masks)
    start = values(pruned, masks)
    pruned.compile(optimizer=sgd(weight_decay=1e-2 if reg is None else None), loss="mse", jit_compile=False)
    rng = np.random.default_rng(2)
    history = pruned.fit(rng.random((400, 8, 8, 3)), rng.random((400, 4)), batch_size=8, epochs=1, verbose=0)

    assert int(pruned.optimizer.iterations.numpy()) == 50
    assert np.isfinite(history.history["loss"][0])
    assert_pruned_exactly_zero(pruned, masks)
    assert_masks_equal(get_masks(pruned), masks)
    for key, value in values(pruned, masks).items():  # the kept weights did train
        assert np.all(value[masks[key]] != start[key][masks[key]]), key


def test_save_load_keeps_masks_outputs_and_zeros(tmp_path):
    masks = random_masks(convnet())
    pruned = apply_masks(convnet(), masks)
    pruned.compile(optimizer=sgd(), loss="mse", jit_compile=False)
    pruned.fit(X, np.ones((8, 4)), verbose=0)
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    loaded = keras.models.load_model(path)

    assert isinstance(loaded.get_layer("prune_low_magnitude_sep"), FixedMaskWrapper)
    assert_masks_equal(get_masks(loaded), masks)
    np.testing.assert_array_equal(loaded(X), pruned(X))
    loaded.fit(X, np.zeros((8, 4)), verbose=0)  # the restored optimizer keeps training masked
    assert_pruned_exactly_zero(loaded, masks)


def test_strip_pruning_bakes_zeros_and_keeps_outputs():
    model = convnet()
    masks = random_masks(model)
    pruned = apply_masks(model, masks)
    pruned.compile(optimizer=sgd(), loss="mse", jit_compile=False)
    pruned.fit(X, np.ones((8, 4)), verbose=0)
    stripped = strip_pruning(pruned)

    assert stripped is not pruned
    assert not any(isinstance(l, FixedMaskWrapper) for l in stripped.layers)
    assert [type(l) for l in stripped.layers] == [type(l) for l in model.layers]
    assert get_masks(stripped) == {}
    assert_pruned_exactly_zero(stripped, masks)
    for training in (False, True):
        np.testing.assert_array_equal(stripped(X, training=training), pruned(X, training=training))
    report = sparsity_report(stripped)["weights"]
    assert all(report[k]["nonzero"] == values(pruned, [k])[k].astype(bool).sum() for k in masks)


def test_masks_may_name_any_weight_and_inner_state_updates_pass_through():
    inp = keras.Input((6,))
    x = keras.layers.Dense(5, activity_regularizer="l2", name="d1")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inp, keras.layers.Dense(2, name="d2")(x))
    masks = random_masks(model, prunable=["d1/kernel", "d1/bias", "bn/gamma"])
    with pytest.warns(UserWarning, match=r"1 prunable weight\(s\) get no mask and stay dense: d2/kernel\.$"):
        pruned = apply_masks(model, masks)
    ref = masked_reference(model, masks)
    x6 = np.random.default_rng(3).random((8, 6)).astype("float32")

    assert_masks_equal(get_masks(pruned), masks)
    for training in (True, False):  # the training flag reaches the wrapped BatchNormalization
        np.testing.assert_allclose(pruned(x6, training=training), ref(x6, training=training), rtol=1e-6)
    moving_mean = pruned.get_layer("prune_low_magnitude_bn").layer.moving_mean.numpy()
    assert np.any(moving_mean != 0)
    np.testing.assert_allclose(moving_mean, ref.get_layer("bn").moving_mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(sum(pruned.losses), sum(ref.losses), rtol=1e-6)  # activity regularizer kept


def test_nested_models_and_custom_layers_are_masked_in_the_clone():
    @keras.saving.register_keras_serializable(package="test_wrappers")
    class Block(keras.layers.Layer):
        """A custom layer owning a Dense: cloning cannot reach it, so its kernel is masked in place."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = keras.layers.Dense(4, name="block_dense")

        def call(self, x):
            return self.inner(x)

    sub = keras.Sequential([keras.Input((6,)), keras.layers.Dense(6, name="sub_dense")], name="sub")
    inp = keras.Input((6,))
    model = keras.Model(inp, Block(name="block")(sub(inp)), name="outer")
    masks = random_masks(model)
    assert set(masks) == {"sub_dense/kernel", "block_dense/kernel"}
    before = [v.numpy().copy() for v in model.weights]
    pruned = apply_masks(model, masks)

    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.weights))
    assert isinstance(pruned.get_layer("sub").layers[0], FixedMaskWrapper)
    assert_masks_equal(get_masks(pruned), masks)
    x6 = np.random.default_rng(4).random((8, 6)).astype("float32")
    np.testing.assert_array_equal(pruned(x6), masked_reference(model, masks)(x6))
    pruned.compile(optimizer=sgd(weight_decay=1e-2), loss="mse", jit_compile=False)
    pruned.fit(x6, np.ones((8, 4)), epochs=5, verbose=0)
    assert_pruned_exactly_zero(pruned, masks)
    stripped = strip_pruning(pruned)
    assert get_masks(stripped) == {}
    assert_pruned_exactly_zero(stripped, masks)
    np.testing.assert_array_equal(stripped(x6), pruned(x6))


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(6, 3, name="conv")
        self.flat = keras.layers.Flatten()
        self.fc = keras.layers.Dense(3, kernel_constraint="non_neg", name="fc")

    def call(self, x):
        return self.fc(self.flat(self.conv(x)))


def test_subclassed_model_is_masked_in_place_and_stays_zero():
    model = Subclassed()
    model(X)
    masks = random_masks(model)
    out = apply_masks(model, masks)

    assert out is model
    assert_masks_equal(get_masks(model), masks)
    assert_pruned_exactly_zero(model, masks)
    model.compile(optimizer=sgd(weight_decay=1e-2), loss="mse", jit_compile=False)
    rng = np.random.default_rng(5)
    model.fit(rng.random((400, 8, 8, 3)), rng.random((400, 3)), batch_size=8, verbose=0)
    assert_pruned_exactly_zero(model, masks)
    assert np.all(model.fc.kernel.numpy() >= 0), "the layer's own constraint still applies"
    report = sparsity_report(model)["global"]
    assert report["kept"] == sum(int(m.sum()) for m in masks.values())

    assert strip_pruning(model) is model
    assert get_masks(model) == {}
    assert type(model.fc.kernel.constraint).__name__ == "NonNeg"
    assert model.conv.kernel.constraint is None
    assert_pruned_exactly_zero(model, masks)


def test_keras_applications_model_prunes_and_trains():
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10)
    masks = random_masks(model, density=0.2)
    pruned = apply_masks(model, masks)
    assert sum(isinstance(l, FixedMaskWrapper) for l in pruned.layers) == len(masks)
    start = values(pruned, masks)
    pruned.compile(optimizer=sgd(), loss="sparse_categorical_crossentropy", run_eagerly=True)
    rng = np.random.default_rng(6)
    history = pruned.fit(rng.random((16, 32, 32, 3)), rng.integers(0, 10, 16), batch_size=8, verbose=0)

    assert np.isfinite(history.history["loss"][0])
    assert_pruned_exactly_zero(pruned, masks)
    assert not np.array_equal(values(pruned, ["predictions/kernel"])["predictions/kernel"], start["predictions/kernel"])


def test_mirrored_training_keeps_zeros():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = convnet()
    masks = random_masks(model)
    pruned = apply_masks(model, masks)  # outside the scope: the clone still lands on the strategy
    assert all(strategy.extended.variable_created_in_scope(v.value) for v in pruned.weights)
    with strategy.scope():
        pruned.compile(optimizer=sgd(weight_decay=1e-2), loss="mse", jit_compile=False)
    rng = np.random.default_rng(7)
    pruned.fit(rng.random((64, 8, 8, 3)), rng.random((64, 4)), batch_size=16, epochs=2, verbose=0)

    assert int(pruned.optimizer.iterations.numpy()) == 8
    assert_pruned_exactly_zero(pruned, masks)
    assert_masks_equal(get_masks(pruned), masks)


def test_apply_masks_on_a_pruned_model_replaces_named_masks_and_keeps_others():
    model = convnet()
    first = random_masks(model, seed=1)
    second = {"fc/kernel": random_masks(model, seed=2)["fc/kernel"]}
    twice = apply_masks(apply_masks(model, first), second)
    assert_masks_equal(get_masks(twice), {**first, **second})
    assert_pruned_exactly_zero(twice, {**first, **second})


def test_sparsity_report_counts_and_serialises():
    model = convnet()
    masks = random_masks(model, density=0.3)
    report = sparsity_report(apply_masks(model, masks))
    json.dumps(report)
    kept = {k: int(m.sum()) for k, m in masks.items()}
    assert {k: w["kept"] for k, w in report["weights"].items()} == kept
    total = sum(m.size for m in masks.values())
    assert report["global"]["total"] == total and report["global"]["kept"] == sum(kept.values())
    assert report["global"]["sparsity"] == pytest.approx(1 - sum(kept.values()) / total)
    dense = sparsity_report(model)
    assert dense["global"]["kept_fraction"] == 1.0 and not any(w["masked"] for w in dense["weights"].values())


@pytest.mark.parametrize("bad, message", [
    ({"nope/kernel": np.ones((3, 3, 3, 6))}, "does not have"),
    ({"conv/kernel": np.ones((3, 3, 3, 5))}, r"has shape \(3, 3, 3, 5\), the weight has \(3, 3, 3, 6\)"),
    ({"conv/kernel": np.full((3, 3, 3, 6), 0.5)}, "boolean or 0/1"),
    ([np.ones((3, 3, 3, 6))], "must be a dict"),
    ({}, "No masks given"),
])
@pytest.mark.parametrize("kind", ["functional", "subclassed"])
def test_bad_masks_raise_a_clear_error_and_leave_the_model_untouched(bad, message, kind):
    model = convnet() if kind == "functional" else Subclassed()
    model(X)
    before = [v.numpy().copy() for v in model.weights]
    with pytest.raises(ValueError, match=message):
        apply_masks(model, bad)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.weights))
    assert get_masks(model) == {}


def test_wrapper_masks_values_substituted_by_an_enclosing_stateless_call():
    model = convnet()
    masks = random_masks(model)
    pruned = apply_masks(model, masks)
    ones = [np.ones(v.shape, v.dtype) for v in pruned.trainable_variables]
    out, _ = pruned.stateless_call(ones, [v.value for v in pruned.non_trainable_variables], X)
    ref = masked_reference(model, {})
    for var in ref.trainable_variables:
        var.assign(np.ones(var.shape, var.dtype))
    table = keys.index(ref)
    for key, mask in masks.items():
        table.by_key[key].variable.assign(mask.astype("float32"))
    np.testing.assert_allclose(out, ref(X), rtol=1e-6)


def test_mask_key_shared_by_two_weights_is_rejected():
    def block(name):
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="dense")], name=name)

    inp = keras.Input((4,))
    model = keras.Model(inp, block("b2")(block("b1")(inp)))
    with pytest.raises(ValueError, match=r"use their full keys \['b1/dense/kernel', 'b2/dense/kernel'\]"):
        apply_masks(model, {"dense/kernel": np.ones((4, 4), bool)})
    assert get_masks(model) == {}

"""FixedMaskWrapper as a Keras layer: the checks Keras gives its own layers (in the manner of its run_layer_test).

Each case builds fresh wrappers from one factory and checks: the get_config / from_config and
keras.saving serialization round trips (same config, same attributes), build (built, weight
counts), a symbolic call (output shape), an eager call (values against the inner layer run
with ``weight * mask`` by hand), one training step (pruned entries stay zero, kept ones move)
and a .keras save / load of a model holding it (outputs, masks).
"""
import json

import keras
import numpy as np
import pytest

from grasp_tf import FixedMaskWrapper


def keep(shape, seed):
    return np.random.default_rng(seed).random(shape) < 0.5


def config_json(layer):
    return json.dumps(layer.get_config(), sort_keys=True, default=str)


def check_serialization(layer):
    """get_config -> from_config and serialize -> JSON -> deserialize give the same config and attributes."""
    revived = type(layer).from_config(layer.get_config())
    assert config_json(revived) == config_json(layer)
    assert set(dir(revived)) == set(dir(layer))
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is FixedMaskWrapper and config_json(revived) == config_json(layer)
    assert set(dir(revived)) == set(dir(layer))


def run_layer_test(make, input_shape, output_shape, trainable, non_trainable, tmp_path):
    """Our ``run_layer_test`` for a wrapper: ``make()`` returns a fresh, unbuilt wrapper with masks."""
    check_serialization(make())

    layer = make()  # build
    layer.build(input_shape)
    assert layer.built and layer.layer.built
    assert (len(layer.trainable_weights), len(layer.non_trainable_weights)) == (trainable, non_trainable)
    for weight, mask, _ in layer.pruning_vars:
        assert not mask.trainable and np.count_nonzero(np.asarray(weight)[np.asarray(mask) == 0]) == 0

    layer = make()  # symbolic call
    out = layer(keras.KerasTensor((None, *input_shape[1:])))
    assert tuple(out.shape) == (None, *output_shape[1:])
    assert (len(layer.trainable_weights), len(layer.non_trainable_weights)) == (trainable, non_trainable)

    layer = make()  # eager call, against the inner layer with masked weights set by hand
    x = np.random.default_rng(1).standard_normal(input_shape).astype("float32")
    got = np.asarray(layer(x))
    assert got.shape == tuple(output_shape)
    masked = {id(w): np.asarray(w) * np.asarray(m) for w, m, _ in layer.pruning_vars}
    plain = type(layer.layer).from_config(layer.layer.get_config())
    plain.build(input_shape)
    plain.set_weights([masked.get(id(w), np.asarray(w)) for w in layer.layer.weights])
    np.testing.assert_allclose(got, plain(x), rtol=1e-6, atol=1e-6)

    inp = keras.Input(input_shape[1:])  # one training step, then a .keras round trip
    model = keras.Model(inp, layer(inp))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = [np.asarray(w).copy() for w, _, _ in layer.pruning_vars]
    model.fit(x, np.full(output_shape, 3.0, "float32"), verbose=0)
    for (weight, mask, _), start in zip(layer.pruning_vars, before):
        value, kept = np.asarray(weight), np.asarray(mask) != 0
        assert np.count_nonzero(value[~kept]) == 0 and not np.array_equal(value[kept], start[kept])
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded(x), model(x))
    wrapper = [l for l in loaded.layers if isinstance(l, FixedMaskWrapper)][0]
    for (_, want, _), (_, got_mask, _) in zip(layer.pruning_vars, wrapper.pruning_vars):
        np.testing.assert_array_equal(np.asarray(got_mask), np.asarray(want))
    assert (len(wrapper.trainable_weights), len(wrapper.non_trainable_weights)) == (trainable, non_trainable)


CASES = {  # make, input shape, output shape, trainable, non-trainable (mask + threshold per weight, step)
    "dense": (lambda: FixedMaskWrapper(keras.layers.Dense(4, name="d"), masks={"kernel": keep((6, 4), 0)}),
              (3, 6), (3, 4), 2, 3),
    "dense kernel and bias": (lambda: FixedMaskWrapper(keras.layers.Dense(4, name="d"), masks={
        "kernel": keep((6, 4), 0), "bias": keep((4,), 1)}), (3, 6), (3, 4), 2, 5),
    "conv2d": (lambda: FixedMaskWrapper(keras.layers.Conv2D(3, 3, name="c"), masks={"kernel": keep((3, 3, 2, 3), 2)}),
               (2, 5, 5, 2), (2, 3, 3, 3), 2, 3),
    "separable conv2d, default weights": (lambda: FixedMaskWrapper(keras.layers.SeparableConv2D(3, 3, name="s")),
                                          (2, 5, 5, 2), (2, 3, 3, 3), 3, 5),
    "batch norm gamma": (lambda: FixedMaskWrapper(keras.layers.BatchNormalization(name="bn"),
                                                  masks={"gamma": keep((4,), 3)}), (5, 4), (5, 4), 2, 5),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fixed_mask_wrapper_passes_the_layer_checks(case, tmp_path):
    run_layer_test(*CASES[case], tmp_path)


def test_serialization_keeps_weight_names_and_name_not_masks():
    layer = FixedMaskWrapper(keras.layers.Dense(4, name="d"), masks={"kernel": keep((6, 4), 0)})
    config = layer.get_config()
    assert config["weight_names"] == ["kernel"] and config["name"] == "prune_low_magnitude_d"
    revived = FixedMaskWrapper.from_config(config)
    revived.build((None, 6))
    assert np.all(np.asarray(revived.pruning_vars[0][1]) == 1)  # masks live in variables, not the config


def test_mixed_precision_wrapper_computes_in_float16_and_keeps_float32_variables():
    layer = FixedMaskWrapper(keras.layers.Dense(4, dtype="mixed_float16", name="d"), masks={"kernel": keep((6, 4), 0)})
    out = layer(np.ones((2, 6), "float32"))
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    assert {v.dtype for v in layer.weights if v.name != "pruning_step"} == {"float32"}
    assert np.count_nonzero(np.asarray(layer.layer.kernel)[~keep((6, 4), 0)]) == 0

"""Every private Keras / tf_keras symbol grasp_tf relies on still exists and behaves as assumed.

``grasp_tf._keras_internals`` is the only module that touches them; this test calls each of
its functions (``tests/test_layout.py`` checks that none is missed), so a Keras upgrade that
breaks one fails here, by name.
"""
import keras
import numpy as np
import tensorflow as tf

from grasp_tf import _keras_internals as ki


def keras3_model():
    inp = keras.Input((4, 4, 2))
    h = keras.layers.Conv2D(3, 3, name="conv")(inp)
    h = keras.layers.BatchNormalization(name="bn")(h)
    inner = keras.Sequential([keras.layers.Dense(5, name="inner_dense")], name="inner")
    h = inner(keras.layers.Flatten()(h))
    return keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="out")(h))


def tf_keras_model():
    import tf_keras

    inp = tf_keras.Input((4, 4, 2))
    h = tf_keras.layers.BatchNormalization(name="bn")(tf_keras.layers.Conv2D(3, 3, name="conv")(inp))
    return tf_keras.Model(inp, tf_keras.layers.Dense(3, name="out")(tf_keras.layers.Flatten()(h)))


def test_layer_walk_and_own_variables_on_both_kerases():
    model = keras3_model()
    names = [l.name for l in ki.flatten_layers(model)]
    assert "inner_dense" in names and model.name not in names  # nested layers, not the model itself
    dense = model.get_layer("out")
    assert ki.own_variables(dense) == [dense.kernel, dense.bias]
    assert ki.own_variables(model.get_layer("inner")) == []  # sub-layers' variables are not its own
    bn = model.get_layer("bn")
    assert [v.name for v in ki.own_variables(bn)] == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert [l.name for l in ki.child_layers(model.get_layer("inner"))][-1:] == ["inner_dense"]  # one level only
    assert "inner_dense" not in [l.name for l in ki.child_layers(model)]
    legacy = tf_keras_model()
    assert "conv" in [l.name for l in ki.flatten_layers(legacy)]
    assert "conv" in [l.name for l in ki.child_layers(legacy)]
    assert len(ki.own_variables(legacy.get_layer("bn"))) == 4


def test_model_kinds():
    assert ki.is_functional(keras3_model())
    assert not ki.is_functional(keras.Sequential([keras.layers.Dense(1)]))
    assert ki.is_tf_keras_graph_network(tf_keras_model())
    assert not ki.is_tf_keras_graph_network(keras3_model())


def test_dtype_policies_can_be_read_and_swapped_and_restored():
    layer = keras.layers.Dense(2, dtype="mixed_float16")
    before = ki.dtype_policy(layer)
    assert before.compute_dtype == "float16"
    ki.set_dtype_policy(layer, keras.dtype_policies.get("float32"))
    assert layer.compute_dtype == "float32"
    ki.set_dtype_policy(layer, before)
    assert ki.dtype_policy(layer) is before
    legacy = tf_keras_model().get_layer("out")
    ki.set_dtype_policy(legacy, "float16")
    assert ki.dtype_policy(legacy).compute_dtype == "float16"


def test_autocast_scope_runs_float32_variables_in_float64():
    layer = keras.layers.Dense(1, use_bias=False)  # float32 variables, computing in float64:
    layer.build((None, 1))
    ki.set_dtype_policy(layer, keras.dtype_policies.get("float64"))
    x = tf.constant([[1.0 + 2.0 ** -40]], tf.float64)
    with keras.StatelessScope(state_mapping=[(layer.kernel, tf.ones((1, 1)))]), ki.autocast_scope("float64"):
        assert layer.kernel.value.dtype == tf.float64
        y = layer(x)
    assert y.dtype == tf.float64 and float(y[0, 0]) == 1.0 + 2.0 ** -40  # not rounded to float32


def test_moments_hooks_are_where_keras_batch_norm_reads_them():
    stock = ki.keras_moments()
    calls = []

    def spy(x, axes, keepdims, *_):
        calls.append(axes)
        return stock[0](x, axes, keepdims)

    try:
        ki.set_keras_moments(spy, spy)
        keras.layers.BatchNormalization()(np.ones((2, 3), np.float32), training=True)
    finally:
        ki.set_keras_moments(*stock)
    assert calls and ki.keras_moments() == stock


def test_tf_keras_batchnorm_moments_override_is_used_and_undone():
    bn = tf_keras_model().get_layer("bn")
    bn.fused = False
    calls = []
    had_own = ki.set_tf_keras_batchnorm_moments(bn, lambda x, axes, keep_dims, mask=None: calls.append(1) or (
        tf.reduce_mean(x, axes, keepdims=keep_dims), tf.math.reduce_variance(x, axes, keepdims=keep_dims)))
    bn(tf.ones((2, 2, 2, 3)), training=True)
    ki.reset_tf_keras_batchnorm_moments(bn, had_own)
    assert calls and not had_own and "_moments" not in bn.__dict__


def test_keras_keeps_the_logits_of_a_softmax_output():
    model = keras3_model()
    out = model(np.ones((2, 4, 4, 2), np.float32))
    logits = ki.keras_logits(out)
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), out.numpy(), rtol=1e-5, atol=1e-6)
    plain = tf.constant([1.0])
    assert ki.keras_logits(plain) is plain


def test_the_enclosing_stateless_scope_is_visible():
    assert ki.stateless_scope() is None
    with keras.StatelessScope() as scope:
        assert ki.stateless_scope() is scope


def test_a_nested_stateless_scope_inherits_the_outer_values_and_keeps_its_own():
    a, b = keras.Variable(1.0), keras.Variable(2.0)
    with keras.StatelessScope(state_mapping=[(a, 10.0), (b, 20.0)]) as outer:
        with keras.StatelessScope(state_mapping=[(b, 30.0)]) as inner:
            assert inner.get_current_value(a) is None  # Keras alone: the outer value is lost
            ki.inherit_state_mapping(inner, outer)
            assert float(inner.get_current_value(a)) == 10.0 and float(inner.get_current_value(b)) == 30.0
            assert set(ki.state_mapping(inner)) == {id(a), id(b)}


def test_the_serving_input_signature_of_a_built_model():
    (spec,) = tf.nest.flatten(ki.input_signature(keras3_model()))
    assert isinstance(spec, tf.TensorSpec) and tuple(spec.shape) == (None, 4, 4, 2)

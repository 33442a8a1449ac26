"""Hg is the exact Hessian-gradient product, through training-mode batch norm, and side-effect free."""
import keras
import numpy as np
import tensorflow as tf
from keras.src.backend.tensorflow import nn as backend_nn

from grasp_tf import hessian


def conv_bn_net(dtype=None):
    """A small conv net with two training-mode batch norms (tiny batches make their statistics matter)."""
    kw = {"dtype": dtype} if dtype else {}
    inp = keras.Input((6, 6, 2), dtype=dtype)
    h = keras.layers.Conv2D(4, 3, use_bias=False, name="c1", **kw)(inp)
    h = keras.layers.BatchNormalization(name="bn1", **kw)(h)
    h = keras.layers.Activation("tanh", **kw)(h)
    h = keras.layers.Conv2D(5, 3, name="c2", **kw)(h)
    h = keras.layers.BatchNormalization(name="bn2", **kw)(h)
    h = keras.layers.ReLU(**kw)(h)
    h = keras.layers.Flatten(**kw)(h)
    return keras.Model(inp, keras.layers.Dense(3, name="fc", **kw)(h))


def float64_twin(model, builder):
    twin = builder("float64")
    twin.set_weights([w.astype(np.float64) for w in model.get_weights()])
    return twin


def kernels(model):
    return [l.kernel for l in model.layers if hasattr(l, "kernel")]


def ours(model, x, y, temperature=1.0):
    """Our float32 g and Hg (v = g) for the kernels of ``model``."""
    with hessian.scoring_mode(model):
        function = hessian.ModelFunction(model, kernels(model))
        loss = hessian.chunk_loss(function, temperature)
        one = tf.constant(1.0)
        _, g = loss.gradient(function.params, function.state, x, y, one)
        _, hg = loss.hessian_vector_product(function.params, function.state, x, y, one, g)
    return [a.numpy() for a in g], [a.numpy() for a in hg]


def plain_gradient(model, values, x, y):
    """Float64 gradient of the mean loss at kernel ``values``, by one plain tape (training mode)."""
    for var, value in zip(kernels(model), values):
        var.assign(value)
    with tf.GradientTape() as tape:
        loss = hessian.cross_entropy(tf.cast(model(x, training=True), tf.float64), y, 1.0)
    return [g.numpy() for g in tape.gradient(loss, kernels(model))]


def relative_error(a, b):
    diff = np.sqrt(sum(((u - v) ** 2).sum() for u, v in zip(a, b)))
    return diff / np.sqrt(sum((v ** 2).sum() for v in b))


def data(n=6, classes=3):
    rng = np.random.default_rng(3)
    return rng.normal(size=(n, 6, 6, 2)).astype(np.float32), np.arange(n) % classes


def test_hg_equals_a_float64_finite_difference_of_the_gradient_through_batchnorm():
    x, y = data()
    model = conv_bn_net()
    g, hg = ours(model, x, y)
    twin = float64_twin(model, conv_bn_net)
    theta = [k.numpy() for k in kernels(twin)]
    eps = 1e-4 * np.sqrt(sum((t ** 2).sum() for t in theta) / sum((a ** 2).sum() for a in g))
    plus = plain_gradient(twin, [t + eps * a for t, a in zip(theta, g)], x.astype(np.float64), y)
    minus = plain_gradient(twin, [t - eps * a for t, a in zip(theta, g)], x.astype(np.float64), y)
    finite_difference = [(p - m) / (2 * eps) for p, m in zip(plus, minus)]
    assert relative_error(hg, finite_difference) < 2e-5  # stock Keras moments: ~5e-3


def test_stock_keras_moments_would_get_hg_wrong_so_the_finite_difference_test_can_fail():
    """Without exact_moments, double backprop through Keras' batch norm is off (the reason it exists)."""
    x, y = data()
    model = conv_bn_net()
    g, hg = ours(model, x, y)
    function = hessian.ModelFunction(model, kernels(model))
    f = lambda p: hessian.cross_entropy(function.logits(p, x, training=True), y, 1.0)
    _, stock = hessian.hessian_vector_product(f, function.params, [tf.constant(a) for a in g])
    assert relative_error([s.numpy() for s in stock], hg) > 1e-3


def test_hg_equals_the_explicit_hessian_times_g_on_a_tiny_mlp():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)).astype(np.float32), np.array([0, 1, 2, 3, 0, 1, 2])
    inp = keras.Input((3,))
    h = keras.layers.Dense(4, activation="tanh", name="d1")(inp)
    model = keras.Model(inp, keras.layers.Dense(4, name="d2")(h))
    g, hg = ours(model, x, y, temperature=2.0)

    w1, b1, w2, b2 = [w.astype(np.float64) for w in model.get_weights()]
    sizes = [w1.size, w2.size]
    theta = tf.constant(np.concatenate([w1.ravel(), w2.ravel()]))

    def loss(flat):
        a, b = tf.reshape(flat[:sizes[0]], w1.shape), tf.reshape(flat[sizes[0]:], w2.shape)
        logits = tf.tanh(x.astype(np.float64) @ a + b1) @ b + b2
        return hessian.cross_entropy(logits, y, 2.0)

    with tf.GradientTape() as outer:
        outer.watch(theta)
        with tf.GradientTape() as inner:
            inner.watch(theta)
            value = loss(theta)
        grad = inner.gradient(value, theta)
    explicit = outer.jacobian(grad, theta).numpy()  # the full Hessian, test only
    g_flat = np.concatenate([a.ravel() for a in g]).astype(np.float64)
    np.testing.assert_allclose(g_flat, grad.numpy(), rtol=1e-5, atol=1e-8)
    expected = explicit @ g_flat
    got = np.concatenate([a.ravel() for a in hg])
    assert relative_error([got], [expected]) < 1e-5


def test_scoring_mode_leaves_the_model_and_keras_as_they_were():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = conv_bn_net()
    finally:
        keras.config.set_dtype_policy("float32")
    x, y = data()
    model(x, training=True)  # give the moving statistics non-trivial values
    before = [v.numpy().copy() for v in model.variables]
    stock = (backend_nn._compute_moments, backend_nn._compute_moments_sync)
    grappler = tf.config.optimizer.get_experimental_options().get("constant_folding", True)
    with hessian.scoring_mode(model):
        assert tf.config.optimizer.get_experimental_options()["constant_folding"] is False
    assert tf.config.optimizer.get_experimental_options()["constant_folding"] is grappler
    g, _ = ours(model, x, y)
    assert all(a.dtype == np.float32 for a in g)
    assert all(np.array_equal(b, v.numpy()) for b, v in zip(before, model.variables))
    assert (backend_nn._compute_moments, backend_nn._compute_moments_sync) == stock
    assert all(l.dtype_policy.name == "mixed_float16" for l in model.layers[1:])


def test_exact_moments_have_the_stock_forward_values():
    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, size=(5, 4, 4, 3)).astype(np.float32))
    stock = tf.nn.moments(x, [0, 1, 2])
    with hessian.exact_moments():
        with hessian.exact_moments():  # re-entrant
            exact = backend_nn.moments(x, [0, 1, 2])
        again = backend_nn.moments(x, [0, 1, 2])
    for a, b, c in zip(stock, exact, again):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(a.numpy(), c.numpy())

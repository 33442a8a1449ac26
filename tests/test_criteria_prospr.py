"""ProsPr's meta-gradient against float64 finite differences over the mask, and through batch norm against a plain unroll."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import grasp_tf
from grasp_tf import hessian
from grasp_tf.prunable import prunable_weights

IN, HIDDEN, CLASSES = 4, 5, 3


def mlp():
    model = keras.Sequential([keras.Input((IN,)), keras.layers.Dense(HIDDEN, activation="tanh"),
                              keras.layers.Dense(CLASSES)])
    rng = np.random.default_rng(3)
    for v in model.variables:
        v.assign(rng.standard_normal(v.shape).astype("float32") * 0.7)
    return model


def batches(count, size=16, seed=4):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((size, IN)).astype("float32"), rng.integers(0, CLASSES, size))
            for _ in range(count)]


def np_loss_and_grads(params, x, y):
    """Mean softmax cross-entropy of the tanh MLP and its gradient for [W1, b1, W2, b2], float64."""
    w1, b1, w2, b2 = params
    x = x.astype(np.float64)
    a = np.tanh(x @ w1 + b1)
    z = a @ w2 + b2
    z = z - z.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(len(y)), y]))
    dz = (p - np.eye(CLASSES)[y]) / len(y)
    dh = (dz @ w2.T) * (1 - a ** 2)
    return loss, [x.T @ dh, dh.sum(0), a.T @ dz, dz.sum(0)]


def np_meta_loss(base, masks, step_batches, lr, momentum, frozen=()):
    """L(θ_M) after SGD steps from θ⊙m (functional_sgd); steps in ``frozen`` use the gradient at m = 1."""
    def run(masks, frozen_grads):
        theta = [base[0] * masks[0], base[1], base[2] * masks[1], base[3]]
        buf, grads = None, []
        for i, (x, y) in enumerate(step_batches[:-1]):
            g = frozen_grads[i] if i in frozen_grads else np_loss_and_grads(theta, x, y)[1]
            grads.append(g)
            buf = g if buf is None or momentum == 0 else [momentum * b + a for b, a in zip(buf, g)]
            theta = [t - lr * b for t, b in zip(theta, buf)]
        return np_loss_and_grads(theta, *step_batches[-1])[0], grads

    _, at_one = run([np.ones_like(base[0]), np.ones_like(base[2])], {})
    return run(masks, {i: at_one[i] for i in frozen})[0]


def fd_scores(model, step_batches, lr, momentum, frozen=(), eps=1e-6):
    base = [np.asarray(w, np.float64) for w in model.get_weights()]
    out = []
    for which in (0, 1):
        shape = base[2 * which].shape
        score = np.zeros(shape)
        for idx in np.ndindex(shape):
            plus = [np.ones(base[0].shape), np.ones(base[2].shape)]
            minus = [np.ones(base[0].shape), np.ones(base[2].shape)]
            plus[which][idx] += eps
            minus[which][idx] -= eps
            score[idx] = (np_meta_loss(base, plus, step_batches, lr, momentum, frozen)
                          - np_meta_loss(base, minus, step_batches, lr, momentum, frozen)) / (2 * eps)
        out.append(np.abs(score))
    return out


def assert_close(scores, expected):
    got = [scores["dense/kernel"], scores["dense_1/kernel"]]
    scale = max(float(e.max()) for e in expected)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=2e-3, atol=2e-4 * scale)


@pytest.mark.parametrize("opts,frozen", [
    ({}, (0,)),  # the reference: the first step's gradient is detached where the momentum buffer starts
    ({"differentiate_first_step": True}, ()),
    ({"inner_momentum": 0.0}, ()),  # no buffer: nothing detached
    ({"meta_gradient": "first_order"}, (0, 1, 2)),  # every inner gradient held constant
])
def test_meta_gradient_equals_a_float64_finite_difference_over_the_mask(opts, frozen):
    model = mlp()
    (batch,) = batches(1)
    lr, momentum = 0.5, opts.get("inner_momentum", 0.9)
    expected = fd_scores(model, [batch] * 4, lr, momentum, frozen)
    assert_close(grasp_tf.compute_scores(model, batch, "prospr", **opts), expected)


def test_from_a_dataset_each_step_and_the_meta_step_draw_their_own_batch():
    model = mlp()
    data = batches(8, seed=6)
    ds = tf.data.Dataset.from_tensor_slices((np.concatenate([x for x, _ in data]),
                                             np.concatenate([y for _, y in data]))).batch(16)
    expected = fd_scores(model, data[:3], 0.5, 0.9, frozen=(0,))  # 2 steps, then the meta batch
    flat = np.concatenate([s.ravel() for s in expected])
    n = flat.size
    masks = grasp_tf.compute_masks(model, ds, 0.6, "prospr", inner_steps=2, chunk_size=5)
    keep = np.ones(n, bool)
    keep[np.argsort(flat, kind="stable")[:int(np.floor(n * 0.6))]] = False
    np.testing.assert_array_equal(np.concatenate([masks["dense/kernel"].ravel(), masks["dense_1/kernel"].ravel()]),
                                  keep)
    with pytest.raises(AssertionError):  # the same batch for every step gives other scores
        assert_close(grasp_tf.compute_scores(model, data[0], "prospr", inner_steps=2), expected)


def unrolled(model, x, y, steps, lr, momentum):
    """|∂L/∂m| by nested tapes through the whole unroll (the reference's create_graph), first buffer detached."""
    scored = [w.variable for w in prunable_weights(model)]
    others = [v for v in model.trainable_variables if all(v is not s for s in scored)]
    n = len(scored)
    with hessian.bind(model, scored + others) as function:
        ce = lambda p: hessian.cross_entropy(function.logits(p, x, training=True), y, 1.0)
        masks = [tf.ones_like(p) for p in function.params[:n]]
        with tf.GradientTape() as outer:
            outer.watch(masks)
            fast = [p * m for p, m in zip(function.params[:n], masks)] + list(function.params[n:])
            buf = None
            for _ in range(steps):
                with tf.GradientTape() as inner:
                    inner.watch(fast)
                    loss = ce(fast)
                g = inner.gradient(loss, fast)
                buf = [tf.stop_gradient(a) for a in g] if buf is None else [momentum * b + a for b, a in zip(buf, g)]
                fast = [p - lr * b for p, b in zip(fast, buf)]
            meta = ce(fast)
        return [np.abs(g.numpy()) for g in outer.gradient(meta, masks)]


def test_through_batch_norm_equals_the_plain_unroll_and_leaves_the_model_untouched():
    model = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(3, 3), keras.layers.BatchNormalization(),
                              keras.layers.ReLU(), keras.layers.Flatten(), keras.layers.Dense(3)])
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((10, 6, 6, 2)).astype("float32"), rng.integers(0, 3, 10)
    before = [v.numpy().copy() for v in model.variables]
    scores = grasp_tf.compute_scores(model, (x, y), "prospr", inner_lr=0.1)
    expected = unrolled(model, tf.constant(x), tf.constant(y), 3, 0.1, 0.9)
    for key, e in zip(scores, expected):
        np.testing.assert_allclose(scores[key], e, rtol=1e-3, atol=1e-4 * float(e.max()))
    assert all(np.array_equal(u, v.numpy()) for u, v in zip(before, model.variables))


def test_exact_count_reference_count_determinism_and_prune_model():
    model = mlp()
    (batch,) = batches(1)
    n = IN * HIDDEN + HIDDEN * CLASSES  # 35
    a = grasp_tf.compute_masks(model, batch, 0.7, "prospr", seed=1)
    b = grasp_tf.compute_masks(model, batch, 0.7, "prospr", seed=1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert n - sum(int(m.sum()) for m in a.values()) == int(np.floor(n * 0.7)) == 24
    ref = grasp_tf.compute_masks(model, batch, 0.7, "prospr", count_rule="reference")
    assert sum(int(m.sum()) for m in ref.values()) == int(np.ceil(n * (1 - 0.7)))
    pruned = grasp_tf.prune_model(model, batch, 0.7, "prospr", meta_gradient="first_order")
    assert grasp_tf.sparsity_report(pruned)["global"]["kept"] == n - 24
    with pytest.raises(ValueError, match="inner_lr=0 .*'prospr'"):
        grasp_tf.compute_masks(model, batch, 0.7, "prospr", inner_lr=0)

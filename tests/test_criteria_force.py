"""FORCE and Iter-SNIP against a plain float64 numpy re-implementation of the reference's rounds on a small MLP."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import grasp_tf
from grasp_tf import criteria
from grasp_tf.criteria import force

IN, HIDDEN, CLASSES = 6, 12, 4


def mlp():
    """The MLP, with nonzero biases (they take part in the loss, never in the scores)."""
    model = keras.Sequential([keras.Input((IN,)), keras.layers.Dense(HIDDEN, activation="relu"),
                              keras.layers.Dense(CLASSES)])
    rng = np.random.default_rng(1)
    for v in model.variables:
        v.assign(rng.standard_normal(v.shape).astype("float32") * 0.5)
    return model


def batches(count, size=24, seed=2):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((size, IN)).astype("float32"), rng.integers(0, CLASSES, size))
            for _ in range(count)]


def np_kernel_gradients(model, kernels, x, y, loss):
    """dL/dW of the two-layer ReLU MLP in float64, L the mean over the batch."""
    (w1, b1, w2, b2) = [np.asarray(v, np.float64) for v in model.get_weights()]
    w1, w2 = kernels
    h = x.astype(np.float64) @ w1 + b1
    a = np.maximum(h, 0)
    z = a @ w2 + b2
    onehot = np.eye(CLASSES)[y]
    if loss == "cross_entropy":
        p = np.exp(z - z.max(1, keepdims=True))
        dz = (p / p.sum(1, keepdims=True) - onehot) / len(y)
    else:  # the reference's F.nll_loss on raw logits: -mean(z_y)
        dz = -onehot / len(y)
    dw2 = a.T @ dz
    dh = (dz @ w2.T) * (h > 0)
    return [x.T.astype(np.float64) @ dh, dw2]


def np_rounds(method, model, round_batches, sparsity, rounds, schedule="exponential", loss="logit_nll"):
    """The reference's iterative_pruning with an exact count: returns each round's masks."""
    w0 = [np.asarray(model.get_weights()[i], np.float64) for i in (0, 2)]
    n = sum(w.size for w in w0)
    mask = [np.ones(w.shape, bool) for w in w0]
    held = mask  # the network's nonzero weights
    history = []
    for r in range(rounds):
        if schedule == "exponential":
            keep = (1 - sparsity) ** ((r + 1) / rounds)
        else:
            keep = 1 - (r + 1) * sparsity / rounds
        removed = int(np.floor(n * (sparsity if r == rounds - 1 else 1 - keep)))
        net = [w * h for w, h in zip(w0, held)]
        grads = [np_kernel_gradients(model, net, x, y, loss) for x, y in round_batches[r]]
        g = [sum(parts) / len(grads) for parts in zip(*grads)]
        sal = [np.abs((w0[i] if method == "force" else net[i]) * g[i]) for i in range(2)]
        if method == "iter_snip" and r > 0:
            sal = [np.where(m, s, -np.inf) for m, s in zip(mask, sal)]
        flat = np.concatenate([s.ravel() for s in sal])
        keep_flat = np.ones(n, bool)
        keep_flat[np.lexsort((np.arange(n), flat))[:removed]] = False  # the smallest; earliest first on ties
        mask = [keep_flat[:w0[0].size].reshape(w0[0].shape), keep_flat[w0[0].size:].reshape(w0[1].shape)]
        held = mask if method == "force" else [h & m for h, m in zip(held, mask)]
        history.append(mask)
    return history


def as_list(masks):
    return [masks["dense/kernel"], masks["dense_1/kernel"]]


@pytest.mark.parametrize("method", ["force", "iter_snip"])
@pytest.mark.parametrize("loss,schedule", [("logit_nll", "exponential"), ("cross_entropy", "linear")])
def test_masks_equal_a_float64_numpy_reimplementation_on_a_fixed_batch(method, loss, schedule):
    model = mlp()
    (batch,) = batches(1)
    expected = np_rounds(method, model, [[batch]] * 5, 0.9, 5, schedule, loss)[-1]
    got = grasp_tf.compute_masks(model, batch, 0.9, method, rounds=5, schedule=schedule, loss=loss)
    n = IN * HIDDEN + HIDDEN * CLASSES
    assert sum(int((~m).sum()) for m in got.values()) == int(np.floor(n * 0.9))
    for a, b in zip(as_list(got), expected):
        np.testing.assert_array_equal(a, b)


def test_force_lets_pruned_weights_return_and_iter_snip_does_not():
    model = mlp()
    (batch,) = batches(1)
    f = np_rounds("force", model, [[batch]] * 6, 0.95, 6)
    s = np_rounds("iter_snip", model, [[batch]] * 6, 0.95, 6)
    revived = lambda hist: any((new & ~old).any() for a, b in zip(hist, hist[1:]) for old, new in zip(a, b))
    assert revived(f) and not revived(s)  # the case the comparison above covers is a real one
    got = grasp_tf.compute_masks(model, batch, 0.95, "force", rounds=6)
    for a, b in zip(as_list(got), f[-1]):
        np.testing.assert_array_equal(a, b)


def test_iter_snip_pruned_weights_lose_ties_with_kept_zero_saliency_ones():
    # Unit 2's outgoing weights are pruned early; its incoming ones then have zero gradient,
    # tied with every pruned weight: the pruned ones must go first (not the earliest by position).
    model = mlp()
    kernel = model.layers[1].kernel.numpy()
    kernel[2] *= 1e-3
    model.layers[1].kernel.assign(kernel)
    (batch,) = batches(1)
    expected = np_rounds("iter_snip", model, [[batch]] * 20, 0.5, 20)[-1]
    got = grasp_tf.compute_masks(model, batch, 0.5, "iter_snip", rounds=20)
    for a, b in zip(as_list(got), expected):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", ["force", "iter_snip"])
def test_from_a_dataset_each_round_averages_its_own_draws(method):
    model = mlp()
    data = batches(8, seed=5)
    ds = tf.data.Dataset.from_tensor_slices((np.concatenate([x for x, _ in data]),
                                             np.concatenate([y for _, y in data]))).batch(24)
    expected = np_rounds(method, model, [data[0:2], data[2:4], data[4:6], data[6:8]], 0.8, 4)[-1]
    got = grasp_tf.compute_masks(model, ds, 0.8, method, rounds=4, num_draws=2, chunk_size=10,
                                 sample_storage="memory")
    for a, b in zip(as_list(got), expected):
        np.testing.assert_array_equal(a, b)


def test_reference_count_rule_keeps_int_n_keep_as_get_mask():
    model = mlp()
    (batch,) = batches(1)
    n = IN * HIDDEN + HIDDEN * CLASSES  # 120: int(120 * (1 - 0.9)) = int(11.99...) = 11 kept; exact keeps 12
    ref = grasp_tf.compute_masks(model, batch, 0.9, "force", rounds=3, count_rule="reference")
    exact = grasp_tf.compute_masks(model, batch, 0.9, "force", rounds=3)
    assert sum(int(m.sum()) for m in ref.values()) == int(n * (1 - 0.9)) == 11
    assert sum(int(m.sum()) for m in exact.values()) == n - int(np.floor(n * 0.9)) == 12
    ties = force.keep_largest({"a": np.array([3.0, 1.0, 2.0, 2.0, 0.0])}, lambda size: 2, "global", True)
    np.testing.assert_array_equal(ties["a"], [True, False, True, True, False])  # the tie at the threshold is kept


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_keep_largest_without_ties_is_a_stable_sort_in_linear_time(scope):
    rng = np.random.default_rng(0)
    scores = {"a": rng.integers(0, 5, (7, 9)).astype(float), "b": np.where(rng.random(40) < 0.5, -1.0, 0.0)}
    for k in (0, 1, 13, 40, 103):
        got = force.keep_largest(scores, lambda size: min(k, size), scope, False)
        arrays = {"all": np.concatenate([v.ravel() for v in scores.values()])} if scope == "global" else scores
        expected = []
        for flat in (a.ravel() for a in arrays.values()):
            keep = np.zeros(flat.size, bool)
            keep[np.argsort(-flat, kind="stable")[:min(k, flat.size)]] = True
            expected.append(keep)
        np.testing.assert_array_equal(np.concatenate([m.ravel() for m in got.values()]), np.concatenate(expected))


def test_schedule_is_the_references():
    assert force.keep_fractions(0.99, 2, "exponential") == pytest.approx([0.1, 0.01])
    assert force.keep_fractions(0.9, 4, "linear") == pytest.approx([0.775, 0.55, 0.325, 0.1])


def test_conv_batchnorm_model_deterministic_exact_count_and_untouched():
    model = keras.Sequential([keras.Input((8, 8, 2)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization(),
                              keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((12, 8, 8, 2)).astype("float32"), rng.integers(0, 3, 12)
    before = [v.numpy().copy() for v in model.variables]
    for method in ("force", "iter_snip"):
        a = grasp_tf.compute_masks(model, (x, y), 0.7, method, rounds=3, seed=1)
        b = grasp_tf.compute_masks(model, (x, y), 0.7, method, rounds=3, seed=1)
        assert all(np.array_equal(a[k], b[k]) for k in a)
        n = sum(m.size for m in a.values())
        assert n - sum(int(m.sum()) for m in a.values()) == int(np.floor(n * 0.7))
    assert all(np.array_equal(u, v.numpy()) for u, v in zip(before, model.variables))
    pruned = grasp_tf.prune_model(model, (x, y), 0.7, "force", rounds=3)
    assert grasp_tf.sparsity_report(pruned)["global"]["kept"] == n - int(np.floor(n * 0.7))


def test_first_round_scores_and_bad_options():
    model = mlp()
    (batch,) = batches(1)
    scores = grasp_tf.compute_scores(model, batch, "iter_snip", loss="cross_entropy")
    g = np_kernel_gradients(model, [model.get_weights()[0], model.get_weights()[2]], *batch, "cross_entropy")
    np.testing.assert_allclose(scores["dense/kernel"], np.abs(model.get_weights()[0] * g[0]), rtol=1e-4, atol=1e-7)
    assert set(criteria.names()) >= {"force", "iter_snip"}
    with pytest.raises(ValueError, match=r"rounds=0 .*'force'"):
        grasp_tf.compute_masks(model, batch, 0.9, "force", rounds=0)
    with pytest.raises(ValueError, match="loss='mse'"):
        grasp_tf.compute_masks(model, batch, 0.9, "iter_snip", loss="mse")

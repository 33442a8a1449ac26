"""Scoring methods: the reference GraSP procedure, baselines, registry, determinism, devices, errors."""
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import grasp_tf
from grasp_tf import criteria, hessian, masking
from grasp_tf.criteria.base import Criterion, Option, dense_kernels, glorot_normal, redrawn

CLASSES = 5


def net(dtype=None, bn=True, activation=None, dropout=False, input_shape=(8, 8, 3), classes=CLASSES):
    """A tiny conv net: conv-[BN]-relu, strided conv-[BN]-relu, [dropout], pool, dense."""
    kw = {"dtype": dtype} if dtype else {}
    inp = keras.Input(input_shape, dtype=dtype)
    h = keras.layers.Conv2D(4, 3, use_bias=False, name="c1", **kw)(inp)
    h = keras.layers.BatchNormalization(name="bn1", **kw)(h) if bn else h
    h = keras.layers.ReLU(**kw)(h)
    h = keras.layers.Conv2D(6, 3, strides=2, name="c2", **kw)(h)
    h = keras.layers.BatchNormalization(name="bn2", **kw)(h) if bn else h
    h = keras.layers.ReLU(**kw)(h)
    h = keras.layers.Dropout(0.5, **kw)(h) if dropout else h
    h = keras.layers.GlobalAveragePooling2D(**kw)(h)
    return keras.Model(inp, keras.layers.Dense(classes, activation=activation, name="fc", **kw)(h))


def twin(model, dtype=None, **kwargs):
    """The same network (optionally another dtype or output activation) with the same weights."""
    other = net(dtype, **kwargs)
    other.set_weights([w.astype(dtype or np.float32) for w in model.get_weights()])
    return other


def sample(n=20, seed=0, input_shape=(8, 8, 3)):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *input_shape)).astype(np.float32), rng.permutation(np.arange(n) % CLASSES)


def kernels(model):
    return [l.kernel for l in model.layers if hasattr(l, "kernel")]


def plain_gradient(model, values, x, y, temperature, training=True):
    """Gradient of the mean loss w.r.t. the kernels at ``values``, one plain tape (first order only)."""
    for var, value in zip(kernels(model), values):
        var.assign(value)
    with tf.GradientTape() as tape:
        logits = tf.cast(model(x, training=training), tf.float64)
        loss = hessian.cross_entropy(logits, y, temperature)
    return [g.numpy() for g in tape.gradient(loss, kernels(model))]


def relative_error(a, b):
    a, b = list(a), list(b)
    return np.sqrt(sum(((u - v) ** 2).sum() for u, v in zip(a, b)) / sum((v ** 2).sum() for v in b))


def close(a, b, tol=1e-5):
    """Two score dicts agree to ``tol`` relative to the largest score."""
    scale = max(float(np.abs(v).max()) for v in b.values())
    return list(a) == list(b) and all(np.abs(a[k] - b[k]).max() <= tol * scale for k in a)


def removed(masks):
    return sum(int((~m).sum()) for m in masks.values())


# --------------------------------------------------------------------------- registry


def test_registry_lists_the_methods_and_names_valid_ones_for_an_unknown():
    assert set(criteria.names()) >= {"grasp", "grasp_abs", "snip", "random", "magnitude", "synflow"}
    assert criteria.get("grasp").remove_largest and not criteria.get("grasp_abs").remove_largest
    assert criteria.get("synflow").iterative_masks is not None and not criteria.get("synflow").needs_data
    assert criteria.get("grasp").options == ("temperature", "num_chunks", "reinit_dense", "chunk_size")
    with pytest.raises(ValueError, match="Unknown method 'grsap'; choose one of grasp, grasp_abs, snip"):
        criteria.get("grsap")


def test_a_registered_method_prunes_through_the_public_api_and_its_scores_are_checked():
    def negative_magnitude(model, weights, data, *, seed=None, power=1.0):
        return {w.key: -np.abs(np.asarray(w.variable)) ** power for w in weights}

    def broken(model, weights, data, *, seed=None):
        return {w.key: np.full(w.variable.shape, np.nan) for w in weights}

    power = Option("power", float, 1.0, "Exponent of |θ|.", minimum=0, exclusive_minimum=True)
    model = net()
    try:
        criteria.register(Criterion("neg_mag", negative_magnitude, remove_largest=True, needs_data=False,
                                    option_specs=(power,)))
        criteria.register(Criterion("broken", broken, needs_data=False))
        with pytest.raises(ValueError, match="already registered"):
            criteria.register(Criterion("neg_mag", negative_magnitude, option_specs=(power,)))
        # The declaration is the source: help lists it, and a bad value is one error naming it.
        assert "``neg_mag``" in grasp_tf.compute_masks.__doc__
        assert "``power=1.0`` (a number > 0): Exponent of |θ|." in grasp_tf.compute_scores.__doc__
        with pytest.raises(ValueError, match=r"^Option power=-2.0 of method 'neg_mag' is invalid: must be a "
                                             r"number > 0\.$"):
            grasp_tf.compute_masks(model, None, 0.5, method="neg_mag", power=-2.0)
        with pytest.raises(ValueError, match=r"Option power='2' of method 'neg_mag' is invalid"):
            grasp_tf.compute_scores(model, None, "neg_mag", power="2")
        masks = grasp_tf.compute_masks(model, None, 0.5, method="neg_mag", power=2.0)
        # Removing the largest -|θ|² removes the smallest |θ|: the magnitude mask.
        expected = grasp_tf.compute_masks(model, None, 0.5, method="magnitude")
        assert all(np.array_equal(masks[k], expected[k]) for k in expected)
        with pytest.raises(ValueError, match="produced NaN or infinite scores for 'c1/kernel'"):
            grasp_tf.compute_scores(model, None, "broken")
        with pytest.raises(ValueError, match=r"Unknown option\(s\) \['powr'\] for method 'neg_mag'"):
            grasp_tf.compute_scores(model, None, "neg_mag", powr=2.0)
    finally:
        criteria._REGISTRY.pop("neg_mag", None)
        criteria._REGISTRY.pop("broken", None)


def _scores(model, weights, data, *, seed=None, alpha=1.0):
    return {w.key: np.ones(w.variable.shape) for w in weights}


def _masks(model, data, sparsity, *, scope="global", count_rule="exact", seed=None, prunable=None, rounds=3):
    return {}


ALPHA = Option("alpha", float, 1.0, "How much.")


@pytest.mark.parametrize("specs, kwargs, message", [
    ((), {}, r"score_fn takes the keyword 'alpha', which option_specs does not declare"),
    ((Option("alpha", float, 2.0, "How much."),), {}, r"score_fn gives 'alpha' the default 1.0, but its "
                                                      r"declaration says 2.0"),
    ((ALPHA, Option("beta", int, 1, "Unused.")), {}, r"declares option\(s\) \['beta'\], but neither score_fn nor "
                                                      r"iterative_masks takes them"),
    ((ALPHA, ALPHA), {}, r"declares option\(s\) \['alpha'\] more than once"),
    ((ALPHA,), {"iterative_masks": _masks}, r"iterative_masks takes the keyword 'rounds', which option_specs"),
])
def test_register_refuses_declarations_that_disagree_with_the_functions(specs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        criteria.register(Criterion("mismatch", _scores, needs_data=False, option_specs=specs, **kwargs))
    assert "mismatch" not in criteria.names()


def test_option_declarations_check_themselves_and_reserved_names():
    with pytest.raises(ValueError, match=r"Option 'alpha': its default -1 is not a number >= 0"):
        Option("alpha", float, -1, "How much.", minimum=0)
    with pytest.raises(TypeError, match="type must be int, float, bool or str"):
        Option("alpha", list, [], "How much.")
    with pytest.raises(ValueError, match="help must be one non-empty line"):
        Option("alpha", float, 1.0, "")

    def seeded(model, weights, data, *, seed=None, scope=1):
        return {}

    with pytest.raises(ValueError, match=r"declares option\(s\) \['scope'\], a keyword every method takes"):
        criteria.register(Criterion("mismatch", seeded, option_specs=(Option("scope", int, 1, "No."),)))
    # Every built-in method's declarations agree with its functions, and options come from them.
    for name in criteria.BUILT_IN:
        criteria.get(name).check_declarations()
    assert criteria.get("synflow").options == () and criteria.get("synflow").mask_options == ("rounds", "schedule")
    assert criteria.get("snip").option("temperature").default == 1.0


def test_docs_options_table_is_generated_from_the_declarations():
    """docs/criteria.md's options table is what the built-in methods declare (python -m grasp_tf.criteria)."""
    import os

    from grasp_tf.criteria import describe

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "criteria.md")
    text = open(path, encoding="utf-8").read()
    table = describe.markdown_table([criteria.get(n) for n in criteria.BUILT_IN])
    assert describe.replace_table(text, table) == text, "stale: run python -m grasp_tf.criteria docs/criteria.md"
    for name in criteria.BUILT_IN:
        assert all(f"`{o.name}`" in table for o in criteria.get(name).option_specs), name


# --------------------------------------------------------------------------- GraSP


def test_grasp_is_the_reference_two_halves_procedure_with_batchnorm_in_training_mode():
    """-θ ⊙ Σ_c H_c g, g = Σ_c ∇L_c over [:N//2], [N//2:], each half with its own BN statistics."""
    x, y = sample(n=11)
    model = net()
    scores = grasp_tf.compute_scores(model, (x, y), "grasp", reinit_dense=False)

    by_hand = twin(model, "float64")
    theta = [k.numpy() for k in kernels(by_hand)]
    halves = [(x[:5].astype(np.float64), y[:5]), (x[5:].astype(np.float64), y[5:])]
    g = [sum(parts) for parts in zip(*(plain_gradient(by_hand, theta, hx, hy, 200.0) for hx, hy in halves))]
    eps = 1e-4 * np.sqrt(sum((t ** 2).sum() for t in theta) / sum((a ** 2).sum() for a in g))
    hg = [np.zeros_like(t) for t in theta]
    for hx, hy in halves:  # H_c g by a float64 central difference of half c's gradient along g
        plus = plain_gradient(by_hand, [t + eps * a for t, a in zip(theta, g)], hx, hy, 200.0)
        minus = plain_gradient(by_hand, [t - eps * a for t, a in zip(theta, g)], hx, hy, 200.0)
        hg = [h + (p - m) / (2 * eps) for h, p, m in zip(hg, plus, minus)]
    expected = [-t * h for t, h in zip(theta, hg)]
    assert list(scores) == ["c1/kernel", "c2/kernel", "fc/kernel"]
    assert all(s.dtype == np.float32 and s.shape == e.shape for s, e in zip(scores.values(), expected))
    assert relative_error(scores.values(), expected) < 1e-4
    # The chunking matters: one chunk of 11 (one set of BN statistics) scores differently.
    whole = grasp_tf.compute_scores(model, (x, y), "grasp", reinit_dense=False, num_chunks=1)
    assert relative_error(whole.values(), expected) > 1e-2


def test_reinit_dense_scores_with_dense_kernels_redrawn_from_untruncated_glorot_normal():
    x, y = sample()
    model = net()
    scores = grasp_tf.compute_scores(model, (x, y), "grasp", seed=3)
    redrawn_model = twin(model)
    for var, value in redrawn(dense_kernels(redrawn_model), 3):
        var.assign(value)
    expected = grasp_tf.compute_scores(redrawn_model, (x, y), "grasp", reinit_dense=False)
    assert close(scores, expected, 1e-6)
    assert not close(scores, grasp_tf.compute_scores(model, (x, y), "grasp", reinit_dense=False), 1e-2)

    draws = glorot_normal((200, 300), np.random.default_rng(0))
    std = np.sqrt(2 / 500)
    assert abs(draws.std() / std - 1) < 0.02
    assert 0.03 < np.mean(np.abs(draws) > 2 * std) < 0.06  # untruncated: ~4.6% beyond 2σ


def test_grasp_abs_is_the_magnitude_of_grasp_and_removes_the_smallest():
    x, y = sample()
    model = net()
    grasp = grasp_tf.compute_scores(model, (x, y), "grasp", seed=1)
    absolute = grasp_tf.compute_scores(model, (x, y), "grasp_abs", seed=1)
    assert close(absolute, {k: np.abs(v) for k, v in grasp.items()}, 0)
    masks = grasp_tf.compute_masks(model, (x, y), 0.7, method="grasp_abs", seed=1)
    flat_s = np.concatenate([v.ravel() for v in absolute.values()])
    flat_m = np.concatenate([m.ravel() for m in masks.values()])
    assert flat_s[~flat_m].max() <= flat_s[flat_m].min()


def test_softmax_outputs_are_scored_on_their_logits():
    x, y = sample()
    model = net(activation="softmax")
    logits_model = twin(model, activation=None)
    assert close(grasp_tf.compute_scores(model, (x, y), "grasp", seed=0),
                 grasp_tf.compute_scores(logits_model, (x, y), "grasp", seed=0), 1e-6)


def test_chunk_size_gives_the_unchunked_result_without_batchnorm():
    x, y = sample(n=21)
    model = net(bn=False)
    for method in ("grasp", "snip"):
        whole = grasp_tf.compute_scores(model, (x, y), method, seed=0)
        pieces = grasp_tf.compute_scores(model, (x, y), method, seed=0, chunk_size=4)
        assert close(pieces, whole, 1e-5), method


def test_num_draws_sums_over_the_chunks_of_every_draw():
    x, y = sample(n=40)
    model = net(bn=False)
    stream = tf.data.Dataset.from_tensor_slices((x, y)).batch(7)
    drawn = grasp_tf.compute_scores(model, stream, "grasp", samples_per_class=2, num_draws=2,
                                    reinit_dense=False)
    # Draw 1: the first 2 of each class; draw 2: the first 2 of each class after draw 1 completed.
    position = [np.flatnonzero(y == c) for c in range(CLASSES)]
    draw1 = np.concatenate([p[:2] for p in position])
    done = draw1.max()
    draw2 = np.concatenate([p[p > done][:2] for p in position])
    both = np.concatenate([draw1, draw2])  # four chunks of 5: the halves of each draw
    by_pairs = grasp_tf.compute_scores(model, (x[both], y[both]), "grasp", reinit_dense=False,
                                       num_chunks=4)
    assert close(drawn, by_pairs, 1e-5)


# --------------------------------------------------------------------------- baselines


def test_snip_is_abs_theta_times_the_mean_loss_gradient_of_the_whole_sample():
    x, y = sample(n=15)
    model = net()
    scores = grasp_tf.compute_scores(model, (x, y), "snip")
    by_hand = twin(model, "float64")
    theta = [k.numpy() for k in kernels(by_hand)]
    g = plain_gradient(by_hand, theta, x.astype(np.float64), y, 1.0)
    assert relative_error(scores.values(), [np.abs(t * a) for t, a in zip(theta, g)]) < 1e-5

    reinit = grasp_tf.compute_scores(model, (x, y), "snip", reinit_kernels=True, seed=4)
    redrawn_model = twin(model)
    for var, value in redrawn(kernels(redrawn_model), 4):
        var.assign(value)
    assert close(reinit, grasp_tf.compute_scores(redrawn_model, (x, y), "snip"), 1e-6)


def test_magnitude_and_random_need_no_data():
    model = net()
    magnitude = grasp_tf.compute_scores(model, None, "magnitude")
    assert all(np.array_equal(magnitude[k.path], np.abs(k.numpy())) for k in kernels(model))
    first = grasp_tf.compute_scores(model, None, "random", seed=7)
    assert close(first, grasp_tf.compute_scores(model, None, "random", seed=7), 0)
    assert not close(first, grasp_tf.compute_scores(model, None, "random", seed=8), 1e-3)
    flat = np.concatenate([v.ravel() for v in first.values()])
    assert 0 <= flat.min() and flat.max() < 1


def test_synflow_scores_the_absolute_network_on_an_all_ones_input_in_inference_mode():
    model = net(activation="softmax")
    x, _ = sample()
    model(x, training=True)  # non-trivial BN moving statistics, used in inference mode
    scores = grasp_tf.compute_scores(model, None, "synflow")

    linear = twin(model, "float64", activation=None)
    for var in linear.variables:
        var.assign(np.abs(var.numpy()))
    with tf.GradientTape() as tape:
        flow = tf.reduce_sum(linear(np.ones((1, 8, 8, 3)), training=False))
    grads = tape.gradient(flow, kernels(linear))
    expected = [np.abs(k.numpy() * g.numpy()) for k, g in zip(kernels(linear), grads)]
    assert relative_error(scores.values(), expected) < 1e-5


def test_synflow_prunes_iteratively_to_the_exact_count():
    model = net()
    n = sum(int(np.prod(k.shape)) for k in kernels(model))
    masks = grasp_tf.compute_masks(model, None, 0.9, method="synflow")
    assert removed(masks) == int(np.floor(n * 0.9))
    one_round = grasp_tf.compute_masks(model, None, 0.9, method="synflow", rounds=1)
    one_shot = masking.masks_from_scores(grasp_tf.compute_scores(model, None, "synflow"), 0.9)
    assert all(np.array_equal(one_round[k], one_shot[k]) for k in one_shot)
    assert not all(np.array_equal(masks[k], one_shot[k]) for k in one_shot)
    layerwise = grasp_tf.compute_masks(model, None, 0.5, method="synflow", scope="layerwise",
                                       schedule="linear", rounds=10)
    assert all(int((~m).sum()) == int(np.floor(m.size * 0.5)) for m in layerwise.values())
    with pytest.raises(ValueError, match="Option schedule='cosine' of method 'synflow' is invalid: must be one of "
                                         "'exponential', 'linear'"):
        grasp_tf.compute_masks(model, None, 0.5, method="synflow", schedule="cosine")
    with pytest.raises(ValueError, match="Option rounds=0 of method 'synflow' is invalid: must be an integer >= 1"):
        grasp_tf.compute_masks(model, None, 0.5, method="synflow", rounds=0)
    with pytest.raises(ValueError, match=r"Unknown option\(s\) \['temperature'\] for method 'synflow'"):
        grasp_tf.compute_masks(model, None, 0.5, method="synflow", temperature=2.0)



def deep_residual(dtype=None, bias_value=0.0, depth=16, seed=0):
    """A residual Dense stack (with one BatchNormalization) whose |θ| network overflows float32:
    each layer multiplies the all-ones flow by ~2^10, so R ~ 2^160. Biases set to ``bias_value``."""
    kw = {"dtype": dtype} if dtype else {}
    inp = keras.Input((16,), dtype=dtype)
    h = keras.layers.ReLU(**kw)(keras.layers.Dense(16, name="d0", **kw)(inp))
    h = keras.layers.BatchNormalization(name="bn", **kw)(h)
    for i in range(1, depth):
        h = keras.layers.Add(**kw)([h, keras.layers.ReLU(**kw)(keras.layers.Dense(16, name=f"d{i}", **kw)(h))])
    model = keras.Model(inp, keras.layers.Dense(CLASSES, name="out", **kw)(h))
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            layer.kernel.assign(100 * rng.normal(size=layer.kernel.shape))
            layer.bias.assign(np.full(layer.bias.shape, bias_value))
    return model


def test_synflow_rescales_a_network_that_overflows_float32_exactly_up_to_a_power_of_two():
    model = deep_residual()
    scores = grasp_tf.compute_scores(model, None, "synflow")
    exact = deep_residual("float64")  # the same weights (same seed), float64: no overflow
    for var in exact.variables:
        var.assign(np.abs(var.numpy()))
    with tf.GradientTape() as tape:
        flow = tf.reduce_sum(exact(np.ones((1, 16)), training=False))
    assert 2.0 ** 128 < flow.numpy() < 2.0 ** 1000  # beyond float32, inside float64
    expected = [np.abs(k.numpy() * g.numpy()) for k, g in zip(kernels(exact), tape.gradient(flow, kernels(exact)))]
    got = list(scores.values())
    assert all(np.isfinite(v).all() for v in got)
    factor = sum(v.sum() for v in expected) / sum(v.sum() for v in got)
    assert abs(np.log2(factor) - np.round(np.log2(factor))) < 1e-6 and np.log2(factor) > 100  # a power of two
    assert relative_error([v * factor for v in got], expected) < 1e-5
    with warnings.catch_warnings():  # a pruned weight whose cut paths overflow scores 0, never 0 * inf = nan
        warnings.simplefilter("error", RuntimeWarning)
        masks = grasp_tf.compute_masks(model, None, 0.99, method="synflow")
    n = sum(int(np.prod(k.shape)) for k in kernels(model))
    assert removed(masks) == int(np.floor(n * 0.99))
    with pytest.raises(ValueError, match="overflowed float32 .* not homogeneous in its input"):
        grasp_tf.compute_scores(deep_residual(bias_value=0.5), None, "synflow")


def test_synflow_refuses_sampling_options_it_cannot_use():
    model = net()
    for call in (lambda **kw: grasp_tf.compute_masks(model, None, 0.5, method="synflow", rounds=2, **kw),
                 lambda **kw: grasp_tf.compute_scores(model, None, "synflow", **kw)):
        with pytest.raises(ValueError, match="samples_per_class / num_draws do not apply to method 'synflow'"):
            call(samples_per_class=2)
        with pytest.raises(ValueError, match="do not apply"):
            call(num_draws=3)
    assert criteria.get("synflow").mask_options == ("rounds", "schedule")
    assert criteria.get("grasp").mask_options == criteria.get("grasp").options

# --------------------------------------------------------------------------- guarantees


@pytest.mark.parametrize("method", ["grasp", "grasp_abs", "snip", "random", "magnitude", "synflow"])
def test_masks_remove_exactly_floor_n_times_sparsity(method):
    x, y = sample()
    model = net()
    n = sum(int(np.prod(k.shape)) for k in kernels(model))
    opts = {"rounds": 5} if method == "synflow" else {}
    masks = grasp_tf.compute_masks(model, (x, y), 0.83, method=method, seed=0, **opts)
    assert removed(masks) == int(np.floor(n * 0.83))
    if method == "grasp":  # the largest -θ⊙Hg go
        scores = grasp_tf.compute_scores(model, (x, y), "grasp", seed=0)
        flat_s = np.concatenate([v.ravel() for v in scores.values()])
        flat_m = np.concatenate([m.ravel() for m in masks.values()])
        assert flat_s[~flat_m].min() >= flat_s[flat_m].max()
        layerwise = grasp_tf.compute_masks(model, (x, y), 0.83, method="grasp", scope="layerwise", seed=0)
        assert all(int((~m).sum()) == int(np.floor(m.size * 0.83)) for m in layerwise.values())


def test_scoring_leaves_weights_bn_statistics_and_rng_state_bit_identical():
    x, y = sample()
    model = net(dropout=True)
    model(x, training=True)
    before = [(v.path, v.numpy().copy()) for v in model.variables]
    assert any("moving_variance" in p for p, _ in before) and any("seed_generator" in p for p, _ in before)
    for method in ("grasp", "grasp_abs", "snip", "synflow"):
        grasp_tf.compute_scores(model, (x, y), method, seed=0)
    grasp_tf.compute_masks(model, (x, y), 0.5, method="synflow", rounds=3)
    assert all(np.array_equal(value, v.numpy()) for (_, value), v in zip(before, model.variables))


def test_the_same_seed_gives_identical_scores_and_masks():
    x, y = sample()
    model = net()
    first = grasp_tf.compute_scores(model, (x, y), "grasp", seed=11)
    assert close(first, grasp_tf.compute_scores(model, (x, y), "grasp", seed=11), 0)
    assert not close(first, grasp_tf.compute_scores(model, (x, y), "grasp", seed=12), 1e-3)
    masks = [grasp_tf.compute_masks(model, (x, y), 0.9, seed=11) for _ in range(2)]
    assert all(np.array_equal(masks[0][k], masks[1][k]) for k in masks[0])


def test_mirrored_strategy_scores_equal_single_device_scores():
    assert len(tf.config.list_logical_devices("CPU")) >= 2
    x, y = sample()
    single = net()
    expected = grasp_tf.compute_scores(single, (x, y), "grasp", seed=5)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = twin(single)
        inside = grasp_tf.compute_scores(mirrored, (x, y), "grasp", seed=5)
    outside = grasp_tf.compute_scores(mirrored, (x, y), "grasp", seed=5)
    assert isinstance(mirrored.layers[1].kernel.value, tf.distribute.DistributedValues)
    assert close(inside, expected, 1e-5) and close(outside, expected, 1e-5)


def test_mixed_float16_models_are_scored_in_float32():
    x, y = sample()
    reference = net()
    expected = grasp_tf.compute_scores(reference, (x, y), "grasp", seed=2)
    keras.config.set_dtype_policy("mixed_float16")
    try:
        mixed = twin(reference)
    finally:
        keras.config.set_dtype_policy("float32")
    assert mixed.layers[1].compute_dtype == "float16"
    scores = grasp_tf.compute_scores(mixed, (x, y), "grasp", seed=2)
    assert all(s.dtype == np.float32 for s in scores.values())
    assert close(scores, expected, 1e-5)
    assert mixed.layers[1].compute_dtype == "float16"


def test_a_real_fashion_mnist_stream_is_sampled_class_balanced(fashion_mnist_slice):
    x, y = fashion_mnist_slice
    model = net(input_shape=(28, 28, 1), classes=10)
    order = np.random.default_rng(0).permutation(len(y))
    stream = tf.data.Dataset.from_tensor_slices((x[order], y[order])).batch(16)
    scores = grasp_tf.compute_scores(model, stream, "grasp", samples_per_class=3, seed=0)
    chosen = np.concatenate([order[y[order] == c][:3] for c in range(10)])
    assert close(scores, grasp_tf.compute_scores(model, (x[chosen], y[chosen]), "grasp", seed=0), 1e-6)
    masks = grasp_tf.compute_masks(model, stream, 0.95, samples_per_class=3, seed=0)
    n = sum(m.size for m in masks.values())
    assert removed(masks) == int(np.floor(n * 0.95))


def only_bn():
    return keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()])


@pytest.mark.parametrize("make_model, data, kwargs, message", [
    (net, "sample", {"method": "grasq"}, "Unknown method 'grasq'"),
    (only_bn, "sample4", {}, "has no prunable weights"),
    (net, "mismatched", {}, "different numbers of examples"),
    (net, "empty_dataset", {}, "empty"),
    (net, "bad_labels", {}, r"Labels \[5, 9\] are outside the model's classes 0..4"),
    (net, "missing_class", {"samples_per_class": 2}, r"classes \[4\] have only \[0\]"),
    (net, "nan_inputs", {}, "loss is not finite"),
    (net, None, {}, "needs data"),
    (lambda: net(classes=1), "sample", {}, "at least 2"),
    (net, "sample", {"temperature": 0.5, "samples": 3}, r"Unknown option\(s\) \['samples'\]"),
    (net, "sample", {"temperature": 0}, r"Option temperature=0 of method 'grasp' is invalid: must be a number > 0"),
    (net, "sample", {"num_chunks": 1.5}, r"Option num_chunks=1.5 of method 'grasp' is invalid: must be an integer"),
    (net, "sample", {"reinit_dense": 1}, r"Option reinit_dense=1 of method 'grasp' is invalid: must be True or"),
    (net, "sample", {"chunk_size": 0}, r"Option chunk_size=0 of method 'grasp' is invalid: must be an integer >= 1 "
                                       r"or None"),
    (net, "sample", {"method": "snip", "temperature": -1.0}, r"Option temperature=-1.0 of method 'snip'"),
    (net, "sample", {"num_chunks": 30}, "cannot be split into num_chunks=30"),
])
def test_bad_input_raises_one_clear_error_and_leaves_the_model_untouched(make_model, data, kwargs, message):
    x, y = sample()
    datasets = {
        "sample": (x, y),
        "sample4": (x[:, 0, 0, :1].repeat(4, axis=1), y),
        "mismatched": (x, y[:-1]),
        "empty_dataset": tf.data.Dataset.from_tensor_slices((x, y)).take(0).batch(4),
        "bad_labels": (x, np.where(np.arange(len(y)) == 3, 9, np.where(np.arange(len(y)) == 8, 5, y))),
        "missing_class": (x[y != 4], y[y != 4]),
        "nan_inputs": (np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x).astype(np.float32), y),
        None: None,
    }
    model = make_model()
    before = [v.numpy().copy() for v in model.variables]
    kwargs = {"method": "grasp", **kwargs}
    with pytest.raises(ValueError, match=message):
        grasp_tf.compute_masks(model, datasets[data], 0.5, **kwargs)
    assert all(np.array_equal(b, v.numpy()) for b, v in zip(before, model.variables))


def test_tf_keras_models_score_like_keras3_models_and_are_restored_bit_for_bit():
    import tf_keras

    def both(lib, activation=None):
        inp = lib.Input((8, 8, 3))
        h = lib.layers.Conv2D(4, 3, use_bias=False)(inp)
        h = lib.layers.BatchNormalization()(h)  # fused in tf_keras
        h = lib.layers.ReLU()(h)
        h = lib.layers.Flatten()(h)
        h = lib.layers.Dense(7)(h)
        h = lib.layers.BatchNormalization()(h)  # unfused in tf_keras
        return lib.Model(inp, lib.layers.Dense(CLASSES, activation=activation)(h))

    x, y = sample()
    keras3 = both(keras)
    legacy = both(tf_keras, activation="softmax")
    legacy.set_weights(keras3.get_weights())
    before = [v.numpy().copy() for v in legacy.variables]
    for method in ("grasp", "snip", "synflow"):
        expected = grasp_tf.compute_scores(keras3, (x, y), method, seed=0)
        got = grasp_tf.compute_scores(legacy, (x, y), method, seed=0)
        assert close(dict(zip(expected, got.values())), expected, 1e-5), method
    grasp_tf.compute_masks(legacy, (x, y), 0.5, method="synflow", rounds=3)
    assert all(np.array_equal(b, v.numpy()) for b, v in zip(before, legacy.variables))
    norms = [l for l in legacy.layers if isinstance(l, tf_keras.layers.BatchNormalization)]
    assert [l.fused for l in norms] == [True, False] and not any("_moments" in l.__dict__ for l in norms)

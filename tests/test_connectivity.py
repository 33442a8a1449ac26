"""FLOP-weighted density, effective sparsity and dead channels in ``sparsity_report`` (grasp_tf.connectivity)."""
import keras
import numpy as np
import pytest

import grasp_tf
from grasp_tf import connectivity


def ones(model):
    return {w.key: np.ones(tuple(w.variable.shape), bool) for w in grasp_tf.prunable.prunable_weights(model)}


def dead_path_model():
    inp = keras.Input((6, 6, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="a")(inp)
    h = keras.layers.Conv2D(2, 3, padding="valid", activation="relu", name="b")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(3, activation="relu", name="c")(h)
    return keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="d")(h))


def test_a_known_dead_path_gives_exact_counts():
    model = dead_path_model()
    masks = ones(model)
    masks["a/kernel"][..., 2] = False     # a's channel 2 is dead, so b's 2x9 weights reading it are not effective
    masks["c/kernel"][:, 2] = False       # c's unit 2 gets no input: d's row 2 (2 weights) reads nothing
    masks["d/kernel"][1, :] = False       # c's unit 1 feeds nothing: its 2 input weights reach no output
    report = grasp_tf.sparsity_report(grasp_tf.apply_masks(model, masks))
    w, g = report["weights"], report["global"]
    assert [w[k]["kept"] for k in ("a/kernel", "b/kernel", "c/kernel", "d/kernel")] == [81, 72, 4, 4]
    assert [w[k]["effective_kept"] for k in ("a/kernel", "b/kernel", "c/kernel", "d/kernel")] == [81, 54, 2, 2]
    assert [w[k]["dead_channels"] for k in ("a/kernel", "b/kernel", "c/kernel", "d/kernel")] == [1, 0, 1, 0]
    assert [w[k]["effectively_dead_channels"] for k in ("a/kernel", "b/kernel", "c/kernel", "d/kernel")] \
        == [1, 0, 2, 0]
    assert [w[k]["channels"] for k in ("a/kernel", "b/kernel", "c/kernel", "d/kernel")] == [4, 2, 3, 2]
    # MACs: a keeps 6x6 outputs (36 per weight), b 4x4 (16), the Dense layers one per example.
    assert [w[k]["macs"] for k in ("a/kernel", "b/kernel", "c/kernel", "d/kernel")] == [3888, 1152, 6, 6]
    assert g["macs"] == 5052 and g["kept_macs"] == 81 * 36 + 72 * 16 + 8
    assert g["effective_macs"] == 81 * 36 + 54 * 16 + 4
    assert g["flop_density"] == pytest.approx(g["kept_macs"] / 5052)
    assert g["effective_kept"] == 139 and g["effective_sparsity"] == pytest.approx(1 - 139 / g["total"])
    assert g["dead_channels"] == 2 and g["effectively_dead_channels"] == 3 and g["channels"] == 11
    assert g["connectivity_note"] is None
    dense = grasp_tf.sparsity_report(model)["global"]  # the unpruned model: everything effective
    assert dense["effective_sparsity"] == 0.0 and dense["flop_density"] == 1.0 and dense["dead_channels"] == 0


def test_masks_that_cut_every_path_leave_nothing_effective():
    model = dead_path_model()
    masks = ones(model)
    masks["c/kernel"][:] = False  # c keeps nothing: no weight of a, b or d lies on an input-to-output path
    g = grasp_tf.sparsity_report(grasp_tf.apply_masks(model, masks))["global"]
    assert g["connectivity_note"] is None and g["effective_kept"] == 0 and g["effective_sparsity"] == 1.0
    assert g["effective_macs"] == 0 and g["effectively_dead_channels"] == g["channels"] == 11
    inp = keras.Input((4,))  # a centring layer: a zero output says nothing, so no number either way
    h = keras.layers.LayerNormalization()(keras.layers.Dense(3, name="d1")(inp))
    centred = keras.Model(inp, keras.layers.Dense(2, name="d2")(h))
    cut = ones(centred)
    cut["d2/kernel"][:] = False
    g = grasp_tf.sparsity_report(grasp_tf.apply_masks(centred, cut))["global"]
    assert g["effective_sparsity"] is None and "positive" in g["connectivity_note"]


def test_macs_of_strided_depthwise_separable_transposed_and_rank3_dense_layers():
    inp = keras.Input((8, 8, 2))
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="conv")(inp)              # 4x4 out
    h = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(h)                   # 2x2 out
    h = keras.layers.SeparableConv2D(3, 1, name="sep")(h)                                   # 2x2 out
    h = keras.layers.Conv2DTranspose(2, 3, strides=2, padding="same", name="up")(h)         # 2x2 in
    h = keras.layers.Dense(5, name="seq")(keras.layers.Reshape((16, 2))(h))                  # 16 positions
    out = keras.layers.Dense(3, name="fc")(keras.layers.Flatten()(h))
    model = keras.Model(inp, out)
    masks = ones(model)
    masks["conv/kernel"][0] = False                       # 1/3 of the conv kernel: 24 of 72 weights pruned
    masks["dw/kernel"] = np.ones((3, 3, 4, 2), bool)      # Keras 3 names it "kernel" (not default-prunable)
    masks["dw/kernel"][..., 0, 0] = False                 # one depthwise output channel dead (9 weights)
    report = grasp_tf.sparsity_report(grasp_tf.apply_masks(model, masks))
    w = report["weights"]
    macs = {k: w[k]["macs"] for k in w}
    assert macs == {"conv/kernel": 72 * 16, "dw/kernel": 72 * 4, "sep/depthwise_kernel": 8 * 4,
                    "sep/pointwise_kernel": 24 * 4, "up/kernel": 54 * 4, "seq/kernel": 10 * 16, "fc/kernel": 240}
    assert w["conv/kernel"]["kept_macs"] == 48 * 16 and w["dw/kernel"]["kept_macs"] == 63 * 4
    assert w["dw/kernel"]["channels"] == 8 and w["dw/kernel"]["dead_channels"] == 1
    assert w["up/kernel"]["channels"] == 2 and w["sep/pointwise_kernel"]["channels"] == 3
    total = sum(macs.values())
    assert report["global"]["flop_density"] == pytest.approx((total - 24 * 16 - 9 * 4) / total)
    assert report["global"]["connectivity_note"] is None


def residual_model(concat):
    inp = keras.Input((5, 5, 2))
    a = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="a")(inp)
    b = keras.layers.Conv2D(3, 3, padding="same", name="b")(a)
    b = keras.layers.BatchNormalization(name="bn")(b)
    h = keras.layers.Concatenate()([a, b]) if concat else keras.layers.Add()([a, b])
    h = keras.layers.ReLU()(h)
    h = keras.layers.Conv2D(2, 1, name="c")(h)
    h = keras.layers.Flatten()(h)
    return keras.Model(inp, keras.layers.Dense(4, name="fc")(h))


@pytest.mark.parametrize("concat", [False, True])
def test_residual_add_keeps_a_dead_branch_channel_alive_but_concatenation_does_not(concat):
    model = residual_model(concat)
    masks = ones(model)
    masks["b/kernel"][..., 1] = False        # b's channel 1 is dead
    report = grasp_tf.sparsity_report(grasp_tf.apply_masks(model, masks))["weights"]
    c_in = 6 if concat else 3
    # After the add, channel 1 still carries a's channel 1: every c weight is effective. After the
    # concatenation, c's input 3 + 1 is b's dead channel: its 2 weights are not.
    assert report["c/kernel"]["kept"] == c_in * 2
    assert report["c/kernel"]["effective_kept"] == c_in * 2 - (2 if concat else 0)
    assert report["b/kernel"]["effective_kept"] == 9 * 3 * 2 and report["b/kernel"]["dead_channels"] == 1
    assert report["fc/kernel"]["effective_kept"] == 5 * 5 * 2 * 4


def test_flatten_maps_a_dead_channel_to_its_dense_rows_channels_last():
    inp = keras.Input((3, 4, 1))
    h = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv")(inp)
    model = keras.Model(inp, keras.layers.Dense(2, name="fc")(keras.layers.Flatten()(h)))
    masks = ones(model)
    masks["conv/kernel"][..., 2] = False
    masks["fc/kernel"][5, :] = False          # row 5 = position 1, channel 2: already dead anyway
    report = grasp_tf.sparsity_report(grasp_tf.apply_masks(model, masks))["weights"]["fc/kernel"]
    # Flatten orders (row, col, channel): channel 2 is every third input; 12 positions x 2 units.
    assert report["kept"] == 72 - 2 and report["effective_kept"] == 72 - 24


def channel_reachability(kernels):
    """Independent numpy: effective masks of a chain of kernels (spatial..., in, out) by channel reachability."""
    links = [k.reshape(-1, k.shape[-2], k.shape[-1]).any(axis=0) for k in kernels]
    fwd = [np.ones(links[0].shape[0], bool)]
    for link in links:
        fwd.append((fwd[-1][:, None] & link).any(axis=0))
    bwd = [np.ones(links[-1].shape[1], bool)]
    for link in reversed(links):
        bwd.insert(0, (link & bwd[0][None, :]).any(axis=1))
    return [k & (fwd[i][:, None] & bwd[i + 1][None, :]) for i, k in enumerate(kernels)]


def test_effective_masks_match_channel_reachability_on_random_sparse_chains():
    model = keras.Sequential([keras.Input((6, 6, 3)),
                              keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c1"),
                              keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c2"),
                              keras.layers.MaxPooling2D(),
                              keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c3"),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(5, activation="relu", name="d1"),
                              keras.layers.Dense(4, name="d2")])
    rng = np.random.default_rng(0)
    losses = 0
    for trial in range(4):
        masks = {k: rng.random(m.shape) < 0.15 for k, m in ones(model).items()}
        report = grasp_tf.sparsity_report(grasp_tf.apply_masks(model, masks))["weights"]
        want = channel_reachability([masks[k] for k in ("c1/kernel", "c2/kernel", "c3/kernel", "d1/kernel",
                                                        "d2/kernel")])
        got = [report[k]["effective_kept"] for k in ("c1/kernel", "c2/kernel", "c3/kernel", "d1/kernel", "d2/kernel")]
        assert got == [int(e.sum()) for e in want], trial
        losses += sum(int(masks[k].sum()) for k in masks) - sum(got)
    assert losses > 0  # the draws did produce ineffective weights


def test_deep_networks_neither_overflow_nor_lose_paths():
    import models

    # The unpruned |ones| networks' raw path flows reach ~1e47 (ResNet20) and beyond: float32 would overflow.
    vgg = grasp_tf.sparsity_report(models.build("vgg19", 10, (32, 32, 3), seed=0))["global"]
    assert vgg["connectivity_note"] is None and vgg["effective_sparsity"] == 0.0
    assert vgg["macs"] == 398_136_320  # the 3.98e8 pruning papers give CIFAR VGG19 (convs + classifier)
    model = models.build("resnet20", 10, (32, 32, 3), width=1, seed=0)
    masks = {k: np.random.default_rng(1).random(m.shape) < 0.05 for k, m in ones(model).items()}
    g = grasp_tf.sparsity_report(grasp_tf.apply_masks(model, masks))["global"]
    assert g["connectivity_note"] is None
    assert g["sparsity"] < g["effective_sparsity"] < 1.0 and 0.04 < g["flop_density"] < 0.06
    assert 0 < g["effectively_dead_channels"] and g["dead_channels"] <= g["effectively_dead_channels"]


def test_models_without_input_size_or_with_centring_layers_get_none_with_a_reason():
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(2, 3, name="conv")
            self.fc = keras.layers.Dense(2, name="fc")

        def call(self, x):
            return self.fc(keras.layers.Flatten()(self.conv(x)))

    sub = Sub()
    sub(np.ones((1, 4, 4, 1), np.float32))
    g = grasp_tf.sparsity_report(sub)["global"]
    assert g["macs"] is None and g["effective_sparsity"] is None and g["dead_channels"] == 0
    assert "input size" in g["connectivity_note"]
    inp = keras.Input((4,))
    h = keras.layers.LayerNormalization()(keras.layers.Dense(3, name="d1")(inp))
    model = keras.Model(inp, keras.layers.Dense(2, name="d2")(h))
    masks = ones(model)
    masks["d2/kernel"][0] = False
    g = grasp_tf.sparsity_report(grasp_tf.apply_masks(model, masks))["global"]
    assert g["effective_sparsity"] is None and "positive" in g["connectivity_note"]
    assert g["flop_density"] == pytest.approx((12 + 4) / 18)


def test_kinds_cover_the_default_prunable_kernels():
    from grasp_tf.prunable import DEFAULT_PRUNABLE

    assert set(DEFAULT_PRUNABLE) == set(connectivity.KINDS)

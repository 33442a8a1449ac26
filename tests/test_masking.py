"""Thresholding: exact counts, deterministic ties, both orientations, both scopes, validation."""
import numpy as np
import pytest

from grasp_tf.masking import check_masks, kth_smallest, masks_from_scores, shuffle_within_layers, sparsity_of


def removed(masks):
    return sum(int((~m).sum()) for m in masks.values())


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.9, 0.98, 0.999])
@pytest.mark.parametrize("remove_largest", [False, True])
def test_global_removes_exactly_floor_n_s(sparsity, remove_largest):
    rng = np.random.default_rng(1)
    scores = {"a/kernel": rng.normal(size=(3, 3, 4, 8)), "b/kernel": rng.normal(size=(64, 10))}
    masks = masks_from_scores(scores, sparsity, remove_largest=remove_largest)
    n = 3 * 3 * 4 * 8 + 640
    assert removed(masks) == int(np.floor(n * sparsity))
    flat_s = np.concatenate([s.ravel() for s in scores.values()])
    flat_m = np.concatenate([m.ravel() for m in masks.values()])
    if 0 < sparsity:
        if remove_largest:
            assert flat_s[~flat_m].min() >= flat_s[flat_m].max()
        else:
            assert flat_s[~flat_m].max() <= flat_s[flat_m].min()


@pytest.mark.parametrize("tied", [0.0, 0.5, 0.99, 1.0])
def test_kth_smallest_equals_the_sorted_value_whatever_the_ties_at_the_minimum(tied):
    rng = np.random.default_rng(2)
    flat = rng.integers(0, 30, 500).astype(float)  # ties everywhere, and `tied` of it pinned at -1
    flat[rng.random(500) < tied] = -1.0
    ordered = np.sort(flat)
    for k in (1, 2, 7, 250, 499, 500):
        assert kth_smallest(flat, k) == ordered[k - 1]


def test_ties_are_broken_by_position_and_deterministically():
    scores = {"a/kernel": np.zeros((2, 5)), "b/kernel": np.zeros(5)}
    masks = masks_from_scores(scores, 0.4)  # k = 6 of 15, all tied
    assert removed(masks) == 6
    np.testing.assert_array_equal(masks["a/kernel"].ravel(), [False] * 6 + [True] * 4)
    assert masks["b/kernel"].all()
    again = masks_from_scores(scores, 0.4)
    for k in masks:
        np.testing.assert_array_equal(masks[k], again[k])


def test_reference_count_rule_keeps_ties_at_threshold():
    s = {"w/kernel": np.array([5.0, 4.0, 3.0, 3.0, 1.0, 0.0])}
    # GraSP removes the largest; k = floor(6 * 0.5) = 3; the 3rd largest (3.0) is the threshold.
    exact = masks_from_scores(s, 0.5, remove_largest=True)["w/kernel"]
    ref = masks_from_scores(s, 0.5, remove_largest=True, count_rule="reference")["w/kernel"]
    np.testing.assert_array_equal(exact, [False, False, False, True, True, True])
    np.testing.assert_array_equal(ref, [False, False, True, True, True, True])


def test_layerwise_prunes_each_tensor_by_the_same_fraction():
    rng = np.random.default_rng(2)
    scores = {"a/kernel": rng.normal(size=100) + 10, "b/kernel": rng.normal(size=50)}
    masks = masks_from_scores(scores, 0.3, scope="layerwise")
    assert (~masks["a/kernel"]).sum() == 30 and (~masks["b/kernel"]).sum() == 15
    glob = masks_from_scores(scores, 0.3)
    assert glob["a/kernel"].all()  # a global threshold takes everything from the low-scoring layer


def test_shuffle_keeps_per_layer_density_and_moves_weights():
    rng = np.random.default_rng(3)
    masks = {"a/kernel": rng.random((20, 20)) > 0.9, "b/kernel": rng.random(300) > 0.5}
    shuffled = shuffle_within_layers(masks, seed=0)
    for k in masks:
        assert shuffled[k].sum() == masks[k].sum() and shuffled[k].shape == masks[k].shape
    assert not np.array_equal(shuffled["b/kernel"], masks["b/kernel"])
    np.testing.assert_array_equal(shuffle_within_layers(masks, seed=0)["a/kernel"], shuffled["a/kernel"])
    assert sparsity_of(masks) == pytest.approx(sparsity_of(shuffled))


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5, float("nan"), "half", None])
def test_bad_sparsity(sparsity):
    with pytest.raises(ValueError, match="sparsity"):
        masks_from_scores({"a/kernel": np.ones(4)}, sparsity)


def test_bad_scores_scope_and_rule():
    with pytest.raises(ValueError, match="a/kernel.* NaN or infinity"):
        masks_from_scores({"a/kernel": np.array([1.0, np.nan])}, 0.5)
    with pytest.raises(ValueError, match="Unknown scope 'per_layer'"):
        masks_from_scores({"a/kernel": np.ones(4)}, 0.5, scope="per_layer")
    with pytest.raises(ValueError, match="Unknown count_rule"):
        masks_from_scores({"a/kernel": np.ones(4)}, 0.5, count_rule="torch")


def test_check_masks_names_unknown_keys_and_bad_shapes():
    shapes = {"a/kernel": (3, 4)}
    with pytest.raises(ValueError, match="does not have.*'z/kernel'"):
        check_masks({"z/kernel": np.ones((3, 4))}, shapes)
    with pytest.raises(ValueError, match=r"shape \(4, 3\).*\(3, 4\)"):
        check_masks({"a/kernel": np.ones((4, 3))}, shapes)
    assert check_masks({"a/kernel": np.ones((3, 4))}, shapes)["a/kernel"].dtype == bool

"""Scoring samples: class-balanced draws in class order, draws continuing the stream, chunks, errors."""
import numpy as np
import pytest
import tensorflow as tf

from grasp_tf import sampling


def coded_stream(labels, batch=4, unbatched=False):
    """A dataset whose example i has x = [i, i] and the given label, so draws can be traced back."""
    labels = np.asarray(labels, dtype=np.int64)
    x = np.stack([np.arange(len(labels))] * 2, axis=1).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, labels))
    return ds if unbatched else ds.batch(batch)


def ids(x):
    return x[:, 0].astype(int).tolist()


# stream positions:  0  1  2  3  4  5  6  7  8  9 10 11 12 13
STREAM_LABELS = [2, 0, 2, 1, 0, 2, 1, 0, 1, 2, 0, 1, 2, 0]


@pytest.mark.parametrize("unbatched", [False, True])
def test_balanced_draw_takes_first_examples_of_each_class_stacked_in_class_order(unbatched):
    sample = sampling.draw(coded_stream(STREAM_LABELS, unbatched=unbatched), 3, samples_per_class=2)
    (x, y), = sample.draws
    assert ids(x) == [1, 4, 3, 6, 0, 2]
    assert y.tolist() == [0, 0, 1, 1, 2, 2]


def test_further_draws_continue_the_stream_where_the_previous_stopped():
    with sampling.draw(coded_stream(STREAM_LABELS, batch=5), 3, samples_per_class=2, num_draws=2) as sample:
        # Draw 1 is complete at position 6; 5 (a third '2') was skipped, 7.. start draw 2.
        assert ids(sample.draws[1][0]) == [7, 10, 8, 11, 9, 12]
        x, y = sample.concatenated()
    assert ids(x) == [1, 4, 3, 6, 0, 2, 7, 10, 8, 11, 9, 12]
    assert y.tolist() == [0, 0, 1, 1, 2, 2] * 2


def test_one_hot_labels_give_the_same_draw_as_integer_labels():
    labels = np.asarray(STREAM_LABELS)
    x = np.arange(len(labels), dtype=np.float32)[:, None]
    by_int = sampling.draw((x, labels), 3, samples_per_class=2)
    by_one_hot = sampling.draw((x, np.eye(3, dtype=np.float32)[labels]), 3, samples_per_class=2)
    np.testing.assert_array_equal(by_int.draws[0][0], by_one_hot.draws[0][0])
    np.testing.assert_array_equal(by_int.draws[0][1], by_one_hot.draws[0][1])


def test_a_pair_is_used_as_given_and_a_dataset_gives_one_batch_per_draw():
    x = np.arange(7, dtype=np.float32)[:, None]
    y = np.array([2, 2, 1, 0, 0, 1, 2])
    (dx, dy), = sampling.draw((x, y), 3).draws
    np.testing.assert_array_equal(dx, x)
    np.testing.assert_array_equal(dy, y)
    with sampling.draw(coded_stream(STREAM_LABELS, batch=4), 3, num_draws=2) as sample:
        assert [ids(d[0]) for d in sample] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_the_class_count_can_come_from_the_first_batch():
    seen = []
    sample = sampling.draw(coded_stream(STREAM_LABELS), lambda x: seen.append(x.shape) or 3,
                           samples_per_class=1)
    assert seen == [(4, 2)] and sample.draws[0][1].tolist() == [0, 1, 2]  # one of each of the 3 classes


@pytest.mark.parametrize("n", [10, 11])
def test_two_chunks_are_the_reference_halves(n):
    assert sampling.chunk_slices(n, 2) == [slice(0, n // 2), slice(n // 2, n)]


def test_pieces_cover_a_chunk_with_weights_summing_to_one():
    parts = sampling.pieces(slice(5, 16), 4)
    assert [p for p, _ in parts] == [slice(5, 9), slice(9, 13), slice(13, 16)]
    assert [w for _, w in parts] == [4 / 11, 4 / 11, 3 / 11]
    assert sampling.pieces(slice(0, 6), None) == [(slice(0, 6), 1.0)]


@pytest.mark.parametrize("data, kwargs, message", [
    ((np.zeros((5, 2)), np.zeros(4)), {}, "different numbers of examples"),
    ((np.zeros((0, 2)), np.zeros(0)), {}, "holds no examples"),
    (tf.data.Dataset.from_tensor_slices((np.zeros((0, 2)), np.zeros(0))).batch(2), {}, "empty"),
    ((np.zeros((3, 2)), np.array([0, 3, 1])), {}, r"Labels \[3\] are outside the model's classes 0..2"),
    ((np.zeros((3, 2)), np.array([0, -1, 1])), {}, "outside the model's classes"),
    ((np.zeros((3, 2)), np.eye(4)[[0, 1, 2]]), {}, "4 columns but the model has 3 classes"),
    ((np.zeros((3, 2)), np.full((3, 3), 1 / 3)), {}, "must be one-hot"),
    ((np.zeros((3, 2)), np.array([0.5, 1, 2])), {}, "integer class ids"),
    ((np.zeros((4, 2)), np.array([0, 0, 1, 1])), {"samples_per_class": 1},
     r"classes \[2\] have only \[0\]"),
    (coded_stream([0, 1, 0, 1, 2]), {"samples_per_class": 2}, r"ran out .* classes \[2\] have only \[1\]"),
    (coded_stream([0, 1, 2]), {"samples_per_class": 1, "num_draws": 2}, "ran out"),
    ((np.zeros((3, 2)), np.arange(3)), {"num_draws": 2}, "a single draw"),
    (coded_stream([0, 1, 2]), {"num_draws": 2}, "ended after 1"),
    ((np.zeros((3, 2)), np.arange(3)), {"samples_per_class": 0}, "samples_per_class must be"),
    ((np.zeros((3, 2)), np.arange(3)), {"num_draws": 1.5}, "num_draws must be"),
    (tf.data.Dataset.from_tensor_slices(np.zeros((3, 2))).batch(2), {}, r"\(x, y\) pairs"),
    ([np.zeros((3, 2))], {}, "must be an"),
])
def test_bad_data_raises_one_clear_error(data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        sampling.draw(data, 3, **kwargs)


def test_an_endless_stream_lacking_a_class_gives_up_with_a_clear_error():
    endless = coded_stream([0, 1, 0, 1]).repeat()
    with pytest.raises(ValueError, match=r"After \d+ examples the stream had still not given 1 examples of every class .* classes \[2\] have only \[0\]"):
        sampling.draw(endless, 3, samples_per_class=1)


def test_too_few_examples_for_the_chunks_is_an_error():
    with pytest.raises(ValueError, match="cannot be split into num_chunks=2"):
        sampling.chunk_slices(1, 2)

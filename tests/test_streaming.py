"""Streamed scoring samples: bit-identical scores, one draw in memory, spill files removed, replay, progress."""
import os
import tempfile
import tracemalloc

import numpy as np
import pytest
import tensorflow as tf

import grasp_tf
from grasp_tf import progress, sampling
from tests.test_criteria import CLASSES, net, sample


def dataset(x, y, batch):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


def assert_same(a, b):
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


DRAWS = {  # random batches (the ImageNet setting) and class-balanced draws (CIFAR / Tiny-ImageNet)
    "random_batches": {"num_draws": 3},
    "class_balanced": {"samples_per_class": 2, "num_draws": 4},
}


@pytest.mark.parametrize("method", ["grasp", "grasp_abs", "snip"])
@pytest.mark.parametrize("draws", sorted(DRAWS))
@pytest.mark.parametrize("chunk_size", [None, 5])
def test_streamed_scores_equal_the_in_memory_scores_bit_for_bit(method, draws, chunk_size):
    x, y = sample(n=100)
    model = net()
    opts = dict(DRAWS[draws], seed=0, **({} if chunk_size is None else {"chunk_size": chunk_size}))
    in_memory = grasp_tf.compute_scores(model, dataset(x, y, 12), method, sample_storage="memory", **opts)
    for storage in ("disk", "replay"):
        assert_same(grasp_tf.compute_scores(model, dataset(x, y, 12), method, sample_storage=storage, **opts),
                    in_memory)


def test_chunked_pieces_over_streamed_draws_are_those_of_the_concatenated_sample():
    """Three draws of 12: SNIP's pieces of 7 span draws; GraSP's halves of 6 are cut in pieces of 4 and 2."""
    x, y = sample(n=36)
    model = net()
    stream = dataset(x, y, 12)
    assert_same(grasp_tf.compute_scores(model, stream, "snip", num_draws=3, chunk_size=7),
                grasp_tf.compute_scores(model, (x, y), "snip", chunk_size=7))
    assert_same(grasp_tf.compute_scores(model, stream, "grasp", num_draws=3, chunk_size=4, seed=0),
                grasp_tf.compute_scores(model, (x, y), "grasp", num_chunks=6, chunk_size=4, seed=0))


def test_pieces_across_draws_follow_the_concatenated_sample():
    x = np.arange(23, dtype=np.float32)[:, None]
    with sampling.draw(dataset(x, np.zeros(23, np.int64), 5), 3, num_draws=5) as drawn:
        got = [(px[:, 0].astype(int).tolist(), w) for px, _, w in sampling.pieces_across(drawn, 7)]
    assert got == [(list(range(a, min(a + 7, 23))), min(7, 23 - a) / 23) for a in range(0, 23, 7)]


def once_only(x, y, batch):
    """A generator-backed dataset that can be iterated only once (like a live data source)."""
    used = []

    def generate():
        if used:
            raise RuntimeError("this data can be read only once")
        used.append(True)
        for i in range(0, len(y), batch):
            yield x[i:i + batch], y[i:i + batch]

    spec = (tf.TensorSpec((None, *x.shape[1:]), tf.float32), tf.TensorSpec((None,), tf.int64))
    return tf.data.Dataset.from_generator(generate, output_signature=spec)


def test_data_that_can_be_read_once_is_spilled_and_replay_refuses_it():
    x, y = sample(n=40)
    model = net()
    spilled = grasp_tf.compute_scores(model, once_only(x, y, 10), "grasp", num_draws=4, seed=0)
    assert_same(spilled, grasp_tf.compute_scores(model, dataset(x, y, 10), "grasp", num_draws=4, seed=0,
                                                 sample_storage="memory"))
    with pytest.raises(ValueError, match="sample_storage='replay': iterating the data again failed at draw 0"):
        grasp_tf.compute_scores(model, once_only(x, y, 10), "grasp", num_draws=4, sample_storage="replay")


def test_replay_refuses_data_that_changes_between_iterations():
    x, y = sample(n=40)
    shuffled = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(40).batch(10)  # unseeded: new order each time
    with pytest.raises(ValueError, match="draw 0 differs from the first pass's"):
        grasp_tf.compute_scores(net(), shuffled, "grasp", num_draws=2, sample_storage="replay")


def peak_traced_bytes(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_sample_is_not_materialised():
    """Peak Python-side allocation while scoring 12 draws: a few draws' worth spilled, all twelve in memory.

    (Drawing a class-balanced draw holds its parts, their concatenation and the dataset's
    current batch, here as large as a draw: about three draws, whatever the number of draws.)
    """
    per_class, draws = 20, 12
    x, _ = sample(n=per_class * CLASSES * draws, input_shape=(32, 32, 3))
    y = np.arange(len(x)) % CLASSES  # every draw takes the next 100 examples
    model = net(input_shape=(32, 32, 3))
    stream = dataset(x, y, 100)
    draw_bytes = per_class * CLASSES * 32 * 32 * 3 * 4  # 1.2 MB

    def score(storage):
        return grasp_tf.compute_scores(model, stream, "grasp", samples_per_class=per_class, num_draws=draws,
                                       chunk_size=25, sample_storage=storage, seed=0)

    score("disk")  # trace once: the measured calls reuse the graphs
    in_memory, spilled = peak_traced_bytes(lambda: score("memory")), peak_traced_bytes(lambda: score("disk"))
    assert in_memory > draws * draw_bytes
    assert spilled < 4 * draw_bytes, (spilled / draw_bytes, in_memory / draw_bytes)


@pytest.fixture
def spill_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_spill_files_are_deleted_after_scoring_and_on_error(spill_dir):
    x, y = sample(n=40)
    model = net()
    seen = []
    original = np.load

    def spying_load(path, *args, **kwargs):
        seen.append(os.path.dirname(path))
        return original(path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(np, "load", spying_load)
        grasp_tf.compute_scores(model, dataset(x, y, 10), "snip", num_draws=4, chunk_size=3)
    assert seen and all(os.path.dirname(d) == str(spill_dir) for d in seen)
    assert not os.listdir(spill_dir)
    with pytest.raises(ValueError, match="ended after 4 non-empty batches"):  # while drawing
        grasp_tf.compute_scores(model, dataset(x, y, 10), "grasp", num_draws=5)
    assert not os.listdir(spill_dir)
    bad = x.copy()
    bad[35] = np.nan
    with pytest.raises(ValueError, match="not finite .* draw 3"):  # while scoring
        grasp_tf.compute_scores(model, dataset(bad, y, 10), "grasp", num_draws=4)
    assert not os.listdir(spill_dir)


def test_bad_storage_or_verbose_is_an_error():
    x, y = sample()
    with pytest.raises(ValueError, match="sample_storage must be one of 'disk', 'replay', 'memory'"):
        grasp_tf.compute_scores(net(), (x, y), "grasp", sample_storage="tape")
    with pytest.raises(ValueError, match="verbose must be"):
        grasp_tf.compute_scores(net(), (x, y), "grasp", verbose="loud")


def test_progress_lines_appear_when_not_on_a_terminal_and_small_jobs_stay_quiet(capsys):
    x, y = sample(n=40)
    model = net()
    grasp_tf.compute_scores(model, dataset(x, y, 10), "grasp", num_draws=4, chunk_size=3, verbose=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("drawing the scoring sample: 1/4 draws, ")
    assert "drawing the scoring sample: 4/4 draws, " in lines[1] and lines[1].endswith(", done")
    assert any(line.startswith("GraSP g: 1/16 pieces, ") and "ETA" in line for line in lines)
    assert any(line.startswith("GraSP Hg: 16/16 pieces, ") for line in lines)
    grasp_tf.compute_scores(model, dataset(x, y, 10), "snip", num_draws=4, chunk_size=3)  # verbose="auto"
    assert capsys.readouterr().out == ""


def test_auto_progress_starts_once_a_task_has_run_a_while(capsys, monkeypatch):
    monkeypatch.setattr(progress, "AUTO_DELAY", 0.0)
    monkeypatch.setattr(progress, "LINE_INTERVAL", 0.0)
    task = progress.Progress("task", 3, "steps")
    for _ in range(3):
        task.step()
    assert [line.split(",")[0] for line in capsys.readouterr().out.splitlines()] == [
        "task: 1/3 steps", "task: 2/3 steps", "task: 3/3 steps"]
    progress.Progress("single", 1, "steps").step()  # one step: nothing to report
    assert capsys.readouterr().out == ""


def test_progress_names_each_step_at_interval_zero_and_formats_durations_one_way(capsys):
    task = progress.Progress("layers", 2, "methods", verbose=True, interval=0)  # as train.analyze uses it
    task.step(what="grasp scored")
    task.step(what="snip scored")
    first, last = capsys.readouterr().out.splitlines()
    assert first.startswith("layers: 1/2 methods, ") and ", ETA " in first and first.endswith(" (grasp scored)")
    assert last.startswith("layers: 2/2 methods, ") and last.endswith(", done (snip scored)")
    assert [progress.duration(s) for s in (42.04, 156.0, 5400.0)] == ["42.0 s", "2.6 min", "1.5 h"]
    assert progress.duration(40.4, digits=0) == "40 s"

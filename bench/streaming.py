"""Streamed scoring at ImageNet shape: peak RSS against the number of draws, spill vs replay vs memory.

Part of ``bench/scoring.py --streaming`` (the workers run there). Each measurement is a
fresh process that loads ``imagenet2012`` through ``train.data.load`` (the tensorflow-datasets
code path, ResNet preprocessing: random crops resized to 224x224x3 float32) from generated
data: tfds' mock data with realistic JPEGs (500x375, smooth random content with noise, ~59 KB each)
instead of tfds' default 5–50 px mock images, so decoding costs what a real image costs.
The model is the repository's ``conv4`` behind a 4x4 average pool (224 -> 56 px), small
enough for a CPU; the sample is the real thing: ``num_draws`` random batches of 250 images
at 224 px (150 MiB of float32 each), GraSP with ``chunk_size=20`` (the reference ImageNet
setting's procedure). After TensorFlow, the data and the model are loaded, the worker resets
the peak RSS, scores 4 draws (warm-up: tracing, and the input pipeline's buffers, which grow
over its first few batches), then ``num_draws`` draws of a fresh stream: ``peak_mib`` is the
peak RSS growth over both (what the machine must provide beyond the loaded process),
``call_peak_mib`` that of the measured call alone. Like ``train.run``, the worker first pins
glibc's mmap threshold (``train.allocator``).

``--projection`` workers time GraSP's two passes on VGG16 and ResNet-50 at 224 px on pieces
of 4 and 8 random images, to put the reference setting (150 draws x 250, chunk_size 20) on
paper from the measured per-image slopes.
"""
from __future__ import annotations

import os
import time

from bench import common

BATCH = 250
JPEG_SIZE = (375, 500)  # height, width: about ImageNet's average training image
DISTINCT_JPEGS = 64
WARM_UP_DRAWS = 4


def _realistic_jpegs(n: int, seed: int = 0) -> list[bytes]:
    """``n`` JPEGs of ImageNet's typical size: smooth random colour fields with some texture."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        coarse = tf.constant(rng.uniform(0, 255, (1, 12, 16, 3)), tf.float32)
        image = tf.image.resize(coarse, JPEG_SIZE, method="bicubic")[0]
        image += rng.normal(0, 8, (*JPEG_SIZE, 3))
        out.append(tf.io.encode_jpeg(tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8), quality=90).numpy())
    return out


def mocked_imagenet(num_examples: int):
    """A context in which ``tfds`` serves ``imagenet2012`` as ``num_examples`` realistic JPEGs (labels i % 1000)."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    jpegs = tf.constant(_realistic_jpegs(DISTINCT_JPEGS))

    def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
        del self, split, decoders, read_config, shuffle_files
        return tf.data.Dataset.range(num_examples).map(lambda i: {
            "image": jpegs[i % DISTINCT_JPEGS], "label": i % 1000, "file_name": tf.strings.as_string(i)})

    return tfds.testing.mock_data(num_examples=num_examples, as_dataset_fn=as_dataset)


def model_224():
    """``conv4`` with 1000 classes behind a 4x4 average pool: 224x224x3 images, 56x56 convolutions."""
    import keras

    import models

    inner = models.build("conv4", 1000, (56, 56, 3), seed=0)
    inputs = keras.Input((224, 224, 3))
    return keras.Model(inputs, inner(keras.layers.AveragePooling2D(4, name="pool224")(inputs)), name="pooled_conv4")


def measure(storage: str, num_draws: int, chunk_size: int = 20) -> dict:
    """Peak RSS growth and wall time of GraSP over ``num_draws`` draws of 250 ImageNet-shaped images."""
    import tempfile

    import grasp_tf
    from train import allocator, data

    pinned = allocator.pin_mmap_threshold()  # as train.run does at start-up
    with mocked_imagenet(4 * BATCH), tempfile.TemporaryDirectory() as tfds_dir:
        ds = data.load("imagenet2012", data_dir=tfds_dir, batch_size=BATCH, seed=0)
        model = model_224()

        def score(draws: int, seed: int, how: str) -> None:
            grasp_tf.compute_scores(model, ds.train_stream(seed=seed).batch(BATCH), "grasp", num_draws=draws,
                                    chunk_size=chunk_size, sample_storage=how, seed=0, verbose=False)

        load = os.getloadavg()[0]
        baseline = common.reset_peak_rss()
        # Warm-up: tracing, and the input pipeline's own buffers (tf.data's parallel decoding
        # and the allocator's arenas), which grow over its first few batches of 150 MiB.
        score(WARM_UP_DRAWS, 1, "disk")
        warm_up_peak = common.peak_rss_since(baseline)
        call_baseline = common.reset_peak_rss()
        t0 = time.perf_counter()
        score(num_draws, 2, storage)
        seconds = time.perf_counter() - t0
        call_peak = common.peak_rss_since(call_baseline)
        peak = max(warm_up_peak, common.peak_rss_since(baseline))  # VmHWM since the second reset, vs baseline
    return {"storage": storage, "num_draws": num_draws, "batch": BATCH, "chunk_size": chunk_size,
            "image": [224, 224, 3], "sample_mib": num_draws * BATCH * 224 * 224 * 3 * 4 / 2**20,
            "seconds": seconds, "seconds_per_draw": seconds / num_draws, "peak_mib": peak,
            "call_peak_mib": call_peak, "warm_up_draws": WARM_UP_DRAWS, "loadavg": load,
            "mmap_threshold_pinned": pinned}


def measure_piece(model_name: str, piece: int) -> dict:
    """GraSP's two passes on a draw of ``2 * piece`` random 224 px images in pieces of ``piece``: time, peak RSS."""
    import numpy as np

    import grasp_tf
    import models

    model = models.build(model_name, 1000, (224, 224, 3), seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2 * piece, 224, 224, 3)).astype(np.float32), np.arange(2 * piece) % 1000

    def score() -> None:
        grasp_tf.compute_scores(model, (x, y), "grasp", chunk_size=piece, seed=0)

    start = common.reset_peak_rss()
    first = common.timed(score)
    first_peak = common.peak_rss_since(start)
    load = os.getloadavg()[0]
    baseline = common.reset_peak_rss()
    warm = common.timed(score)
    return {"model": model_name, "piece": piece, "images": 2 * piece, "first_s": first, "warm_s": warm,
            "seconds_per_image": warm / (2 * piece), "peak_mib": common.peak_rss_since(baseline),
            "first_peak_mib": first_peak, "loadavg": load}


def tables(rows: list[dict], pieces: list[dict]) -> str:
    """Markdown: peak RSS and time against the number of draws; then the per-piece measurements."""
    base = next((r for r in rows if r["num_draws"] == 1), rows[0] if rows else None)
    out = "" if not rows else common.markdown_table(
        ["storage", "draws x 250 at 224 px", "sample (MiB)", "peak RSS growth (MiB)", "peak / peak at 1 draw",
         "measured call's own peak growth (MiB)", "time (s)", "s per draw", "load avg"],
        [[r["storage"], r["num_draws"], f"{r['sample_mib']:.0f}", f"{r['peak_mib']:.0f}",
          f"{r['peak_mib'] / base['peak_mib']:.2f}", f"{r['call_peak_mib']:.0f}", f"{r['seconds']:.1f}",
          f"{r['seconds_per_draw']:.2f}", f"{r['loadavg']:.1f}"] for r in rows])
    if pieces:
        out += ("\n" if out else "") + common.markdown_table(
            ["model", "piece", "images", "first call (s)", "warm (s)", "s per image",
             "first call's peak RSS growth (MiB)", "warm call's (MiB)", "load avg"],
            [[p["model"], p["piece"], p["images"], f"{p['first_s']:.1f}", f"{p['warm_s']:.1f}",
              f"{p['seconds_per_image']:.2f}", f"{p.get('first_peak_mib', float('nan')):.0f}",
              f"{p['peak_mib']:.0f}", f"{p['loadavg']:.1f}"] for p in pieces])
    return out

"""Shared helpers of the bench scripts: machine facts, peak-memory probes, timing, tables, output, the scoring batch and step."""
from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
MODELS = ("resnet32", "vgg19")  # the scoring tables' models (ResNet32x2, VGG19)


def machine() -> dict[str, Any]:
    """Date, host CPU model, core count and library versions, for the record (train.artifacts.machine + more)."""
    from train import artifacts

    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "nproc": os.cpu_count(), "python": platform.python_version(), **artifacts.machine(),
            "loadavg_at_start": os.getloadavg()[0]}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def reset_peak_rss() -> int:
    """Reset the process's peak resident set size (Linux ``clear_refs`` 5); returns the current RSS in KiB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kb("VmRSS")


def peak_rss_since(baseline_kb: int) -> float:
    """Peak RSS growth in MiB since :func:`reset_peak_rss` returned ``baseline_kb``."""
    return (_status_kb("VmHWM") - baseline_kb) / 1024


def timed(fn: Callable[[], Any]) -> float:
    """Wall seconds of one call of ``fn`` (which must block until its result is computed)."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median(values: Sequence[float]) -> float:
    """The median of ``values``."""
    return float(statistics.median(values))


def run_worker(script: str, args: Sequence[str]) -> dict[str, Any]:
    """Run ``script --worker ...`` in a fresh Python and return the JSON its last stdout line holds."""
    proc = subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if proc.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_outputs(stem: str, record: dict[str, Any], table: str, output_dir: str) -> None:
    """``<stem>.json`` (everything) and ``<stem>.md`` (command, machine, table) in ``output_dir``."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, stem + ".json"), "w") as f:
        json.dump(record, f, indent=1)
    m = record["machine"]
    with open(os.path.join(output_dir, stem + ".md"), "w") as f:
        f.write(f"Command: `{record['command']}`  \n{m['date']}; {m['cpu']}, nproc {m['nproc']}; "
                f"TensorFlow {m['tensorflow']}, Keras {m['keras']}; load average at start "
                f"{m['loadavg_at_start']:.1f}.\n\n{table}")


def batch(n: int, seed: int = 0) -> tuple:
    """``n`` random 32x32x3 images, ``n/10`` per class, stacked in class order (as the reference's sample)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 32, 32, 3)).astype(np.float32), np.repeat(np.arange(10), n // 10)


def gradient_step(model, x, y):
    """A warm-able ``tf.function``: the mean-loss gradient w.r.t. the prunable weights, training mode."""
    import tensorflow as tf

    from grasp_tf.prunable import prunable_weights

    kernels = [w.variable for w in prunable_weights(model)]
    x, y = tf.constant(x), tf.constant(y)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        return tape.gradient(loss, kernels)

    return lambda: [g.numpy() for g in step()]

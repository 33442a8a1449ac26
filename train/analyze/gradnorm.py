"""`train.analyze gradnorm` (Fig. 2): gradient norm at initialization of pruned nets relative to the dense net.

Methods x pruning ratios x trials (a new initialization per trial), mean and 95% CI. The
default run is a few minutes on two CPU cores; ``configs/analysis/gradnorm_paper.cfg`` holds
the paper's setting (10 trials over all training images: hours on a CPU).
"""
from __future__ import annotations

import os
import time
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np

from grasp_tf.progress import Progress, duration
from train import artifacts
from train.analyze.common import (
    Config,
    Log,
    build_model,
    check_methods,
    label_axes,
    load_data,
    model_name,
    percent,
    save_figure,
    scoring_options,
    scoring_sample,
    write_csv,
)
from train.colors import color
from train.errors import UsageError

PAPER_FLAGFILE = "configs/analysis/gradnorm_paper.cfg"


def sparsity_list(cfg: Config) -> list[float]:
    """--sparsities as floats in (0, 1)."""
    try:
        values = [float(s) for s in cfg.sparsities]
    except ValueError:
        raise UsageError(f"--sparsities must be fractions like 0.9,0.98, got {cfg.sparsities}") from None
    if not values or not all(0.0 < s < 1.0 for s in values):
        raise UsageError(f"--sparsities must be in (0, 1), got {values}")
    return values


def gradnorm_rows(cfg: Config, ds: Any, sparsities: Sequence[float], progress: Progress) -> list[dict[str, Any]]:
    """One row per trial x method x sparsity: the pruned and dense gradient norms and their ratio.

    ``progress`` advances once per method scored and once per gradient pass (``methods + 1`` per trial).
    """
    import keras

    from grasp_tf import analysis

    rows = []
    for trial in range(cfg.trials):
        seed = cfg.seed + trial
        keras.utils.set_random_seed(seed)
        model = build_model(cfg, ds, seed)
        mask_sets, keys = [], []
        for method in cfg.methods:
            mask_sets += analysis.masks_at_sparsities(model, scoring_sample(ds, seed), sparsities, method,
                                                      seed=seed, **scoring_options(cfg, method))
            keys += [(method, s) for s in sparsities]
            progress.step(what=f"trial {trial + 1}/{cfg.trials}: {method} scored")
        dense, *pruned = analysis.gradient_norms(model, ds.train, [None, *mask_sets], weights=cfg.weights,
                                                 batch_size=cfg.batch_size)
        for (method, s), norm in zip(keys, pruned):
            rows.append({"trial": trial, "seed": seed, "method": method, "sparsity": s, "grad_norm": norm,
                         "dense_grad_norm": dense, "relative": norm / dense})
        progress.step(what=f"trial {trial + 1}/{cfg.trials}: gradient norms of the dense and {len(mask_sets)} pruned "
                      f"nets, dense {dense:.4g}")
    return rows


def estimate_seconds(cfg: Config, ds: Any, sparsities: Sequence[float]) -> float:
    """Rough wall time of the command, from one timed gradient step (traced, then warm) of a throwaway model.

    Per trial: one pass over the data for the dense and every pruned net, one scoring per
    method (about two traced functions and a few passes over the sample) and one trace.
    """
    import keras
    import tensorflow as tf

    model = build_model(cfg, ds, cfg.seed)
    x = tf.zeros((cfg.batch_size, *ds.input_shape))
    y = tf.zeros((cfg.batch_size,), tf.int64)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def gradient_step() -> Any:
        with tf.GradientTape() as tape:
            value = loss(y, model(x, training=True))
        return tape.gradient(value, model.trainable_variables)

    t0 = time.perf_counter()
    gradient_step()
    t1 = time.perf_counter()
    gradient_step()
    first, warm = t1 - t0, time.perf_counter() - t1
    passes = (1 + len(cfg.methods) * len(sparsities)) * -(-ds.train_size // cfg.batch_size)
    return cfg.trials * (first + passes * warm + len(cfg.methods) * (2 * first + 4 * warm))


def summarize_gradnorm(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and 95% CI (t-distribution over trials) of the relative norm per method and sparsity."""
    from grasp_tf import analysis

    out = []
    for key in dict.fromkeys((r["method"], r["sparsity"]) for r in rows):
        values = [r["relative"] for r in rows if (r["method"], r["sparsity"]) == key]
        mean, half = analysis.mean_ci95(values)
        out.append({"method": key[0], "sparsity": key[1], "trials": len(values), "mean": mean,
                    "ci95_low": mean - half, "ci95_high": mean + half})
    return out


def plot_gradnorm(summary: Sequence[dict[str, Any]], title: str, path: str) -> None:
    """Relative gradient norm against pruning ratio: a line and shaded 95% CI per method (Fig. 2)."""
    sparsities = sorted({r["sparsity"] for r in summary})
    pos = {s: i for i, s in enumerate(sparsities)}
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    for method in dict.fromkeys(r["method"] for r in summary):
        rs = sorted((r for r in summary if r["method"] == method), key=lambda r: r["sparsity"])
        x = [pos[r["sparsity"]] for r in rs]
        line, = ax.plot(x, [r["mean"] for r in rs], marker="o", label=method, color=color(method))
        if all(np.isfinite(r["ci95_low"]) for r in rs):
            ax.fill_between(x, [r["ci95_low"] for r in rs], [r["ci95_high"] for r in rs],
                            color=line.get_color(), alpha=0.2, linewidth=0)
    ax.axhline(1.0, color=color("dense"), linestyle="--", linewidth=1, label="dense (= 1)")
    ax.set_xticks(range(len(sparsities)), [percent(s) for s in sparsities])
    ax.set_ylim(bottom=0)
    label_axes(ax, "pruning ratio", "gradient norm at init, pruned / dense", title, loc="center left",
               bbox_to_anchor=(1.01, 0.5))
    save_figure(fig, path)


def command(cfg: Config, out: str, log: Log) -> list[str]:
    """The gradnorm command; returns the files written."""
    check_methods(cfg)
    sparsities = sparsity_list(cfg)
    if cfg.trials < 1:
        raise UsageError(f"--trials must be positive, got {cfg.trials}")
    ds = load_data(cfg, augment=False, train_limit=cfg.limit or None)
    steps = cfg.trials * (len(cfg.methods) + 1)
    batches = -(-ds.train_size // cfg.batch_size)
    estimate = duration(estimate_seconds(cfg, ds, sparsities), digits=0)
    log(f"gradnorm: {cfg.trials} initializations x {len(cfg.methods)} methods ({', '.join(cfg.methods)}) x "
        f"{len(sparsities)} pruning ratios of {model_name(cfg)} on {ds.train_size} {cfg.dataset} examples "
        f"({batches} batches of {cfg.batch_size}): {steps} steps, about {estimate} "
        f"(the paper's setting: --flagfile={PAPER_FLAGFILE})")
    rows = gradnorm_rows(cfg, ds, sparsities, Progress("gradnorm", steps, "steps", verbose=True, interval=0))
    summary = summarize_gradnorm(rows)
    files = [os.path.join(out, n) for n in ("gradnorm.csv", "gradnorm_summary.csv", "gradnorm.json", "gradnorm.png")]
    write_csv(files[0], rows, list(rows[0]))
    write_csv(files[1], summary, list(summary[0]))
    settings = {k: cfg[k].value for k in ("dataset", "model", "width", "init", "methods", "trials", "seed",
                                          "samples_per_class", "num_draws", "batch_size", "weights")}
    artifacts.write_json(files[2], {"settings": {**settings, "sparsities": sparsities, "examples": ds.train_size},
                                    "summary": summary})
    title = (f"{model_name(cfg)} on {cfg.dataset}, gradient w.r.t. {cfg.weights} weights\n"
             f"mean and 95% CI over {cfg.trials} initializations, gradient over {ds.train_size} examples")
    plot_gradnorm(summary, title, files[3])
    return files

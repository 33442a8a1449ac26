"""`train.analyze layers` (Fig. 3): the fraction of weights each method keeps per layer, computed or from runs."""
from __future__ import annotations

import os
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

from grasp_tf.progress import Progress
from train import artifacts
from train.analyze.common import (
    Config,
    Log,
    build_model,
    check_methods,
    expand,
    label_axes,
    labels_for,
    line_styles,
    load_data,
    model_name,
    percent,
    run_config,
    save_figure,
    scoring_options,
    scoring_sample,
    write_csv,
)
from train.errors import UsageError


def masks_from_runs(cfg: Config, runs: Sequence[str]) -> tuple[list[str], list[dict[str, np.ndarray]], list[str]]:
    """Labels, masks and methods of run directories (their masks.npz) or .npz files."""
    paths = [r if r.endswith(".npz") else os.path.join(r, "masks.npz") for r in runs]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise UsageError(f"no masks at {', '.join(missing)} (a run of method none has none)")
    configs = [run_config(os.path.dirname(p)) for p in paths]
    labels = labels_for(cfg, runs, configs)
    methods = [str(c.get("method") or label) for c, label in zip(configs, labels)]
    return labels, [artifacts.load_masks(p) for p in paths], methods


def masks_computed(cfg: Config, log: Log) -> tuple[list[str], list[dict[str, np.ndarray]], list[str]]:
    """Labels and masks of every --methods at --sparsity on one initialization, and the layer order."""
    import grasp_tf
    from grasp_tf.prunable import prunable_weights

    check_methods(cfg)
    if not 0.0 < cfg.sparsity < 1.0:
        raise UsageError(f"--sparsity must be in (0, 1), got {cfg.sparsity}")
    labels = list(cfg.labels) or [f"{m} {percent(cfg.sparsity)}" for m in cfg.methods]
    if len(labels) != len(cfg.methods):
        raise UsageError(f"--labels has {len(labels)} entries for {len(cfg.methods)} methods")
    ds = load_data(cfg, augment=True, train_limit=None)
    model = build_model(cfg, ds, cfg.seed)
    log(f"layers: {len(cfg.methods)} methods ({', '.join(cfg.methods)}) prune one initialization of "
        f"{model_name(cfg)} to {percent(cfg.sparsity)}: {len(cfg.methods)} steps, a few seconds to a minute each "
        "on a CPU")
    progress, masks = Progress("layers", len(cfg.methods), "methods", verbose=True, interval=0), []
    for m in cfg.methods:
        masks.append(grasp_tf.compute_masks(model, scoring_sample(ds, cfg.seed), cfg.sparsity, m, seed=cfg.seed,
                                            **scoring_options(cfg, m)))
        progress.step(what=f"{m} scored")
    return labels, masks, [w.key for w in prunable_weights(model)]


def plot_layers(keys: Sequence[str], labels: Sequence[str], densities: Sequence[dict[str, float]],
                title: str, path: str, methods: Sequence[str]) -> None:
    """Percentage of weights kept against layer index, one line per mask set in its method's colour (Fig. 3)."""
    x = np.arange(1, len(keys) + 1)
    fig, ax = plt.subplots(figsize=(max(7.0, 0.25 * len(keys)), 4.5))
    for label, d, style in zip(labels, densities, line_styles(methods)):
        ax.plot(x, [100 * d[k] for k in keys], label=label, **style)
    names = [f"{i}: {k.rsplit('/', 1)[0]}" for i, k in zip(x, keys)]
    if len(keys) <= 12:
        ax.set_xticks(x, names, rotation=30, ha="right")
    else:  # many layers: upright names, smaller
        ax.set_xticks(x, names, rotation=90, fontsize="x-small")
    ax.set_ylim(bottom=0)
    label_axes(ax, "layer index (input to output)", "weights kept (%)", title)
    save_figure(fig, path)


def command(cfg: Config, out: str, log: Log) -> list[str]:
    """The layers command; returns the files written."""
    from grasp_tf import analysis, masking

    if cfg.runs:
        labels, masks, methods = masks_from_runs(cfg, expand(cfg.runs))
        keys = list(masks[0])
        if any(sorted(m) != sorted(keys) for m in masks):
            raise UsageError("--runs: the runs' masks name different weights (different models?)")
        title = f"weights kept per layer ({len(masks)} runs)"
    else:
        labels, masks, keys = masks_computed(cfg, log)
        methods = list(cfg.methods)
        title = f"{model_name(cfg)} on {cfg.dataset}: weights kept per layer at {percent(cfg.sparsity)} pruned"
    densities = [analysis.layer_densities(m, keys) for m in masks]
    rows = [{"index": i + 1, "weight": k, "size": int(np.size(masks[0][k])),
             **{label: d[k] for label, d in zip(labels, densities)}} for i, k in enumerate(keys)]
    files = [os.path.join(out, "layers.csv"), os.path.join(out, "layers.png")]
    write_csv(files[0], rows, ["index", "weight", "size", *labels])
    plot_layers(keys, labels, densities, title, files[1], methods)
    for label, m in zip(labels, masks):
        log(f"{label}: {1 - masking.sparsity_of(m):.4f} of the weights kept")
    return files

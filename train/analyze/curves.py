"""`train.analyze curves` (Fig. 1): train and test loss and accuracy per epoch of runs' metrics.csv."""
from __future__ import annotations

import os
from typing import Sequence

import matplotlib.pyplot as plt

from train import artifacts
from train.analyze.common import (
    Config,
    Log,
    expand,
    label_axes,
    labels_for,
    line_styles,
    run_config,
    save_figure,
    write_csv,
)
from train.errors import UsageError

METRIC_COLUMNS = ("loss", "test_loss", "accuracy", "test_accuracy")


def read_curves(cfg: Config, runs: Sequence[str]) -> tuple[list[str], list[list[dict[str, float]]], list[str]]:
    """Labels, per-epoch rows (epoch and METRIC_COLUMNS, as floats) and methods of runs' metrics.csv."""
    paths = [r if r.endswith(".csv") else os.path.join(r, "metrics.csv") for r in runs]
    data = []
    for path in paths:
        rows = artifacts.read_metrics(path)
        if not rows:
            raise UsageError(f"no epochs in {path} (missing or empty metrics.csv)")
        absent = [c for c in ("epoch", *METRIC_COLUMNS) if c not in rows[0]]
        if absent:
            raise UsageError(f"{path} lacks the columns {absent}")
        data.append([{c: float(r[c]) for c in ("epoch", *METRIC_COLUMNS)} for r in rows])
    configs = [run_config(os.path.dirname(p)) for p in paths]
    labels = labels_for(cfg, runs, configs)
    return labels, data, [str(c.get("method") or label) for c, label in zip(configs, labels)]


def plot_curves(labels: Sequence[str], data: Sequence[Sequence[dict[str, float]]], path: str,
                methods: Sequence[str]) -> None:
    """Loss and accuracy per epoch, train solid and test dashed, each run in its method's colour (Fig. 1)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for label, rows, style in zip(labels, data, line_styles(methods)):
        epochs = [r["epoch"] for r in rows]
        for ax, metric in zip(axes, ("loss", "accuracy")):
            ax.plot(epochs, [r[metric] for r in rows], label=f"{label}, train", **style)
            ax.plot(epochs, [r[f"test_{metric}"] for r in rows], linestyle="--", label=f"{label}, test", **style)
    for ax, name in zip(axes, ("cross-entropy loss", "accuracy")):
        label_axes(ax, "epoch", name, f"{name} (train solid, test dashed)", fontsize="small")
    save_figure(fig, path)


def command(cfg: Config, out: str, log: Log) -> list[str]:
    """The curves command; returns the files written."""
    if not cfg.runs:
        raise UsageError("curves needs --runs (run directories or metrics.csv files)")
    labels, data, methods = read_curves(cfg, expand(cfg.runs))
    files = [os.path.join(out, "curves.csv"), os.path.join(out, "curves.png")]
    write_csv(files[0], [{"run": label, **r} for label, rows in zip(labels, data) for r in rows],
              ["run", "epoch", *METRIC_COLUMNS])
    plot_curves(labels, data, files[1], methods)
    for label, rows in zip(labels, data):
        log(f"{label}: {len(rows)} epochs, final test loss {rows[-1]['test_loss']:.4f}")
    return files

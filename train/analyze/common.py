"""What the analyze commands share: CSV and figure files, run discovery and labels, fresh data and models."""
from __future__ import annotations

import csv
import glob
import os
from typing import Any, Callable, Iterable, Sequence

import matplotlib.pyplot as plt
from absl import flags

from train import artifacts
from train.colors import color
from train.errors import UsageError

Config = flags.FlagValues
Log = Callable[[str], None]


# ----------------------------------------------------------------------------- files, runs and labels


def write_csv(path: str, rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> None:
    """``rows`` as a CSV with columns ``fields``."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: str) -> list[dict[str, str]]:
    """A CSV's rows as dicts; lines starting with ``#`` are comments."""
    with open(path, newline="") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def expand(patterns: Iterable[str]) -> list[str]:
    """Paths named by ``patterns``, globs expanded, in order; a pattern matching nothing is an error."""
    out: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches or not all(os.path.exists(m) for m in matches):
            raise UsageError(f"--runs: nothing found at {pattern!r}")
        out.extend(matches)
    return out


def run_config(run_dir: str) -> dict[str, Any]:
    """A run's flags: results.json's ``config``, else config.json, else {}."""
    results = artifacts.read_json(os.path.join(run_dir, "results.json"))  # CorruptFile names a damaged file
    config = results.get("config") if isinstance(results, dict) else artifacts.read_json(
        os.path.join(run_dir, "config.json"))
    return config if isinstance(config, dict) else {}


def percent(sparsity: float) -> str:
    """``0.995`` -> ``"99.5%"``."""
    return f"{100 * sparsity:.4g}%"


def run_label(config: dict[str, Any], fallback: str) -> str:
    """A legend label from a run's config: ``"grasp 98%"`` (``"dense"`` for method none)."""
    if "method" not in config:
        return fallback
    if config["method"] == "none":
        return "dense"
    return f"{config['method']} {percent(float(config.get('sparsity', 0.0)))}"


def labels_for(cfg: Config, runs: Sequence[str], configs: Sequence[dict[str, Any]]) -> list[str]:
    """--labels if given (one per run), else labels from the configs, made unique by seed or path."""
    if cfg.labels:
        if len(cfg.labels) != len(runs):
            raise UsageError(f"--labels has {len(cfg.labels)} entries for {len(runs)} runs")
        return list(cfg.labels)
    labels = [run_label(c, os.path.basename(os.path.normpath(r))) for r, c in zip(runs, configs)]
    if len(set(labels)) < len(labels):
        labels = [f"{l} (seed {c['seed']})" if "seed" in c else f"{l} ({r})"
                  for l, r, c in zip(labels, runs, configs)]
    return labels


def model_name(cfg: Config) -> str:
    """``"resnet20 (width 1)"``, or the bare model name when --width is the default."""
    return f"{cfg.model} (width {cfg.width})" if cfg.width else cfg.model


# ----------------------------------------------------------------------------- pruning on the fly


def load_data(cfg: Config, augment: bool, train_limit: int | None) -> Any:
    """--dataset batched by --batch_size, its order fixed by --seed."""
    import keras

    from train import data

    if cfg.dataset not in data.names():
        raise UsageError(f"unknown --dataset={cfg.dataset!r}; choose one of {', '.join(data.names())}")
    keras.utils.set_random_seed(cfg.seed)  # tf.data mixes the global seed into its order (train.data.load)
    return data.load(cfg.dataset, data_dir=cfg.data_dir, batch_size=cfg.batch_size, seed=cfg.seed,
                     augment=augment, train_limit=train_limit)


def build_model(cfg: Config, ds: Any, seed: int) -> Any:
    """A fresh --model for ``ds``, initialised with ``seed``."""
    import models

    if cfg.model not in models.names():
        raise UsageError(f"unknown --model={cfg.model!r}; choose one of {', '.join(models.names())}")
    return models.build(cfg.model, ds.num_classes, ds.input_shape, init=cfg.init, width=cfg.width or None,
                        seed=seed)


def check_methods(cfg: Config) -> None:
    """Every --methods entry is a registered pruning method."""
    from grasp_tf import criteria

    bad = [m for m in cfg.methods if m not in criteria.names()]
    if bad or not cfg.methods:
        raise UsageError(f"--methods: unknown {bad or '(none given)'}; choose from {', '.join(criteria.names())}")


def scoring_options(cfg: Config, method: str) -> dict[str, Any]:
    """How the scoring sample is drawn, as train.run draws it (nothing for a method that takes no sample)."""
    from grasp_tf import criteria

    if not criteria.get(method).takes_sampling_options:
        return {}
    return {"samples_per_class": cfg.samples_per_class or None, "num_draws": cfg.num_draws}


def scoring_sample(ds: Any, seed: int) -> Any:
    """The shuffled training stream the sample is drawn from; a fresh pipeline, so every method sees one sample."""
    return ds.train_stream(seed=seed).batch(256)


# ----------------------------------------------------------------------------- figures

MARKERS = ("o", "s", "^", "D", "v", "P")


def line_styles(methods: Sequence[str]) -> list[dict[str, str]]:
    """Plot style of each line: its method's colour (``train.colors``); a method's repeats get other markers."""
    seen: dict[str, int] = {}
    styles = []
    for method in methods:
        repeat = seen[method] = seen.get(method, -1) + 1
        styles.append({"color": color(method), "marker": MARKERS[repeat % len(MARKERS)]})
    return styles


def label_axes(ax: Any, xlabel: str, ylabel: str, title: str, **legend: Any) -> None:
    """Axis labels, title, a light grid and the legend (``legend``: its keyword arguments)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(**legend)


def save_figure(fig: Any, path: str) -> None:
    """Write ``fig`` as a PNG and close it."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

"""`python -m train.analyze <gradnorm|layers|curves|compare> --flags`: the paper's figures as commands.

* ``gradnorm`` (Fig. 2): gradient norm at initialization of the pruned net relative to the
  dense net, methods x sparsities x trials (a new initialization per trial), mean and 95% CI.
* ``layers`` (Fig. 3): fraction of weights kept per layer, several methods on one
  initialization; masks computed here or read from runs' ``masks.npz`` (``--runs``).
* ``curves`` (Fig. 1): train and test loss and accuracy per epoch of runs' ``metrics.csv``.
* ``compare``: a Markdown + CSV table of runs' ``results.json``, mean ± std over seeds, beside
  the paper's published numbers (``train/paper_results.csv``).

Each writes ``<command>.png`` and ``<command>.csv`` (plus JSON or Markdown) into
``--output_dir`` (default ``analysis/<command>``). See docs/analysis.md.
"""
from __future__ import annotations

import csv
import glob
import json
import os
import sys
from typing import Any, Callable, Iterable, Sequence

import train.quiet  # noqa: E402,F401  (first: notes whether the user set TF's log level)

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from train import artifacts  # noqa: E402
from train.errors import UsageError, run_app  # noqa: E402

COMMANDS = ("gradnorm", "layers", "curves", "compare")
PAPER_RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "paper_results.csv")
# results.json config keys that say where/how a run ran, not what it computed (never split groups).
EXECUTION_KEYS = {"seed", "output_dir", "overwrite", "export", "strategy", "jit_compile", "data_dir",
                  "cpu_devices"}
GROUP_KEYS = ("dataset", "model", "method", "sparsity", "init")
METRIC_COLUMNS = ("loss", "test_loss", "accuracy", "test_accuracy")

Config = flags.FlagValues
Log = Callable[[str], None]


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
    """Define the analyze flags on ``fv`` (tests use a private FlagValues: train.run's flags share names)."""
    d = dict(flag_values=fv)
    flags.DEFINE_string("output_dir", None, "Where the PNG/CSV/JSON go (default analysis/<command>).", **d)
    # gradnorm / layers: what is pruned
    flags.DEFINE_string("dataset", "fashion_mnist", "Dataset name (train/data.py).", **d)
    flags.DEFINE_string("data_dir", None, "Where the dataset lives (default: its usual place).", **d)
    flags.DEFINE_string("model", "conv4", "Model name (models/).", **d)
    flags.DEFINE_integer("width", 0, "ResNet width multiplier (0 = the model's default).", lower_bound=0, **d)
    flags.DEFINE_enum("init", "kaiming", ["kaiming", "normal", "xavier"], "Weight initialisation.", **d)
    flags.DEFINE_list("methods", ["grasp", "snip", "random"], "Pruning methods to compare.", **d)
    flags.DEFINE_list("sparsities", ["0.8", "0.9", "0.95", "0.98", "0.99", "0.995"],
                      "gradnorm: pruning ratios (the paper's Fig. 2 range).", **d)
    flags.DEFINE_float("sparsity", 0.95, "layers: the pruning ratio in [0, 1) (the paper's Fig. 3 uses 95%).",
                       lower_bound=0.0, **d)
    flags.register_validator("sparsity", lambda v: v < 1.0, message="must be in [0, 1)", flag_values=fv)
    flags.DEFINE_integer("trials", 10, "gradnorm: initializations (seeds seed, seed+1, ...); the paper uses 10.",
                         lower_bound=1, **d)
    flags.DEFINE_integer("seed", 0, "Seed of the (first) initialization, scoring sample and data order.",
                         lower_bound=0, upper_bound=2**31 - 2, **d)
    flags.DEFINE_integer("samples_per_class", 10, "Class-balanced scoring sample per draw (as train.run).",
                         lower_bound=0, **d)
    flags.DEFINE_integer("num_draws", 1, "Class-balanced draws pooled for scoring (as train.run).", lower_bound=1,
                         **d)
    flags.DEFINE_integer("limit", 0, "gradnorm: training examples the gradient is averaged over (0 = all).",
                         lower_bound=0, **d)
    flags.DEFINE_integer("batch_size", 128, "gradnorm: batch size of the gradient pass (batch-norm statistics).",
                         lower_bound=1, **d)
    flags.DEFINE_enum("weights", "trainable", ["trainable", "prunable"],
                      "gradnorm: the gradient w.r.t. all trainable weights or only the prunable kernels.", **d)
    # layers / curves / compare: existing runs
    flags.DEFINE_list("runs", [], "Run directories of train.run or their files (globs allowed); compare "
                                  "searches directories recursively for results.json.", **d)
    flags.DEFINE_list("labels", [], "layers/curves: legend labels, one per run or method "
                                    "(default: method and sparsity).", **d)
    flags.DEFINE_enum("metric", "best_test_accuracy", ["best_test_accuracy", "final_test_accuracy"],
                      "compare: the accuracy plotted (the paper reports the best over epochs).", **d)
    flags.DEFINE_string("paper", PAPER_RESULTS, "compare: CSV of published numbers ('' = none).", **d)


# ----------------------------------------------------------------------------- files and labels


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
    results = artifacts.read_json(os.path.join(run_dir, "results.json"))
    if results is not None:
        return results.get("config", {})
    return artifacts.read_json(os.path.join(run_dir, "config.json")) or {}


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


def save_figure(fig: Any, path: str) -> None:
    """Write ``fig`` as a PNG and close it."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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


# ----------------------------------------------------------------------------- gradnorm (Fig. 2)


def sparsity_list(cfg: Config) -> list[float]:
    """--sparsities as floats in (0, 1)."""
    try:
        values = [float(s) for s in cfg.sparsities]
    except ValueError:
        raise UsageError(f"--sparsities must be fractions like 0.9,0.98, got {cfg.sparsities}") from None
    if not values or not all(0.0 < s < 1.0 for s in values):
        raise UsageError(f"--sparsities must be in (0, 1), got {values}")
    return values


def gradnorm_rows(cfg: Config, ds: Any, sparsities: Sequence[float], log: Log) -> list[dict[str, Any]]:
    """One row per trial x method x sparsity: the pruned and dense gradient norms and their ratio."""
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
        dense, *pruned = analysis.gradient_norms(model, ds.train, [None, *mask_sets], weights=cfg.weights,
                                                 batch_size=cfg.batch_size)
        for (method, s), norm in zip(keys, pruned):
            rows.append({"trial": trial, "seed": seed, "method": method, "sparsity": s, "grad_norm": norm,
                         "dense_grad_norm": dense, "relative": norm / dense})
        log(f"trial {trial + 1}/{cfg.trials}: dense gradient norm {dense:.4g}")
    return rows


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
        line, = ax.plot(x, [r["mean"] for r in rs], marker="o", label=method)
        if all(np.isfinite(r["ci95_low"]) for r in rs):
            ax.fill_between(x, [r["ci95_low"] for r in rs], [r["ci95_high"] for r in rs],
                            color=line.get_color(), alpha=0.2, linewidth=0)
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="dense (= 1)")
    ax.set_xticks(range(len(sparsities)), [percent(s) for s in sparsities])
    ax.set_xlabel("pruning ratio")
    ax.set_ylabel("gradient norm at init, pruned / dense")
    ax.set_title(title)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    save_figure(fig, path)


def gradnorm(cfg: Config, out: str, log: Log) -> list[str]:
    """The gradnorm command; returns the files written."""
    check_methods(cfg)
    sparsities = sparsity_list(cfg)
    if cfg.trials < 1:
        raise UsageError(f"--trials must be positive, got {cfg.trials}")
    ds = load_data(cfg, augment=False, train_limit=cfg.limit or None)
    rows = gradnorm_rows(cfg, ds, sparsities, log)
    summary = summarize_gradnorm(rows)
    files = [os.path.join(out, n) for n in ("gradnorm.csv", "gradnorm_summary.csv", "gradnorm.json", "gradnorm.png")]
    write_csv(files[0], rows, list(rows[0]))
    write_csv(files[1], summary, list(summary[0]))
    settings = {k: cfg[k].value for k in ("dataset", "model", "width", "init", "methods", "trials", "seed",
                                          "samples_per_class", "num_draws", "batch_size", "weights")}
    artifacts.write_json(files[2], {"settings": {**settings, "sparsities": sparsities, "examples": ds.train_size},
                                    "summary": summary})
    model = f"{cfg.model} (width {cfg.width})" if cfg.width else cfg.model
    title = (f"{model} on {cfg.dataset}, gradient w.r.t. {cfg.weights} weights\n"
             f"mean and 95% CI over {cfg.trials} initializations, gradient over {ds.train_size} examples")
    plot_gradnorm(summary, title, files[3])
    return files


# ----------------------------------------------------------------------------- layers (Fig. 3)


def masks_from_runs(cfg: Config, runs: Sequence[str]) -> tuple[list[str], list[dict[str, np.ndarray]]]:
    """Labels and masks of run directories (their masks.npz) or .npz files."""
    paths = [r if r.endswith(".npz") else os.path.join(r, "masks.npz") for r in runs]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise UsageError(f"no masks at {', '.join(missing)} (a run of method none has none)")
    configs = [run_config(os.path.dirname(p)) for p in paths]
    return labels_for(cfg, runs, configs), [artifacts.load_masks(p) for p in paths]


def masks_computed(cfg: Config) -> tuple[list[str], list[dict[str, np.ndarray]], list[str]]:
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
    masks = [grasp_tf.compute_masks(model, scoring_sample(ds, cfg.seed), cfg.sparsity, m, seed=cfg.seed,
                                    **scoring_options(cfg, m)) for m in cfg.methods]
    return labels, masks, [w.key for w in prunable_weights(model)]


def plot_layers(keys: Sequence[str], labels: Sequence[str], densities: Sequence[dict[str, float]],
                title: str, path: str) -> None:
    """Percentage of weights kept against layer index, one line per mask set (Fig. 3)."""
    x = np.arange(1, len(keys) + 1)
    fig, ax = plt.subplots(figsize=(max(7.0, 0.25 * len(keys)), 4.5))
    for label, d in zip(labels, densities):
        ax.plot(x, [100 * d[k] for k in keys], marker="o", label=label)
    if len(keys) <= 12:  # few layers: name them
        ax.set_xticks(x, [f"{i}: {k.rsplit('/', 1)[0]}" for i, k in zip(x, keys)], rotation=30, ha="right")
    else:
        ax.set_xticks(x)
    ax.set_xlabel("layer index (input to output)")
    ax.set_ylabel("weights kept (%)")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def layers(cfg: Config, out: str, log: Log) -> list[str]:
    """The layers command; returns the files written."""
    from grasp_tf import analysis, masking

    if cfg.runs:
        labels, masks = masks_from_runs(cfg, expand(cfg.runs))
        keys = list(masks[0])
        if any(sorted(m) != sorted(keys) for m in masks):
            raise UsageError("--runs: the runs' masks name different weights (different models?)")
        title = f"weights kept per layer ({len(masks)} runs)"
    else:
        labels, masks, keys = masks_computed(cfg)
        model = f"{cfg.model} (width {cfg.width})" if cfg.width else cfg.model
        title = f"{model} on {cfg.dataset}: weights kept per layer at {percent(cfg.sparsity)} pruned"
    densities = [analysis.layer_densities(m, keys) for m in masks]
    rows = [{"index": i + 1, "weight": k, "size": int(np.size(masks[0][k])),
             **{label: d[k] for label, d in zip(labels, densities)}} for i, k in enumerate(keys)]
    files = [os.path.join(out, "layers.csv"), os.path.join(out, "layers.png")]
    write_csv(files[0], rows, ["index", "weight", "size", *labels])
    plot_layers(keys, labels, densities, title, files[1])
    for label, m in zip(labels, masks):
        log(f"{label}: {1 - masking.sparsity_of(m):.4f} of the weights kept")
    return files


# ----------------------------------------------------------------------------- curves (Fig. 1)


def read_curves(cfg: Config, runs: Sequence[str]) -> tuple[list[str], list[list[dict[str, float]]]]:
    """Labels and per-epoch rows (epoch and METRIC_COLUMNS, as floats) of runs' metrics.csv."""
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
    return labels_for(cfg, runs, [run_config(os.path.dirname(p)) for p in paths]), data


def plot_curves(labels: Sequence[str], data: Sequence[Sequence[dict[str, float]]], path: str) -> None:
    """Loss and accuracy per epoch, train solid and test dashed, one colour per run (Fig. 1)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, rows) in enumerate(zip(labels, data)):
        epochs = [r["epoch"] for r in rows]
        for ax, metric in zip(axes, ("loss", "accuracy")):
            ax.plot(epochs, [r[metric] for r in rows], color=colors[i % len(colors)], marker=".",
                    label=f"{label}, train")
            ax.plot(epochs, [r[f"test_{metric}"] for r in rows], color=colors[i % len(colors)], marker=".",
                    linestyle="--", label=f"{label}, test")
    for ax, name in zip(axes, ("cross-entropy loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(f"{name} (train solid, test dashed)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    save_figure(fig, path)


def curves(cfg: Config, out: str, log: Log) -> list[str]:
    """The curves command; returns the files written."""
    if not cfg.runs:
        raise UsageError("curves needs --runs (run directories or metrics.csv files)")
    labels, data = read_curves(cfg, expand(cfg.runs))
    files = [os.path.join(out, "curves.csv"), os.path.join(out, "curves.png")]
    write_csv(files[0], [{"run": label, **r} for label, rows in zip(labels, data) for r in rows],
              ["run", "epoch", *METRIC_COLUMNS])
    plot_curves(labels, data, files[1])
    for label, rows in zip(labels, data):
        log(f"{label}: {len(rows)} epochs, final test loss {rows[-1]['test_loss']:.4f}")
    return files


# ----------------------------------------------------------------------------- compare


def find_results(paths: Sequence[str]) -> list[str]:
    """results.json files: given directly, or anywhere below a directory; each once."""
    found: list[str] = []
    for p in paths:
        if os.path.isfile(p):
            found.append(p)
        else:
            found.extend(sorted(glob.glob(os.path.join(p, "**", "results.json"), recursive=True)))
    if not found:
        raise UsageError(f"no results.json under {', '.join(paths)}")
    return list(dict.fromkeys(os.path.abspath(f) for f in found))


def group_key(config: dict[str, Any]) -> tuple[Any, ...]:
    """(dataset, model, method, sparsity, init) of a run; a dense run (method none) has sparsity 0."""
    sparsity = 0.0 if config["method"] == "none" else round(float(config["sparsity"]), 6)
    return config["dataset"], config["model"], config["method"], sparsity, config.get("init", "kaiming")


def aggregate(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs grouped by GROUP_KEYS and every other non-execution flag; accuracies (%) as mean ± std over seeds.

    Flags besides GROUP_KEYS whose values differ between the runs given are listed per group
    in ``settings``: runs of different recipes are never averaged together. std is the sample
    standard deviation (ddof=1; NaN for one run).
    """
    from grasp_tf import analysis

    configs = [r["config"] for r in results]
    varying = sorted(k for k in set().union(*configs)
                     if k not in EXECUTION_KEYS and k not in GROUP_KEYS
                     and len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1)
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in results:
        key = group_key(r["config"]) + tuple(json.dumps(r["config"].get(k), sort_keys=True) for k in varying)
        groups.setdefault(key, []).append(r)
    rows = []
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2] != "none", k[2], k[3], *map(str, k[4:]))):
        members = groups[key]
        seeds = [r["config"].get("seed") for r in members]
        if len(set(seeds)) < len(seeds):
            print(f"warning: runs of {key[:5]} repeat seeds {seeds}", file=sys.stderr)
        row: dict[str, Any] = dict(zip(GROUP_KEYS, key[:5]))
        row["settings"] = " ".join(f"{k}={members[0]['config'].get(k)}" for k in varying)
        row["runs"] = len(members)
        row["seeds"] = " ".join(str(s) for s in seeds)
        for metric in ("best_test_accuracy", "final_test_accuracy"):
            row[f"{metric}_mean"], row[f"{metric}_std"] = analysis.mean_std(
                [100 * float(r[metric]) for r in members])
        row["measured_sparsity"] = float(np.mean([r["sparsity"]["global"]["sparsity"] for r in members]))
        rows.append(row)
    return rows


def paper_cells(path: str) -> dict[tuple[Any, ...], list[dict[str, str]]]:
    """Published top-1 cells by (dataset, model, method, sparsity, init)."""
    cells: dict[tuple[Any, ...], list[dict[str, str]]] = {}
    for r in read_csv(path):
        if r["metric"] == "top1":
            key = (r["dataset"], r["model"], r["method"], round(float(r["sparsity"]), 6), r["init"])
            cells.setdefault(key, []).append(r)
    return cells


def mean_pm(mean: float, std: float) -> str:
    """``"91.39 ± 0.25"`` (no ± for a single run)."""
    return f"{mean:.2f}" if not np.isfinite(std) else f"{mean:.2f} ± {std:.2f}"


def paper_text(cells: Sequence[dict[str, str]]) -> str:
    """Published cells as ``"91.39 ± 0.25 (T2)"``, several joined by ``"; "``."""
    return "; ".join(f"{c['mean']}{' ± ' + c['std'] if c['std'] else ''} (T{c['table']})" for c in cells)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The compare table in Markdown, accuracies in %."""
    settings = any(r["settings"] for r in rows)
    head = ["dataset", "model", "method", "sparsity", "init", *(["settings"] if settings else []), "runs",
            "best test acc. (%)", "final test acc. (%)", "paper (%)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [r["dataset"], r["model"], r["method"], percent(r["sparsity"]), r["init"],
                 *([r["settings"]] if settings else []), str(r["runs"]),
                 mean_pm(r["best_test_accuracy_mean"], r["best_test_accuracy_std"]),
                 mean_pm(r["final_test_accuracy_mean"], r["final_test_accuracy_std"]), r["paper"] or "–"]
        lines.append("| " + " | ".join(cells) + " |")
    note = ("Mean ± sample std (ddof=1) over the runs (seeds). Paper: Wang, Zhang & Grosse, ICLR 2020, "
            "top-1 test accuracy from Table n (Tn), best over epochs.")
    return "\n".join(lines) + "\n\n" + note + "\n"


def plot_compare(rows: Sequence[dict[str, Any]], paper: dict[tuple[Any, ...], list[dict[str, str]]], metric: str,
                 path: str) -> None:
    """Test accuracy against pruning ratio, a line (± std) per method and recipe, dense runs as horizontal lines.

    Published cells are hollow markers of the same colour. Fields shared by every line go to the title.
    """
    fields = ("method", "model", "dataset", "init", "settings")
    lines: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        lines.setdefault(tuple(r[f] for f in fields), []).append(r)
    shared = [i for i in range(1, len(fields)) if len({k[i] for k in lines}) == 1]
    sparsities = sorted({r["sparsity"] for r in rows if r["method"] != "none"}) or [0.0]
    pos = {s: i for i, s in enumerate(sparsities)}
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for key, rs in lines.items():
        rs = sorted(rs, key=lambda r: r["sparsity"])
        label = " ".join(str(key[i]) for i in range(len(fields)) if i not in shared and key[i])
        if key[0] == "none":
            label = label.replace("none", "dense", 1)
            ax.axhline(rs[0][f"{metric}_mean"], color="black", linestyle="--", linewidth=1, label=label)
            for c in paper.get(tuple(rs[0][k] for k in GROUP_KEYS), [])[:1]:
                ax.axhline(float(c["mean"]), color="grey", linestyle=":", linewidth=1.5, label=f"{label} (paper)")
            continue
        std = [r[f"{metric}_std"] if np.isfinite(r[f"{metric}_std"]) else 0.0 for r in rs]
        bars = ax.errorbar([pos[r["sparsity"]] for r in rs], [r[f"{metric}_mean"] for r in rs], yerr=std,
                           marker="o", capsize=3, label=label)
        published = [(pos[r["sparsity"]], float(c["mean"])) for r in rs
                     for c in paper.get(tuple(r[k] for k in GROUP_KEYS), [])]
        if published:
            ax.scatter(*zip(*published), facecolors="none", edgecolors=bars.lines[0].get_color(), s=70,
                       label=f"{label} (paper)")
    ax.set_xticks(range(len(sparsities)), [percent(s) for s in sparsities])
    ax.set_xlabel("pruning ratio")
    ax.set_ylabel(f"{metric.split('_')[0]} test accuracy (%)")
    context = ", ".join(str(rows[0][fields[i]]) for i in shared if rows[0][fields[i]] not in ("", "kaiming"))
    ax.set_title(f"{context}: test accuracy (mean ± std over seeds)" if context else
                 "test accuracy (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    save_figure(fig, path)


def compare(cfg: Config, out: str, log: Log) -> list[str]:
    """The compare command; returns the files written."""
    if not cfg.runs:
        raise UsageError("compare needs --runs (directories searched for results.json)")
    results = []
    for path in find_results(expand(cfg.runs)):
        r = artifacts.read_json(path)
        if not isinstance(r, dict) or "config" not in r or cfg.metric not in r:
            raise UsageError(f"{path} is not a results.json of train.run")
        results.append(r)
    rows = aggregate(results)
    paper = paper_cells(cfg.paper) if cfg.paper else {}
    for r in rows:
        r["paper"] = paper_text(paper.get(tuple(r[k] for k in GROUP_KEYS), []))
    files = [os.path.join(out, n) for n in ("compare.md", "compare.csv", "compare.png")]
    with open(files[0], "w") as f:
        f.write(markdown_table(rows))
    write_csv(files[1], rows, list(rows[0]))
    plot_compare(rows, paper, cfg.metric, files[2])
    log(f"{len(results)} runs in {len(rows)} groups")
    return files


# ----------------------------------------------------------------------------- entry point


def main(argv: Sequence[str], cfg: Config = flags.FLAGS) -> list[str]:
    """Run the command named in ``argv`` (flags already parsed into ``cfg``); returns the files written."""
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise UsageError(f"usage: python -m train.analyze <{'|'.join(COMMANDS)}> --flags "
                         f"(got {list(argv[1:]) or 'no command'})")
    command = argv[1]
    out = cfg.output_dir or os.path.join("analysis", command)
    created = not os.path.exists(out)
    os.makedirs(out, exist_ok=True)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    commands = {"gradnorm": gradnorm, "layers": layers, "curves": curves, "compare": compare}
    try:
        files = commands[command](cfg, out, log)
    except (UsageError, ValueError):
        if created and not os.listdir(out):  # a usage error leaves nothing behind
            os.rmdir(out)
        raise
    print("wrote " + ", ".join(files))
    return files


if __name__ == "__main__":
    define_flags()
    run_app(main, (ValueError,))

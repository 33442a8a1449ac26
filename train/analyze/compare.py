"""`train.analyze compare`: runs' results.json as a table, mean ± std over seeds, vs the paper."""
from __future__ import annotations

import glob
import json
import os
import sys
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np

from train import artifacts, colors
from train.analyze.common import Config, Log, expand, label_axes, line_styles, percent, read_csv, save_figure, write_csv
from train.artifacts import EXECUTION_FLAGS
from train.errors import UsageError

PAPER_RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "paper_results.csv")
# results.json config keys that never split groups: where/how a run ran, and the seed (averaged over).
EXECUTION_KEYS = EXECUTION_FLAGS | {"seed"}
GROUP_KEYS = ("dataset", "model", "method", "sparsity", "init")


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
    in ``settings``: runs of different recipes are never averaged together. A method's own
    option (``--temperature``, ``--rounds``, ...; null for methods without it) counts only when
    it differs between runs of the same method. std is the sample standard deviation (ddof=1;
    NaN for one run).
    """
    from grasp_tf import analysis, criteria

    configs = [r["config"] for r in results]
    options = {o.name for name in criteria.names() for o in criteria.get(name).option_specs}
    by_method: dict[Any, list[dict[str, Any]]] = {}
    for c in configs:
        by_method.setdefault(c.get("method"), []).append(c)

    def differs(among: Sequence[dict[str, Any]], k: str) -> bool:
        return len({json.dumps(c.get(k), sort_keys=True) for c in among}) > 1

    varying = sorted(k for k in set().union(*configs) if k not in EXECUTION_KEYS and k not in GROUP_KEYS
                     and (any(differs(cs, k) for cs in by_method.values()) if k in options else differs(configs, k)))
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
        row["settings"] = " ".join(f"{k}={members[0]['config'].get(k)}" for k in varying
                                   if k not in options or members[0]["config"].get(k) is not None)
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
    lines = dict(sorted(lines.items(), key=lambda kv: colors.rank(kv[0][0])))  # legend in the figures' method order
    for (key, rs), style in zip(lines.items(), line_styles([k[0] for k in lines])):
        rs = sorted(rs, key=lambda r: r["sparsity"])
        label = " ".join(str(key[i]) for i in range(len(fields)) if i not in shared and key[i])
        if key[0] == "none":
            label = label.replace("none", "dense", 1)
            ax.axhline(rs[0][f"{metric}_mean"], color=style["color"], linestyle="--", linewidth=1, label=label)
            for c in paper.get(tuple(rs[0][k] for k in GROUP_KEYS), [])[:1]:
                ax.axhline(float(c["mean"]), color="grey", linestyle=":", linewidth=1.5, label=f"{label} (paper)")
            continue
        std = [r[f"{metric}_std"] if np.isfinite(r[f"{metric}_std"]) else 0.0 for r in rs]
        ax.errorbar([pos[r["sparsity"]] for r in rs], [r[f"{metric}_mean"] for r in rs], yerr=std,
                    capsize=3, label=label, **style)
        published = [(pos[r["sparsity"]], float(c["mean"])) for r in rs
                     for c in paper.get(tuple(r[k] for k in GROUP_KEYS), [])]
        if published:
            ax.scatter(*zip(*published), facecolors="none", edgecolors=style["color"], s=70,
                       label=f"{label} (paper)")
    ax.set_xticks(range(len(sparsities)), [percent(s) for s in sparsities])
    context = ", ".join(str(rows[0][fields[i]]) for i in shared if rows[0][fields[i]] not in ("", "kaiming"))
    label_axes(ax, "pruning ratio", f"{metric.split('_')[0]} test accuracy (%)",
               f"{context}: test accuracy (mean ± std over seeds)" if context else
               "test accuracy (mean ± std over seeds)", fontsize="small")
    save_figure(fig, path)


def command(cfg: Config, out: str, log: Log) -> list[str]:
    """The compare command; returns the files written."""
    if not cfg.runs:
        raise UsageError("compare needs --runs (directories searched for results.json)")
    results = []
    for path in find_results(expand(cfg.runs)):
        r = artifacts.read_json(path)  # CorruptFile (a ValueError naming the file) if truncated or edited
        if not isinstance(r, dict):
            raise UsageError(f"{path} is not a results.json of train.run (not a JSON object)")
        missing = sorted({"best_test_accuracy", "final_test_accuracy", "sparsity"} - set(r))
        if missing:
            raise UsageError(f"{path} is not a results.json of train.run (no {', '.join(missing)})")
        if not isinstance(r.get("config"), dict) or not {"dataset", "model", "method"} <= set(r["config"]):
            raise UsageError(f"{path}: its config is not an object naming dataset, model and method "
                             f"(got {type(r.get('config')).__name__}); not a results.json of train.run")
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

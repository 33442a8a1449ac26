"""The converged study's tables: mean ± std over seeds (per seed where they disagree), paired t-tests, plot.

Pure functions of the finished cells' rows (``bench/study_fashion_mnist.py`` collects them
from disk and writes what these return), so every number in ``study.md``, the README and
``docs/benchmarks.md`` comes from the committed results. The findings in words are in
``bench/study_findings.py``; the t-test is ``grasp_tf.analysis.paired_t_test`` (scipy.stats).
"""
from __future__ import annotations

import argparse
from typing import Any

from train.colors import color  # the same colour per method in every figure

METHODS = ("grasp", "snip", "synflow", "random")
# Issue 19's methods; prospr_cli = ProsPr with its reference's cli.py settings (docs/criteria.md, ProsPr).
LATER_METHODS = ("iter_snip", "force", "prospr", "ntk_sap", "phew", "random_erk", "prospr_cli")
ABLATION_NAMES = ("shuffle", "invert", "reinit")
MIN_DIFFERENCE = 0.01  # below 1 point, a difference can be the CPU's (docs/benchmarks.md)
SPREAD = 0.10  # seeds further apart than 10 points (e.g. one collapsed to chance) are shown one by one
CONNECTIVITY = ("flop_density", "effective_sparsity", "dead_channel_fraction")  # from each cell's masks
NAMES = {"grasp": "GraSP", "snip": "SNIP", "synflow": "SynFlow", "random": "random", "magnitude": "magnitude",
         "iter_snip": "Iter-SNIP", "force": "FORCE", "prospr": "ProsPr", "ntk_sap": "NTK-SAP", "phew": "PHEW",
         "random_erk": "random (ERK)", "prospr_cli": "ProsPr (cli.py settings)"}


def _key(r: dict[str, Any]) -> tuple:
    return r["model"], r["method"], r["sparsity"], r.get("ablation")


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std (ddof=1) over seeds per (model, method, sparsity, ablation)."""
    import numpy as np

    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(_key(r), []).append(r)
    out = []
    for (model, method, sparsity, ablation), rs in groups.items():
        entry: dict[str, Any] = {"model": model, "method": method, "sparsity": sparsity, "ablation": ablation,
                                 "seeds": len(rs)}
        for key in ("final_test_accuracy", "best_test_accuracy", "relative_gradient_norm", "scoring_seconds",
                    *CONNECTIVITY):
            vals = np.array([r[key] for r in rs if r.get(key) is not None], dtype=float)
            entry[key] = float(vals.mean()) if vals.size else None
            entry[key + "_std"] = float(vals.std(ddof=1)) if vals.size > 1 else None
        entry["final_test_accuracy_seeds"] = [r["final_test_accuracy"] for r in sorted(rs, key=lambda r: r["seed"])]
        for key in ("empty_layers", "blind_classes"):
            entry[key + "_seeds"] = [r.get(key) for r in sorted(rs, key=lambda r: r["seed"])]
        entry["classes"] = next((r["classes"] for r in rs if r.get("classes")), None)
        out.append(entry)
    return out


def paired(rows: list[dict[str, Any]], a: tuple, b: tuple) -> dict[str, Any] | None:
    """``a`` minus ``b`` (keys as ``_key`` gives) in final test accuracy, seed by seed.

    Same seed = same initialization and data order, so the per-seed difference removes what
    the seeds share. ``clear`` when the paired t-test (``grasp_tf.analysis.paired_t_test``)
    rejects equality at 5% and the mean difference is at least ``MIN_DIFFERENCE`` (the size
    machines alone can produce).
    """
    by_seed: dict[Any, dict[tuple, float]] = {}
    for r in rows:
        by_seed.setdefault(r["seed"], {})[_key(r)] = r["final_test_accuracy"]
    pairs = [(s[a], s[b]) for s in by_seed.values() if a in s and b in s]
    if len(pairs) < 2:
        return None
    from grasp_tf import analysis  # imported when a report is written: the study's driver stays free of TF

    test = analysis.paired_t_test([x for x, _ in pairs], [y for _, y in pairs])
    diffs = [x - y for x, y in pairs]
    return {"mean": test["mean"], "std": test["std"], "n": test["n"], "t": test["t"],
            "t_critical": test["t_critical"], "clear": test["reject"] and abs(test["mean"]) >= MIN_DIFFERENCE,
            "same_sign": all(d > 0 for d in diffs) or all(d < 0 for d in diffs)}


def pm(mean: float | None, std: float | None, scale: float = 1.0, digits: int = 2) -> str:
    """``mean ± std`` (scaled), ``-`` when missing."""
    if mean is None:
        return "-"
    return f"{mean * scale:.{digits}f}" + ("" if std is None else f" ± {std * scale:.{digits}f}")


def accuracy(e: dict[str, Any] | None) -> str:
    """Final test accuracy (%) as ``mean ± std``, followed by each seed's value when they lie more than
    ``SPREAD`` apart (a mean ± std hides a seed that collapsed to chance)."""
    if e is None:
        return "-"
    text = pm(e["final_test_accuracy"], e["final_test_accuracy_std"], 100, 1)
    seeds = [a for a in e.get("final_test_accuracy_seeds") or [] if a is not None]
    if len(seeds) > 1 and max(seeds) - min(seeds) > SPREAD:
        text += " (seeds: " + ", ".join(f"{a * 100:.1f}" for a in seeds) + ")"
    return text


def methods_in(summary: list[dict[str, Any]]) -> list[str]:
    """The methods present (not the dense baseline), GraSP's study's first, then issue 19's, then any other."""
    present = {e["method"] for e in summary if e["method"] != "none"}
    order = (*METHODS, "magnitude", *LATER_METHODS)
    return [m for m in order if m in present] + sorted(present - set(order))


def compact_markdown(summary: list[dict[str, Any]]) -> str:
    """Final test accuracy (%, mean ± std) per model and sparsity, one column per method (the README's table)."""
    by = {(e["model"], e["method"], e["sparsity"]): e for e in summary if not e.get("ablation")}
    methods = methods_in(summary)
    lines = ["| model (dense acc.) | sparsity | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for model in sorted({e["model"] for e in summary}):
        dense = by.get((model, "none", 0.0))
        label = model if dense is None else (
            f"{model} ({pm(dense['final_test_accuracy'], dense['final_test_accuracy_std'], 100, 1)})")
        for sparsity in sorted({e["sparsity"] for e in summary if e["model"] == model and e["method"] != "none"
                                and not e.get("ablation")}):
            row = [by.get((model, m, sparsity)) for m in methods]
            lines.append(f"| {label} | {sparsity * 100:g}% | " + " | ".join(accuracy(e) for e in row) + " |")
    return "\n".join(lines) + "\n"


def pruned_cells(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The scored (not dense, not ablated) cells, by model, sparsity, then ``methods_in``'s order."""
    order = methods_in(summary)
    return sorted((e for e in summary if e["method"] != "none" and not e.get("ablation")),
                  key=lambda e: (e["model"], e["sparsity"], order.index(e["method"])))


def per_seed(e: dict[str, Any], key: str) -> str:
    """Each seed's count under ``key + "_seeds"`` (``2, 0, 1``); ``-`` where unknown."""
    counts = [c for c in e.get(key + "_seeds") or [] if c is not None]
    return ", ".join(str(c) for c in counts) if counts else "-"


def connectivity_markdown(summary: list[dict[str, Any]]) -> str:
    """Like with like: per model, sparsity and method, accuracy beside what the masks leave connected.

    FLOP density = kept multiply-adds over dense ones; effective sparsity counts weights on no
    input-to-output path as removed; dead channels = conv output channels and Dense units with
    no kept weight (``grasp_tf.sparsity_report``); means over seeds, ``-`` where unknown; empty
    layers = masked weights with no kept entry, per seed; blind classes = the classifier's outputs
    with no kept weight, per seed.
    """
    cells = pruned_cells(summary)
    if not cells:
        return ""
    lines = ["| model | sparsity | method | final test acc. (%) | FLOP density (%) | effective sparsity (%) | "
             "dead channels (%) | empty layers (per seed) | blind classes (per seed) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for e in cells:
        lines.append(f"| {e['model']} | {e['sparsity'] * 100:g}% | {e['method']} | {accuracy(e)} | "
                     f"{pm(e.get('flop_density'), None, 100, 1)} | {pm(e.get('effective_sparsity'), None, 100, 2)} | "
                     f"{pm(e.get('dead_channel_fraction'), None, 100, 1)} | {per_seed(e, 'empty_layers')} | "
                     f"{per_seed(e, 'blind_classes')} |")
    return "\n".join(lines) + "\n"


def ablation_markdown(summary: list[dict[str, Any]]) -> str:
    """Final test accuracy (%) of each ablated method: as scored, then each ablation (columns)."""
    by = {_key(e): e for e in summary}
    ablations = [a for a in ABLATION_NAMES if any(e.get("ablation") == a for e in summary)]
    if not ablations:
        return ""
    lines = ["| model | method | sparsity | as scored | " + " | ".join(ablations) + " |",
             "|---|---|---|---|" + "---|" * len(ablations)]
    for key in sorted({(e["model"], e["method"], e["sparsity"]) for e in summary if e.get("ablation")}):
        cols = [by.get((*key, a)) for a in (None, *ablations)]
        lines.append(f"| {key[0]} | {key[1]} | {key[2] * 100:g}% | " + " | ".join(accuracy(e) for e in cols) + " |")
    return "\n".join(lines) + "\n"


def comparisons(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """GraSP against every other method per sparsity, and each ablation against its method as scored."""
    out = []
    keys = {_key(r) for r in rows}
    for model, method, sparsity, ablation in sorted(keys, key=str):
        if method == "none":
            continue
        if ablation:
            pair = ((model, method, sparsity, ablation), (model, method, sparsity, None))
        elif method != "grasp" and (model, "grasp", sparsity, None) in keys:
            pair = ((model, "grasp", sparsity, None), (model, method, sparsity, None))
        else:
            continue
        result = paired(rows, *pair)
        if result:
            out.append({"a": pair[0], "b": pair[1], **result})
    return out


def comparison_markdown(comps: list[dict[str, Any]]) -> str:
    """The paired differences as a table and one sentence each."""
    if not comps:
        return ""

    def name(k: tuple) -> str:
        return k[1] + (f" ({k[3]})" if k[3] else "")

    lines = ["| model | sparsity | difference | mean ± std (points) | seeds | paired t | beyond seed spread? |",
             "|---|---|---|---|---|---|---|"]
    for c in comps:
        lines.append(f"| {c['a'][0]} | {c['a'][2] * 100:g}% | {name(c['a'])} − {name(c['b'])} | "
                     f"{pm(c['mean'], c['std'], 100, 1)} | {c['n']} | {c['t']:.1f} | "
                     f"{'yes' if c['clear'] else 'no'} |")
    return "\n".join(lines) + "\n"


def in_words(comps: list[dict[str, Any]]) -> str:
    """One sentence per paired comparison: the difference and whether it exceeds the seed spread."""
    def name(k: tuple) -> str:
        return {"shuffle": f"{k[1]} shuffled", "invert": f"{k[1]} inverted", "reinit": f"{k[1]} reinitialized",
                None: k[1]}[k[3]]

    out = []
    for c in comps:
        verdict = ("beyond the seed spread" if c["clear"] else
                   "within the seed spread" + ("" if c["same_sign"] else " (the seeds disagree in sign)"))
        out.append(f"- {c['a'][0]} at {c['a'][2] * 100:g}%: {name(c['a'])} − {name(c['b'])} = "
                   f"{c['mean'] * 100:+.1f} ± {c['std'] * 100:.1f} points over {c['n']} seeds, {verdict}.")
    return "\n".join(out) + ("\n" if out else "")


README_BEGIN = "<!-- study:begin (written by bench/study_fashion_mnist.py --report_only; do not edit by hand) -->"
README_END = "<!-- study:end -->"


def update_readme(section: str, path: str) -> bool:
    """Replace the text between the study markers in ``path`` with ``section``; False if the markers are absent."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if README_BEGIN not in text or README_END not in text:
        return False
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{head}{README_BEGIN}\n{section}{README_END}{tail}")
    return True


def plot(summary: list[dict[str, Any]], args: argparse.Namespace, path: str) -> None:
    """Per model (columns): final test accuracy vs sparsity (top) and relative gradient norm at init (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model_names = sorted({e["model"] for e in summary})
    if not model_names:
        return
    panels = (("final_test_accuracy", 100, "final test accuracy (%)"),
              ("relative_gradient_norm", 1, "gradient norm at init, pruned / dense"))
    fig, axes = plt.subplots(2, len(model_names), figsize=(7.5 * len(model_names), 8), squeeze=False)
    recipe = f"{args.epochs} epochs on {args.train_limit:,} images, batch {args.batch_size}, lr {args.lr}"
    for col, model in enumerate(model_names):
        for row, (key, scale, label) in enumerate(panels):
            ax = axes[row][col]
            for method in methods_in(summary):
                pts = sorted((e["sparsity"], e[key], e[key + "_std"] or 0.0) for e in summary
                             if e["model"] == model and e["method"] == method and not e.get("ablation")
                             and e[key] is not None)
                if pts:
                    ax.errorbar([f"{p * 100:g}" for p, _, _ in pts], [v * scale for _, v, _ in pts],
                                [d * scale for _, _, d in pts], marker="o", capsize=3, label=method,
                                color=color(method))
            dense = [e for e in summary if e["model"] == model and e["method"] == "none"]
            if dense and key == "final_test_accuracy":
                ax.axhline(dense[0][key] * scale, color=color("dense"), ls="--", label="dense")
            if key == "relative_gradient_norm":
                ax.axhline(1.0, color=color("dense"), ls="--", lw=0.8, label="dense (= 1)")
            title = (f"{model}: test accuracy after training" if row == 0
                     else f"{model}: gradient norm at initialization, relative to dense")
            ax.set(title=title, xlabel="sparsity (%)", ylabel=label)
            ax.title.set_fontsize("medium")
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: hides no line
    fig.suptitle(f"Fashion-MNIST: {recipe};\naccuracy on the full test set; mean ± std over seeds", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""The converged study's report: mean ± std over seeds, paired differences, findings in words, plot.

Pure functions of the finished cells' rows (``bench/study_fashion_mnist.py`` collects them
from disk and writes what these return), so every number in ``study.md``, the README and
``docs/benchmarks.md`` comes from the committed results. :func:`findings` sets the results
beside the paper's Tables 1–2 (``train/paper_results.csv``, read by ``train.analyze.compare``) and beside Frankle et al. (2021).
"""
from __future__ import annotations

import argparse
import math
from typing import Any

from train.analyze import compare  # the paper's published cells, as train.analyze compare reads them
from train.colors import COLORS  # the same colour per method in every figure

METHODS = ("grasp", "snip", "synflow", "random")
ABLATION_NAMES = ("shuffle", "invert", "reinit")
T_CRIT_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}  # two-sided 5%, by degrees of freedom
MIN_DIFFERENCE = 0.01  # below 1 point, a difference can be the CPU's (docs/benchmarks.md)
NAMES = {"grasp": "GraSP", "snip": "SNIP", "synflow": "SynFlow", "random": "random", "magnitude": "magnitude"}


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
        for key in ("final_test_accuracy", "best_test_accuracy", "relative_gradient_norm", "scoring_seconds"):
            vals = np.array([r[key] for r in rs if r[key] is not None], dtype=float)
            entry[key] = float(vals.mean()) if vals.size else None
            entry[key + "_std"] = float(vals.std(ddof=1)) if vals.size > 1 else None
        out.append(entry)
    return out


def paired(rows: list[dict[str, Any]], a: tuple, b: tuple) -> dict[str, Any] | None:
    """``a`` minus ``b`` (keys as ``_key`` gives) in final test accuracy, seed by seed.

    Same seed = same initialization and data order, so the per-seed difference removes what
    the seeds share. ``clear`` when the paired t-test rejects equality at 5% and the mean
    difference is at least ``MIN_DIFFERENCE`` (the size machines alone can produce).
    """
    by_seed = {}
    for r in rows:
        by_seed.setdefault(r["seed"], {})[_key(r)] = r["final_test_accuracy"]
    diffs = [s[a] - s[b] for s in by_seed.values() if a in s and b in s]
    if len(diffs) < 2:
        return None
    mean = sum(diffs) / len(diffs)
    std = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
    t = math.inf if std == 0 else mean / (std / math.sqrt(len(diffs)))
    clear = abs(t) > T_CRIT_95.get(len(diffs) - 1, 2.0) and abs(mean) >= MIN_DIFFERENCE
    return {"mean": mean, "std": std, "n": len(diffs), "t": t, "clear": clear,
            "same_sign": all(d > 0 for d in diffs) or all(d < 0 for d in diffs)}


def pm(mean: float | None, std: float | None, scale: float = 1.0, digits: int = 2) -> str:
    """``mean ± std`` (scaled), ``-`` when missing."""
    if mean is None:
        return "-"
    return f"{mean * scale:.{digits}f}" + ("" if std is None else f" ± {std * scale:.{digits}f}")


def _methods(summary: list[dict[str, Any]]) -> list[str]:
    present = {e["method"] for e in summary if e["method"] != "none"}
    return [m for m in (*METHODS, "magnitude") if m in present] + sorted(present - {*METHODS, "magnitude"})


def compact_markdown(summary: list[dict[str, Any]]) -> str:
    """Final test accuracy (%, mean ± std) per model and sparsity, one column per method (the README's table)."""
    by = {(e["model"], e["method"], e["sparsity"]): e for e in summary if not e.get("ablation")}
    methods = _methods(summary)
    lines = ["| model (dense acc.) | sparsity | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for model in sorted({e["model"] for e in summary}):
        dense = by.get((model, "none", 0.0))
        label = model if dense is None else (
            f"{model} ({pm(dense['final_test_accuracy'], dense['final_test_accuracy_std'], 100, 1)})")
        for sparsity in sorted({e["sparsity"] for e in summary if e["model"] == model and e["method"] != "none"
                                and not e.get("ablation")}):
            row = [by.get((model, m, sparsity)) for m in methods]
            lines.append(f"| {label} | {sparsity * 100:g}% | " + " | ".join(
                "-" if e is None else pm(e["final_test_accuracy"], e["final_test_accuracy_std"], 100, 1)
                for e in row) + " |")
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
        lines.append(f"| {key[0]} | {key[1]} | {key[2] * 100:g}% | " + " | ".join(
            "-" if e is None else pm(e["final_test_accuracy"], e["final_test_accuracy_std"], 100, 1)
            for e in cols) + " |")
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
            for method in _methods(summary):
                pts = sorted((e["sparsity"], e[key], e[key + "_std"] or 0.0) for e in summary
                             if e["model"] == model and e["method"] == method and not e.get("ablation")
                             and e[key] is not None)
                if pts:
                    ax.errorbar([f"{p * 100:g}" for p, _, _ in pts], [v * scale for _, v, _ in pts],
                                [d * scale for _, _, d in pts], marker="o", capsize=3, label=method,
                                color=COLORS.get(method))
            dense = [e for e in summary if e["model"] == model and e["method"] == "none"]
            if dense and key == "final_test_accuracy":
                ax.axhline(dense[0][key] * scale, color=COLORS["dense"], ls="--", label="dense")
            if key == "relative_gradient_norm":
                ax.axhline(1.0, color=COLORS["dense"], ls="--", lw=0.8, label="dense (= 1)")
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



def _paper(table: int, model: str = "resnet32") -> dict[tuple[str, str, float], float]:
    """The paper's mean top-1 accuracy (%) by (dataset, method, sparsity) for one table and model."""
    return {(dataset, method, sparsity): float(c["mean"])
            for (dataset, m, method, sparsity, _), cs in compare.paper_cells(compare.PAPER_RESULTS).items()
            for c in cs if m == model and c["table"] == str(table)}


def _verdict(c: dict[str, Any]) -> str:
    if not c["clear"]:
        return "no clear difference"
    return "a clear gain" if c["mean"] > 0 else "a clear loss"


def _points(c: dict[str, Any]) -> str:
    return f"{c['mean'] * 100:+.1f} ± {c['std'] * 100:.1f}"


def _against_paper(comps: list[dict[str, Any]], other: str, table: int) -> str:
    """GraSP − ``other`` per sparsity here, beside the paper's GraSP − ``other`` for ResNet32 (CIFAR-10/100)."""
    paper = _paper(table)
    parts, agree, total = [], 0, 0
    for c in comps:
        if c["a"][1:] != ("grasp", c["a"][2], None) or c["b"][1] != other or c["b"][3]:
            continue
        s = c["a"][2]
        theirs = [paper[(d, "grasp", s)] - paper[(d, other, s)] for d in ("cifar10", "cifar100")
                  if (d, "grasp", s) in paper and (d, other, s) in paper]
        if not theirs:
            continue
        total += 1
        expected_gain = min(theirs) >= 1.0
        agree += (c["clear"] and c["mean"] > 0) if expected_gain else not (c["clear"] and c["mean"] < 0)
        parts.append(f"{s * 100:g}%: paper {' / '.join(f'{d:+.1f}' for d in theirs)}, here {_points(c)} "
                     f"({_verdict(c)})")
    if not parts:
        return ""
    return (f"- **GraSP − {NAMES.get(other, other)}** (paper Table {table}, ResNet32, CIFAR-10 / CIFAR-100; here "
            f"resnet20 on Fashion-MNIST, paired by seed, points): {'; '.join(parts)}. Agrees with the paper (a "
            f"clear gain here where the paper's gap is ≥ 1 point on both datasets, otherwise no clear loss) at "
            f"{agree} of {total} sparsities.\n")


def _where_grasp_does_not_lead(summary: list[dict[str, Any]], comps: list[dict[str, Any]]) -> str:
    by = {(e["model"], e["method"], e["sparsity"]): e for e in summary if not e.get("ablation")}
    paired_with = {(c["a"][0], c["b"][1], c["a"][2]): c for c in comps if c["a"][1] == "grasp"
                   and not c["a"][3] and not c["b"][3]}
    behind, narrow = [], []
    for (model, method, s), e in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        grasp = by.get((model, "grasp", s))
        if method in ("grasp", "none") or grasp is None:
            continue
        c = paired_with.get((model, method, s))
        how = f" ({_points(c)} points, {_verdict(c)})" if c else ""
        if e["final_test_accuracy"] >= grasp["final_test_accuracy"]:
            behind.append(f"{NAMES.get(method, method)} at {s * 100:g}%{how}")
        elif c and not c["clear"]:
            narrow.append(f"{NAMES.get(method, method)} at {s * 100:g}%{how}")
    text = ("- **Where GraSP does not lead:** " + ("; ".join(behind) if behind else
                                                   "nowhere: it has the highest mean at every sparsity") + ".")
    if narrow:
        text += " GraSP's lead is within the seed spread over " + "; ".join(narrow) + "."
    return text + "\n"


def _gradient_norms(summary: list[dict[str, Any]]) -> str:
    """Which method's masks keep the largest gradient norm at init (GraSP's premise), per sparsity."""
    out = []
    for model in sorted({e["model"] for e in summary}):
        for s in sorted({e["sparsity"] for e in summary if e["model"] == model and e["method"] != "none"}):
            es = [e for e in summary if e["model"] == model and e["sparsity"] == s and not e.get("ablation")
                  and e["relative_gradient_norm"] is not None]
            if len(es) > 1:
                ranked = sorted(es, key=lambda e: (-e["relative_gradient_norm"], _methods(es).index(e["method"])))
                out.append(f"{s * 100:g}%: " + " > ".join(
                    f"{NAMES.get(e['method'], e['method'])} {e['relative_gradient_norm']:.2f}" for e in ranked))
    return ("- **Gradient norm at initialization** (pruned / dense; GraSP's premise is that its masks keep it "
            "highest): " + "; ".join(out) + ".\n") if out else ""


FRANKLE_EXPECTED = {("shuffle", None): "no loss", ("reinit", None): "no loss", ("invert", "grasp"): "no loss",
                    ("invert", None): "loss"}  # Frankle et al. (ICLR 2021), sections 5-6


def _against_frankle(comps: list[dict[str, Any]]) -> str:
    words = {"shuffle": "shuffled layerwise", "invert": "inverted", "reinit": "reinitialized"}
    parts = []
    for c in comps:
        ablation, method = c["a"][3], c["a"][1]
        if not ablation:
            continue
        expected = FRANKLE_EXPECTED.get((ablation, method), FRANKLE_EXPECTED[(ablation, None)])
        agrees = (c["clear"] and c["mean"] < 0) if expected == "loss" else not (c["clear"] and c["mean"] < 0)
        parts.append(f"{NAMES.get(method, method)} {words[ablation]} at {c['a'][2] * 100:g}%: {_points(c)} points ({_verdict(c)}; "
                     f"they found {expected}: {'agrees' if agrees else 'disagrees'})")
    if not parts:
        return ""
    return ("- **Sanity checks against Frankle et al. (2021)**, who found that shuffling each layer's mask or "
            "reinitializing the weights preserves or improves accuracy for SNIP, GraSP and SynFlow (so the "
            "per-layer densities carry the method), that inverting SNIP's scores loses badly, and that inverting "
            "GraSP's does not. Ablated − as scored, paired by seed: " + "; ".join(parts) + ".\n")


def findings(summary: list[dict[str, Any]], comps: list[dict[str, Any]]) -> str:
    """The results beside the paper's Tables 1–2 and Frankle et al., in words; '' before two seeds."""
    text = (_against_paper(comps, "random", 1) + _against_paper(comps, "snip", 2)
            + _where_grasp_does_not_lead(summary, comps) + _gradient_norms(summary) + _against_frankle(comps))
    return text if comps else ""


def dense_and_compute(rows: list[dict[str, Any]]) -> str:
    """The dense baseline per seed against the 88% bar, and the training compute of the finished cells."""
    dense = sorted((r["model"], r["seed"], r["final_test_accuracy"]) for r in rows if r["method"] == "none")
    hours = sum(r["wall_seconds"] for r in rows) / 3600
    per_seed = ", ".join(f"{m} seed {s}: {a * 100:.1f}%" for m, s, a in dense)
    bar = "every one ≥ 88%" if dense and all(a >= 0.88 for *_, a in dense) else "NOT all ≥ 88%"
    return (f"Dense: {per_seed or 'not run yet'} ({bar}). Compute: {len(rows)} runs, {hours:.1f} hours of "
            f"`train.run` wall time on 2 CPU cores ({hours * 60 / max(len(rows), 1):.1f} min per run).\n")

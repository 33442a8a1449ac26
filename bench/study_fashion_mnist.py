"""The paper's claim at convergence on Fashion-MNIST: accuracy vs sparsity per method, plus the sanity checks.

resnet20 (width 1, where gradient flow matters) trained to convergence on 10,000 Fashion-MNIST
images (dense >= 88% on the full 10,000-image test set): GraSP, SNIP, SynFlow and random at
95-99.5% sparsity and a dense baseline, 3 seeds; plus the ablations of Frankle et al. (2021)
for GraSP and SNIP at 98%: layerwise shuffle (= random masks at the method's per-layer
densities), invert, reinitialize. Every cell is one ``python -m train.run`` subprocess writing
``<output_dir>/runs/<model>/<cell>_s<seed>`` (paths relative to the repository). Cells whose
``results.json`` exists are skipped and a killed cell resumes from its last epoch (exactly),
so rerunning the same command resumes the study; ``--commit`` commits each finished cell
(config, masks, metrics, results, gradient norm) so that the next session continues it.
After each cell one process writes its gradient norm at initialization relative to the dense
net (``gradnorm.json``). ``study.md`` / ``study.json`` / ``study.png`` are rewritten at the end:
mean ± std over seeds, paired per-seed differences (same seed = same initialization and data
order for every method), and the CPU they ran on.

    python bench/study_fashion_mnist.py --commit        # the full study (resumable)
    python bench/study_fashion_mnist.py --quick         # a one-minute smoke run in a temp dir
    python bench/study_fashion_mnist.py --report_only   # only rebuild the tables and plot
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterator

from bench import common
from train.colors import COLORS  # the same colour per method in every figure

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("grasp", "snip", "synflow", "random")
SPARSITIES = (0.95, 0.98, 0.99, 0.995)
ABLATIONS = {"shuffle": "--shuffle_masks", "invert": "--invert_masks", "reinit": "--reinit_weights"}
MODELS = {"resnet20": 1, "conv4": 0}  # name -> --width (0 = the builder's default)
GRADNORM_EXAMPLES = 512
T_CRIT_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}  # two-sided 5%, by degrees of freedom
MIN_DIFFERENCE = 0.01  # below 1 point, a difference can be the CPU's (docs/benchmarks.md)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults are the recorded converged study."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", default=os.path.join("bench", "results", "study_converged"),
                   help="relative paths are relative to the repository")
    p.add_argument("--models", default="resnet20", help="comma-separated, from: " + ",".join(MODELS))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--sparsities", default=",".join(map(str, SPARSITIES)))
    p.add_argument("--ablations", default=",".join(ABLATIONS), help="'' = none; from: " + ",".join(ABLATIONS))
    p.add_argument("--ablation_methods", default="grasp,snip")
    p.add_argument("--ablation_sparsities", default="0.98")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--train_limit", type=int, default=10000)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--test_limit", type=int, default=0, help="evaluate on the first N test images (0 = all 10,000)")
    p.add_argument("--jobs", type=int, default=1, help="runner subprocesses at a time")
    p.add_argument("--no_dense", action="store_true", help="skip the dense baseline cells")
    p.add_argument("--commit", action="store_true", help="git-commit each finished cell's files")
    p.add_argument("--report_only", action="store_true", help="aggregate existing cells, run nothing")
    p.add_argument("--quick", action="store_true", help="two tiny cells in a temp dir (smoke run, < 1 min)")
    p.add_argument("--gradnorm_worker", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.output_dir = tempfile.mkdtemp(prefix="study_quick_")
        args.models, args.methods, args.sparsities, args.ablations = "conv4", "grasp,random", "0.98", "invert"
        args.ablation_methods = "grasp"
        args.seeds, args.epochs, args.train_limit, args.no_dense, args.test_limit = 1, 1, 256, True, 200
    return args


def cells(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Every cell, seed-major: per model the dense baseline, the method grid, then the ablations."""
    methods = args.methods.split(",")
    sparsities = [float(s) for s in args.sparsities.split(",")]
    ablations = [a for a in args.ablations.split(",") if a]
    ablated = [(m, float(s), a) for s in args.ablation_sparsities.split(",") for m in args.ablation_methods.split(",")
               for a in ablations]
    for seed in range(args.seeds):
        for model in args.models.split(","):
            grid = ([] if args.no_dense else [("none", 0.0, None)]) + [(m, s, None) for s in sparsities
                                                                        for m in methods] + ablated
            for method, sparsity, ablation in grid:
                name = "dense" if method == "none" else f"{method}_{sparsity:g}" + (f"_{ablation}" if ablation else "")
                yield {"model": model, "width": MODELS[model], "method": method, "sparsity": sparsity,
                       "ablation": ablation, "seed": seed,
                       "dir": os.path.join(args.output_dir, "runs", model, f"{name}_s{seed}")}


def run_cell(cell: dict[str, Any], args: argparse.Namespace) -> float:
    """Train one cell with the runner in a subprocess (resumes a killed one); returns its wall time in seconds."""
    cmd = [sys.executable, "-m", "train.run", "--dataset=fashion_mnist", f"--model={cell['model']}",
           f"--width={cell['width']}", f"--method={cell['method']}", f"--sparsity={cell['sparsity']}",
           f"--epochs={args.epochs}", f"--train_limit={args.train_limit}", f"--seed={cell['seed']}",
           f"--batch_size={args.batch_size}", f"--lr={args.lr}", f"--test_limit={args.test_limit}",
           "--augment=false", f"--output_dir={cell['dir']}"] + ([ABLATIONS[cell["ablation"]]] if cell["ablation"] else [])
    os.makedirs(os.path.join(ROOT, os.path.dirname(cell["dir"])), exist_ok=True)
    t0 = time.perf_counter()
    with open(os.path.join(ROOT, cell["dir"] + ".log"), "w") as log:
        subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - t0


def gradient_norm_at_init(cell: dict[str, Any], args: argparse.Namespace) -> dict[str, float]:
    """The cell's relative gradient norm at initialization: its masks on the initial model it trained from."""
    import keras
    import numpy as np

    import models
    from grasp_tf import analysis
    from train import artifacts, data

    keras.backend.clear_session()
    keras.utils.set_random_seed(cell["seed"])
    ds = data.load("fashion_mnist", batch_size=128, seed=cell["seed"], augment=False, train_limit=args.train_limit)
    init_seed = cell["seed"] + (1 if cell["ablation"] == "reinit" else 0)  # train.run --reinit_weights
    model = models.build(cell["model"], ds.num_classes, ds.input_shape, width=cell["width"] or None, seed=init_seed)
    masks = artifacts.load_masks(os.path.join(ROOT, cell["dir"], "masks.npz"))
    dense, pruned = analysis.gradient_norms(model, ds.train, [None, masks], max_examples=GRADNORM_EXAMPLES)
    kept = sum(int(np.count_nonzero(m)) for m in masks.values())
    return {"dense": dense, "pruned": pruned, "relative": pruned / dense, "kept": kept,
            "examples": GRADNORM_EXAMPLES}


def collect(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per finished cell: accuracies, times, relative gradient norm and the CPU it ran on."""
    rows = []
    for cell in cells(args):
        base = os.path.join(ROOT, cell["dir"])
        if not os.path.exists(os.path.join(base, "results.json")):
            continue
        with open(os.path.join(base, "results.json")) as f:
            res = json.load(f)
        rel = None
        if os.path.exists(os.path.join(base, "gradnorm.json")):
            with open(os.path.join(base, "gradnorm.json")) as f:
                rel = json.load(f)["relative"]
        rows.append({k: cell[k] for k in ("model", "method", "sparsity", "ablation", "seed")} | {
            "final_test_accuracy": res["final_test_accuracy"], "best_test_accuracy": res["best_test_accuracy"],
            "scoring_seconds": res["scoring_seconds"], "wall_seconds": res["wall_seconds"],
            "relative_gradient_norm": rel, "cpu": res.get("machine", {}).get("cpu")})
    return rows


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
    ablations = [a for a in ABLATIONS if any(e.get("ablation") == a for e in summary)]
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


def report(args: argparse.Namespace) -> str:
    """Rewrite study.json, study.md and study.png from the finished cells; returns study.md's text."""
    out = os.path.join(ROOT, args.output_dir)
    rows = collect(args)
    summary = summarize(rows)
    comps = comparisons(rows)
    total = sum(1 for _ in cells(args))
    settings = {k: v for k, v in vars(args).items() if k not in ("report_only", "quick", "commit", "gradnorm_worker")}
    cpus = sorted({r["cpu"] for r in rows if r["cpu"]}) or [common.machine()["cpu"]]
    with open(os.path.join(out, "study.json"), "w") as f:
        json.dump({"settings": settings, "machine": common.machine(), "cpus": cpus, "cells_done": len(rows),
                   "cells_total": total, "summary": summary, "comparisons": comps, "rows": rows}, f, indent=1)
    test = f"the first {args.test_limit} test images" if args.test_limit else "the full 10,000-image test set"
    text = (f"{len(rows)} of {total} cells done. Recipe: {args.epochs} epochs on {args.train_limit:,} training "
            f"images, batch {args.batch_size}, SGD lr {args.lr} ×0.1 at 50% and 75%, momentum 0.9, weight decay "
            f"5e-4, no augmentation; accuracy on {test}. CPU: {', '.join(cpus)}.\n\n"
            f"Final test accuracy (%), mean ± std over seeds:\n\n{compact_markdown(summary)}\n"
            f"Sanity-check ablations, final test accuracy (%):\n\n{ablation_markdown(summary)}\n"
            f"Paired differences (same seed, final test accuracy; 'yes' = paired t-test at 5% and at least "
            f"{MIN_DIFFERENCE * 100:g} point):\n\n{comparison_markdown(comps)}")
    with open(os.path.join(out, "study.md"), "w") as f:
        f.write(text)
    plot(summary, args, os.path.join(out, "study.png"))
    if os.path.normpath(args.output_dir) == os.path.normpath(parse_args([]).output_dir):  # the recorded study
        section = (f"{len(rows)} of {total} cells done ({', '.join(cpus)}). Final test accuracy (%) on "
                   f"{test}, mean ± std over seeds:\n\n{compact_markdown(summary)}\n"
                   f"Sanity checks, final test accuracy (%):\n\n"
                   f"{ablation_markdown(summary) or 'none finished yet.' + chr(10)}\n"
                   f"Paired by seed (same initialization and data order):\n\n"
                   f"{in_words(comps) or 'none yet (a comparison needs two seeds).' + chr(10)}\n")
        figure = "bench/results/study_converged/study.png"
        update_readme(section + f"![study]({figure})\n\n", os.path.join(ROOT, "README.md"))
        update_readme(section + f"![study](../{figure})\n\n" + comparison_markdown(comps) + "\n",
                      os.path.join(ROOT, "docs", "benchmarks.md"))
    return text


def gradnorm_worker(dirs: list[str], args: argparse.Namespace) -> None:
    """Write ``gradnorm.json`` for the cells in ``dirs`` (its own process: TensorFlow stays out of the driver)."""
    from train import artifacts

    for cell in cells(args):
        path = os.path.join(ROOT, cell["dir"], "gradnorm.json")
        if cell["dir"] in dirs and not os.path.exists(path):
            artifacts.write_json(path, gradient_norm_at_init(cell, args))


def run_gradnorms(dirs: list[str], argv: list[str]) -> None:
    """:func:`gradnorm_worker` for ``dirs`` in a fresh Python process."""
    subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--gradnorm_worker", *dirs], cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)


CELL_FILES = ("config.json", "masks.npz", "metrics.csv", "pruning.json", "results.json", "gradnorm.json")


def commit_cell(cell: dict[str, Any]) -> None:
    """Commit the cell's small files (never models or logs), retrying while another git command runs."""
    paths = [os.path.join(cell["dir"], f) for f in CELL_FILES if os.path.exists(os.path.join(ROOT, cell["dir"], f))]
    name = os.path.basename(cell["dir"])
    for attempt in range(30):
        add = subprocess.run(["git", "add", "-f", "--", *paths], cwd=ROOT, capture_output=True, text=True)
        done = add.returncode == 0 and subprocess.run(
            ["git", "commit", "-q", "-m", f"study: {cell['model']} {name}", "--", *paths], cwd=ROOT,
            capture_output=True, text=True).returncode == 0
        if done:
            return
        time.sleep(2 + attempt)
    print(f"could not commit {cell['dir']} (git busy?); it stays on disk", flush=True)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.gradnorm_worker:
        gradnorm_worker(args.gradnorm_worker, args)
        return
    os.makedirs(os.path.join(ROOT, args.output_dir), exist_ok=True)
    if not args.report_only:
        todo = [c for c in cells(args) if not os.path.exists(os.path.join(ROOT, c["dir"], "results.json"))
                or not os.path.exists(os.path.join(ROOT, c["dir"], "gradnorm.json")) and c["method"] != "none"]
        total = sum(1 for _ in cells(args))
        worker_argv = [a for a in argv if a not in ("--quick", "--commit")] + ([
            f"--output_dir={args.output_dir}", f"--models={args.models}", f"--methods={args.methods}",
            f"--sparsities={args.sparsities}", f"--ablations={args.ablations}",
            f"--ablation_methods={args.ablation_methods}", f"--seeds={args.seeds}", f"--epochs={args.epochs}",
            f"--train_limit={args.train_limit}", f"--test_limit={args.test_limit}",
            f"--batch_size={args.batch_size}", f"--lr={args.lr}"] + (
            ["--no_dense"] if args.no_dense else []) if args.quick else [])
        print(f"{len(todo)} of {total} cells to run ({total - len(todo)} done), {args.jobs} at a time; "
              f"results in {args.output_dir}", flush=True)
        from concurrent.futures import ThreadPoolExecutor

        t0, finished = time.perf_counter(), 0
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            runs = {c["dir"]: pool.submit(run_cell, c, args) for c in todo
                    if not os.path.exists(os.path.join(ROOT, c["dir"], "results.json"))}
            for i, cell in enumerate(todo, 1):  # in cell order; the pool keeps args.jobs runners busy
                label = (f"{cell['model']} {cell['method']} {cell['sparsity']:g}"
                         f"{' ' + cell['ablation'] if cell['ablation'] else ''} seed {cell['seed']}")
                try:
                    seconds = runs[cell["dir"]].result() if cell["dir"] in runs else 0.0
                    if cell["method"] != "none":
                        run_gradnorms([cell["dir"]], worker_argv)
                except subprocess.CalledProcessError:
                    print(f"{time.strftime('%H:%M:%S')} [{i}/{len(todo)}] {label}: FAILED, see {cell['dir']}.log",
                          flush=True)
                    continue
                if args.commit:
                    commit_cell(cell)
                finished += 1
                eta = (time.perf_counter() - t0) / finished * (len(todo) - i)
                print(f"{time.strftime('%H:%M:%S')} [{i}/{len(todo)}] {label}: trained in {seconds:.0f}s; "
                      f"ETA {eta / 60:.0f} min", flush=True)
    print(report(args))
    if args.commit and not args.report_only:
        out = args.output_dir
        subprocess.run(["git", "add", "--", *(os.path.join(out, f) for f in ("study.md", "study.json", "study.png"))],
                       cwd=ROOT, check=False)
        subprocess.run(["git", "commit", "-q", "-m", "study: tables and plot", "--",
                        *(os.path.join(out, f) for f in ("study.md", "study.json", "study.png"))], cwd=ROOT,
                       check=False)
    print(f"results in {args.output_dir}")


if __name__ == "__main__":
    main()

"""CPU-scale check of GraSP's central claim on Fashion-MNIST: accuracy vs sparsity per method.

GraSP, SNIP, random and magnitude at 90-99.5% sparsity, plus a dense baseline, on a ResNet
(resnet20, width 1) and a VGG-style net (conv4), several seeds. Every cell is one
``python -m train.run`` subprocess writing ``<output_dir>/runs/<model>/<method>_<sparsity>_s<seed>``;
cells whose ``results.json`` exists are skipped, so rerunning the same command resumes the
study cell by cell (cells run seed-major, ``--jobs`` at a time: an interrupted study holds
whole seeds). After each model x seed group, one separate process writes every cell's
relative gradient norm at initialization (pruned / dense, ``grasp_tf.analysis``) beside it as
``gradnorm.json`` (TensorFlow never computes in the driver, which only starts processes).
Then ``study.md`` / ``study.json`` (mean ± std over seeds) and ``study.png`` (accuracy and
relative gradient norm vs sparsity per method) are rewritten.

    python bench/study_fashion_mnist.py                 # the full study (resumable)
    python bench/study_fashion_mnist.py --quick         # a one-minute smoke run in a temp dir
    python bench/study_fashion_mnist.py --report_only   # only rebuild the table and plot
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

METHODS = ("grasp", "snip", "random", "magnitude")
SPARSITIES = (0.9, 0.95, 0.98, 0.99, 0.995)
MODELS = {"resnet20": 1, "conv4": 0}  # name -> --width (0 = the builder's default)
GRADNORM_EXAMPLES = 512
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults are the recorded full study."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", default=os.path.join(ROOT, "bench", "results", "study"))
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated, from: " + ",".join(MODELS))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--sparsities", default=",".join(map(str, SPARSITIES)))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--train_limit", type=int, default=2000)
    p.add_argument("--batch_size", type=int, default=32, help="small batches: more SGD steps for the same compute")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--test_per_class", type=int, default=200,
                   help="evaluate on the first N test images of each class (0 = the whole test set)")
    p.add_argument("--jobs", type=int, default=2, help="runner subprocesses at a time")
    p.add_argument("--no_dense", action="store_true", help="skip the dense baseline cells")
    p.add_argument("--report_only", action="store_true", help="aggregate existing cells, run nothing")
    p.add_argument("--quick", action="store_true", help="two tiny cells in a temp dir (smoke run, < 1 min)")
    p.add_argument("--gradnorm_worker", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.output_dir = tempfile.mkdtemp(prefix="study_quick_")
        args.models, args.methods, args.sparsities = "conv4", "grasp,random", "0.98"
        args.seeds, args.epochs, args.train_limit, args.no_dense = 1, 1, 256, True
        args.test_per_class = 20
    return args


def write_idx(path: str, array: Any) -> None:
    """An uncompressed IDX file of unsigned bytes (the format train.data.read_idx reads)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with open(path, "wb") as f:
        f.write(header + array.astype("uint8").tobytes())


def prepare_data(args: argparse.Namespace) -> str | None:
    """A --data_dir whose test set is the first ``test_per_class`` images of each class (None: all).

    The training files are links to the Debian package's; the runner reads the directory
    unchanged. Deterministic, so a resumed study rebuilds the same directory.
    """
    if not args.test_per_class:
        return None
    import numpy as np

    from train.data import read_idx

    out = os.path.join(args.output_dir, "data", f"fashion-mnist-test{args.test_per_class}pc")
    if os.path.exists(os.path.join(out, "t10k-labels-idx1-ubyte")):
        return out
    os.makedirs(out, exist_ok=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        if not os.path.exists(os.path.join(out, name)):
            os.symlink(os.path.join(FASHION_MNIST_DIR, name), os.path.join(out, name))
    x = read_idx(os.path.join(FASHION_MNIST_DIR, "t10k-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(FASHION_MNIST_DIR, "t10k-labels-idx1-ubyte.gz"))
    keep = np.sort(np.concatenate([np.flatnonzero(y == c)[:args.test_per_class] for c in range(10)]))
    write_idx(os.path.join(out, "t10k-images-idx3-ubyte"), x[keep])
    write_idx(os.path.join(out, "t10k-labels-idx1-ubyte.tmp"), y[keep])
    os.replace(os.path.join(out, "t10k-labels-idx1-ubyte.tmp"), os.path.join(out, "t10k-labels-idx1-ubyte"))
    return out


def cells(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Every (seed, model, method, sparsity) cell, seed-major, dense baseline first in each seed."""
    methods = args.methods.split(",")
    sparsities = [float(s) for s in args.sparsities.split(",")]
    for seed in range(args.seeds):
        for model in args.models.split(","):
            grid = ([] if args.no_dense else [("none", 0.0)]) + [(m, s) for s in sparsities for m in methods]
            for method, sparsity in grid:
                name = "dense" if method == "none" else f"{method}_{sparsity:g}"
                yield {"model": model, "width": MODELS[model], "method": method, "sparsity": sparsity,
                       "seed": seed, "dir": os.path.join(args.output_dir, "runs", model, f"{name}_s{seed}")}


def run_cell(cell: dict[str, Any], args: argparse.Namespace, data_dir: str | None) -> float:
    """Train one cell with the runner in a subprocess; returns its wall time in seconds."""
    cmd = [sys.executable, "-m", "train.run", "--dataset=fashion_mnist", f"--model={cell['model']}",
           f"--width={cell['width']}", f"--method={cell['method']}", f"--sparsity={cell['sparsity']}",
           f"--epochs={args.epochs}", f"--train_limit={args.train_limit}", f"--seed={cell['seed']}",
           f"--batch_size={args.batch_size}", f"--lr={args.lr}",
           "--augment=false", f"--output_dir={cell['dir']}"] + ([f"--data_dir={data_dir}"] if data_dir else [])
    os.makedirs(os.path.dirname(cell["dir"]), exist_ok=True)
    t0 = time.perf_counter()
    with open(os.path.join(os.path.dirname(cell["dir"]), os.path.basename(cell["dir"]) + ".log"), "w") as log:
        subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - t0


def gradient_norm_at_init(cell: dict[str, Any], args: argparse.Namespace) -> dict[str, float]:
    """The cell's relative gradient norm at initialization: its masks on the runner's initial model."""
    import keras
    import numpy as np

    import models
    from grasp_tf import analysis
    from train import artifacts, data

    keras.backend.clear_session()
    keras.utils.set_random_seed(cell["seed"])
    ds = data.load("fashion_mnist", batch_size=128, seed=cell["seed"], augment=False,
                   train_limit=args.train_limit)
    model = models.build(cell["model"], ds.num_classes, ds.input_shape, width=cell["width"] or None,
                         seed=cell["seed"])
    masks = artifacts.load_masks(os.path.join(cell["dir"], "masks.npz"))
    dense, pruned = analysis.gradient_norms(model, ds.train, [None, masks], max_examples=GRADNORM_EXAMPLES)
    kept = sum(int(np.count_nonzero(m)) for m in masks.values())
    return {"dense": dense, "pruned": pruned, "relative": pruned / dense, "kept": kept,
            "examples": GRADNORM_EXAMPLES}


def collect(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per finished cell: accuracies, scoring time and relative gradient norm."""
    rows = []
    for cell in cells(args):
        path = os.path.join(cell["dir"], "results.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            res = json.load(f)
        grad_path = os.path.join(cell["dir"], "gradnorm.json")
        rel = None
        if os.path.exists(grad_path):
            with open(grad_path) as f:
                rel = json.load(f)["relative"]
        rows.append({k: cell[k] for k in ("model", "method", "sparsity", "seed")} | {
            "final_test_accuracy": res["final_test_accuracy"], "best_test_accuracy": res["best_test_accuracy"],
            "scoring_seconds": res["scoring_seconds"], "wall_seconds": res["wall_seconds"],
            "relative_gradient_norm": rel})
    return rows


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std (ddof=1) over seeds per (model, method, sparsity)."""
    import numpy as np

    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["method"], r["sparsity"]), []).append(r)
    out = []
    for (model, method, sparsity), rs in groups.items():
        entry: dict[str, Any] = {"model": model, "method": method, "sparsity": sparsity, "seeds": len(rs)}
        for key in ("final_test_accuracy", "best_test_accuracy", "relative_gradient_norm", "scoring_seconds"):
            vals = np.array([r[key] for r in rs if r[key] is not None], dtype=float)
            entry[key] = float(vals.mean()) if vals.size else None
            entry[key + "_std"] = float(vals.std(ddof=1)) if vals.size > 1 else None
        out.append(entry)
    return out


def pm(mean: float | None, std: float | None, scale: float = 1.0, digits: int = 2) -> str:
    """``mean ± std`` (scaled), ``-`` when missing."""
    if mean is None:
        return "-"
    return f"{mean * scale:.{digits}f}" + ("" if std is None else f" ± {std * scale:.{digits}f}")


def markdown(summary: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The results table: final test accuracy (%) and relative gradient norm, per model, method, sparsity."""
    test = f"the first {args.test_per_class} test images per class" if args.test_per_class else "the full test set"
    lines = [f"Fashion-MNIST, {args.epochs} epoch(s) on {args.train_limit} training images (batch {args.batch_size}, "
             f"lr {args.lr}, x0.1 at 50% and 75% of the epochs, rounded to whole epochs), accuracy on {test}; mean ± std over seeds (n = seeds).", "",
             "| model | method | sparsity | n | final test acc. (%) | best test acc. (%) | rel. grad norm at init |",
             "|---|---|---|---|---|---|---|"]
    order = {m: i for i, m in enumerate(("none", *METHODS))}
    for e in sorted(summary, key=lambda e: (e["model"], e["sparsity"], order.get(e["method"], 99))):
        method = "dense" if e["method"] == "none" else e["method"]
        lines.append(f"| {e['model']} | {method} | {e['sparsity'] * 100:g}% | {e['seeds']} | "
                     f"{pm(e['final_test_accuracy'], e['final_test_accuracy_std'], 100)} | "
                     f"{pm(e['best_test_accuracy'], e['best_test_accuracy_std'], 100)} | "
                     f"{pm(e['relative_gradient_norm'], e['relative_gradient_norm_std'], 1, 3)} |")
    return "\n".join(lines) + "\n"


def compact_markdown(summary: list[dict[str, Any]]) -> str:
    """Final test accuracy (%, mean ± std) per model and sparsity, one column per method (the README's table)."""
    by = {(e["model"], e["method"], e["sparsity"]): e for e in summary}
    lines = ["| model (dense acc.) | sparsity | " + " | ".join(METHODS) + " |", "|---|---|" + "---|" * len(METHODS)]
    for model in sorted({e["model"] for e in summary}):
        dense = by.get((model, "none", 0.0))
        label = model if dense is None else (
            f"{model} ({pm(dense['final_test_accuracy'], dense['final_test_accuracy_std'], 100, 1)})")
        for sparsity in sorted({e["sparsity"] for e in summary if e["model"] == model and e["method"] != "none"}):
            row = [by.get((model, m, sparsity)) for m in METHODS]
            lines.append(f"| {label} | {sparsity * 100:g}% | " + " | ".join(
                "-" if e is None else pm(e["final_test_accuracy"], e["final_test_accuracy_std"], 100, 1)
                for e in row) + " |")
    return "\n".join(lines) + "\n"


def plot(summary: list[dict[str, Any]], path: str) -> None:
    """Per model (columns): final test accuracy vs sparsity (top) and relative gradient norm at init (bottom),
    one line per method, error bars the std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model_names = sorted({e["model"] for e in summary})
    if not model_names:
        return
    panels = (("final_test_accuracy", 100, "final test accuracy (%)"),
              ("relative_gradient_norm", 1, "grad. norm at init / dense"))
    fig, axes = plt.subplots(2, len(model_names), figsize=(5.5 * len(model_names), 7.5), squeeze=False)
    for col, model in enumerate(model_names):
        for row, (key, scale, label) in enumerate(panels):
            ax = axes[row][col]
            for method in METHODS:
                pts = sorted((e["sparsity"], e[key], e[key + "_std"] or 0.0) for e in summary
                             if e["model"] == model and e["method"] == method and e[key] is not None)
                if pts:
                    ax.errorbar([f"{p * 100:g}" for p, _, _ in pts], [v * scale for _, v, _ in pts],
                                [d * scale for _, _, d in pts], marker="o", capsize=3, label=method)
            dense = [e for e in summary if e["model"] == model and e["method"] == "none"]
            if dense and key == "final_test_accuracy":
                ax.axhline(dense[0][key] * scale, color="grey", ls="--", label="dense")
            ax.set(title=f"{model} on Fashion-MNIST", xlabel="sparsity (%)", ylabel=label)
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(args: argparse.Namespace) -> str:
    """Rewrite study.json, study.md and study.png from the finished cells; returns study.md's text."""
    rows = collect(args)
    summary = summarize(rows)
    table = markdown(summary, args)
    total = sum(1 for _ in cells(args))
    with open(os.path.join(args.output_dir, "study.json"), "w") as f:
        json.dump({"settings": {k: v for k, v in vars(args).items() if k not in ("report_only", "quick")},
                   "cells_done": len(rows), "cells_total": total, "summary": summary, "rows": rows}, f, indent=1)
    text = (f"{len(rows)} of {total} cells done.\n\nFinal test accuracy (%), mean ± std over seeds:\n\n"
            f"{compact_markdown(summary)}\n{table}")
    with open(os.path.join(args.output_dir, "study.md"), "w") as f:
        f.write(text)
    plot(summary, os.path.join(args.output_dir, "study.png"))
    return text


def gradnorm_worker(dirs: list[str], args: argparse.Namespace) -> None:
    """Write ``gradnorm.json`` for the cells in ``dirs`` (run in its own process: TensorFlow stays out of the driver)."""
    from train import artifacts

    for cell in cells(args):
        path = os.path.join(cell["dir"], "gradnorm.json")
        if cell["dir"] in dirs and not os.path.exists(path):
            artifacts.write_json(path, gradient_norm_at_init(cell, args))


def run_gradnorms(dirs: list[str], argv: list[str]) -> None:
    """:func:`gradnorm_worker` for ``dirs`` in a fresh Python process."""
    subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--gradnorm_worker", *dirs], cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.gradnorm_worker:
        gradnorm_worker(args.gradnorm_worker, args)
        return
    os.makedirs(args.output_dir, exist_ok=True)
    if not args.report_only:
        from concurrent.futures import ThreadPoolExecutor

        data_dir = prepare_data(args)
        todo = list(cells(args))
        worker_argv = [a for a in argv if a != "--quick"] + ([
            f"--output_dir={args.output_dir}", f"--models={args.models}", f"--methods={args.methods}",
            f"--sparsities={args.sparsities}", f"--seeds={args.seeds}", f"--epochs={args.epochs}",
            f"--train_limit={args.train_limit}", f"--test_per_class={args.test_per_class}",
            f"--batch_size={args.batch_size}", f"--lr={args.lr}"] + (
            ["--no_dense"] if args.no_dense else []) if args.quick else [])
        with ThreadPoolExecutor(max_workers=args.jobs) as pool, ThreadPoolExecutor(max_workers=1) as grads:
            runs = {c["dir"]: pool.submit(run_cell, c, args, data_dir) for c in todo
                    if not os.path.exists(os.path.join(c["dir"], "results.json"))}
            pending, done_grads = [], []
            for i, cell in enumerate(todo, 1):  # in cell order; the pool keeps args.jobs runners busy
                if cell["dir"] in runs:
                    label = f"[{i}/{len(todo)}] {cell['model']} {cell['method']} {cell['sparsity']:g} seed {cell['seed']}"
                    try:
                        print(f"{time.strftime('%H:%M:%S')} {label}: trained in {runs[cell['dir']].result():.0f}s",
                              flush=True)
                    except subprocess.CalledProcessError:
                        print(f"{time.strftime('%H:%M:%S')} {label}: FAILED, see {cell['dir']}.log", flush=True)
                        continue
                if cell["method"] != "none" and not os.path.exists(os.path.join(cell["dir"], "gradnorm.json")):
                    pending.append(cell["dir"])
                if pending and (i == len(todo) or todo[i]["seed"] != cell["seed"] or todo[i]["model"] != cell["model"]):
                    done_grads.append(grads.submit(run_gradnorms, pending, worker_argv))  # one process per group
                    pending = []
            for future in done_grads:
                future.result()
    print(report(args))
    print(f"results in {args.output_dir}")

if __name__ == "__main__":
    main()

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
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterator

from bench import common, study_report
from bench.study_report import ABLATION_NAMES, METHODS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPARSITIES = (0.95, 0.98, 0.99, 0.995)
ABLATIONS = dict(zip(ABLATION_NAMES, ("--shuffle_masks", "--invert_masks", "--reinit_weights")))
MODELS = {"resnet20": 1, "conv4": 0}  # name -> --width (0 = the builder's default)
GRADNORM_EXAMPLES = 512


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



def report(args: argparse.Namespace) -> str:
    """Rewrite study.json, study.md and study.png from the finished cells (and, for the recorded
    study, the README's and docs/benchmarks.md's sections); returns study.md's text."""
    r = study_report
    out = os.path.join(ROOT, args.output_dir)
    rows = collect(args)
    summary, comps = r.summarize(rows), r.comparisons(rows)
    total = sum(1 for _ in cells(args))
    settings = {k: v for k, v in vars(args).items() if k not in ("report_only", "quick", "commit", "gradnorm_worker")}
    cpus = sorted({row["cpu"] for row in rows if row["cpu"]}) or [common.machine()["cpu"]]
    with open(os.path.join(out, "study.json"), "w") as f:
        json.dump({"settings": settings, "machine": common.machine(), "cpus": cpus, "cells_done": len(rows),
                   "cells_total": total, "summary": summary, "comparisons": comps, "rows": rows}, f, indent=1)
    test = f"the first {args.test_limit} test images" if args.test_limit else "the full 10,000-image test set"
    found, dense = r.findings(summary, comps), r.dense_and_compute(rows)
    text = (f"{len(rows)} of {total} cells done. Recipe: {args.epochs} epochs on {args.train_limit:,} training "
            f"images, batch {args.batch_size}, SGD lr {args.lr} ×0.1 at 50% and 75%, momentum 0.9, weight decay "
            f"5e-4, no augmentation; accuracy on {test}. CPU: {', '.join(cpus)}. {dense}\n"
            f"Final test accuracy (%), mean ± std over seeds:\n\n{r.compact_markdown(summary)}\n"
            f"Sanity-check ablations, final test accuracy (%):\n\n{r.ablation_markdown(summary)}\n"
            f"Paired differences (same seed, final test accuracy; 'yes' = paired t-test at 5% and at least "
            f"{r.MIN_DIFFERENCE * 100:g} point):\n\n{r.comparison_markdown(comps)}\n{found}")
    with open(os.path.join(out, "study.md"), "w") as f:
        f.write(text)
    r.plot(summary, args, os.path.join(out, "study.png"))
    if os.path.normpath(args.output_dir) == os.path.normpath(parse_args([]).output_dir):  # the recorded study
        section = (f"{len(rows)} of {total} cells done ({', '.join(cpus)}). {dense}\n"
                   f"Final test accuracy (%) on {test}, mean ± std over seeds:\n\n{r.compact_markdown(summary)}\n"
                   f"Sanity checks, final test accuracy (%):\n\n"
                   f"{r.ablation_markdown(summary) or 'none finished yet.' + chr(10)}\n"
                   f"What agrees and what does not (a difference counts when a paired t-test over the seeds "
                   f"rejects equality at 5% and it is at least {r.MIN_DIFFERENCE * 100:g} point):\n\n"
                   f"{found or 'nothing to say yet (a comparison needs two seeds).' + chr(10)}\n")
        figure = "bench/results/study_converged/study.png"
        r.update_readme(section + f"![study]({figure})\n\n", os.path.join(ROOT, "README.md"))
        r.update_readme(section + f"![study](../{figure})\n\n" + r.comparison_markdown(comps) + "\n"
                        + r.in_words(comps) + "\n", os.path.join(ROOT, "docs", "benchmarks.md"))
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

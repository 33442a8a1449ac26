"""The paper's claim at convergence on Fashion-MNIST: accuracy vs sparsity per method, plus the sanity checks.

resnet20 (width 1, where gradient flow matters) trained to convergence on 10,000 Fashion-MNIST
images (dense >= 88% on the full 10,000-image test set): GraSP, SNIP, SynFlow and random at
95-99.5% sparsity and a dense baseline, 3 seeds; the ablations of Frankle et al. (2021) for
GraSP and SNIP at 98%: layerwise shuffle (= random masks at the method's per-layer
densities), invert, reinitialize; and the methods that came after GraSP (issue 19: Iter-SNIP,
FORCE, ProsPr, NTK-SAP, PHEW and random at ERK densities, ``random_erk``) at 98-99.5%, same
recipe. Every cell is one ``python -m train.run`` subprocess (``bench/study_cells.py``).
Cells whose ``results.json`` exists are skipped and a killed cell resumes from its last epoch
(exactly), so rerunning the same command resumes the study, and running the default command
after the first 69 cells were committed runs only the later methods' cells; ``--commit``
commits each finished cell (config, masks, metrics, results, attempts, gradient norm,
connectivity) so that the next session continues it. ``study.md`` / ``study.json`` /
``study.png`` are rewritten at the end: mean ± std over seeds (each seed where they disagree),
FLOP density and effective sparsity, paired per-seed differences (same seed = same
initialization and data order for every method), findings, and the CPU they ran on.

    python bench/study_fashion_mnist.py --commit        # the full study (resumable)
    python bench/study_fashion_mnist.py --commit --methods= --ablations= --no_dense   # only the later methods
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

if __package__ in (None, ""):  # run as `python bench/<script>.py`: bench/ is not installed, import it from here
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import common, study_findings, study_report
from bench.study_cells import ABLATIONS, MODELS, ROOT, cells, collect, commit_cell, measure, needs_measuring, run_cell
from bench.study_report import LATER_METHODS, METHODS

SPARSITIES = (0.95, 0.98, 0.99, 0.995)
LATER_SPARSITIES = (0.98, 0.99, 0.995)


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
    p.add_argument("--later_methods", default=",".join(LATER_METHODS),
                   help="issue 19's methods, at --later_sparsities ('' = none)")
    p.add_argument("--later_sparsities", default=",".join(map(str, LATER_SPARSITIES)))
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
    p.add_argument("--measure_worker", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.output_dir = tempfile.mkdtemp(prefix="study_quick_")
        args.models, args.methods, args.sparsities, args.ablations = "conv4", "grasp,random", "0.98", "invert"
        args.ablation_methods, args.later_methods = "grasp", ""
        args.seeds, args.epochs, args.train_limit, args.no_dense, args.test_limit = 1, 1, 256, True, 200
    return args


def report(args: argparse.Namespace) -> str:
    """Rewrite study.json, study.md and study.png from the finished cells (and, for the recorded
    study, the README's and docs/benchmarks.md's sections); returns study.md's text.

    The recorded study (the default ``--output_dir``) is always reported over its whole default
    grid, so a run of a few cells (``--later_methods=force``) never shrinks the committed tables.
    """
    r, f = study_report, study_findings
    recorded = os.path.normpath(args.output_dir) == os.path.normpath(parse_args([]).output_dir)
    grid = parse_args([]) if recorded else args
    out = os.path.join(ROOT, args.output_dir)
    rows = collect(grid)
    summary, comps = r.summarize(rows), r.comparisons(rows)
    total = sum(1 for _ in cells(grid))
    settings = {k: v for k, v in vars(grid).items() if k not in ("report_only", "quick", "commit", "measure_worker")}
    cpus = sorted({row["cpu"] for row in rows if row["cpu"]}) or [common.machine()["cpu"]]
    with open(os.path.join(out, "study.json"), "w") as fh:
        json.dump({"settings": settings, "machine": common.machine(), "cpus": cpus, "cells_done": len(rows),
                   "cells_total": total, "summary": summary, "comparisons": comps, "rows": rows}, fh, indent=1)
    test = f"the first {args.test_limit} test images" if args.test_limit else "the full 10,000-image test set"
    found, dense = f.findings(summary, comps, rows), f.dense_and_compute(rows)
    seeds = f"each seed's value follows where they lie more than {r.SPREAD * 100:g} points apart"
    like = (f"What the masks leave connected (FLOP density = kept multiply-adds / dense; effective sparsity counts "
            f"weights on no input-to-output path as removed; dead = output channels and units with no weight; "
            f"means over seeds; empty layers = masked weights pruned entirely, per seed; blind classes = the "
            f"classifier's outputs left without a weight, per seed):\n\n{r.connectivity_markdown(summary)}\n")
    text = (f"{len(rows)} of {total} cells done. Recipe: {args.epochs} epochs on {args.train_limit:,} training "
            f"images, batch {args.batch_size}, SGD lr {args.lr} ×0.1 at 50% and 75%, momentum 0.9, weight decay "
            f"5e-4, no augmentation; accuracy on {test}. CPU: {', '.join(cpus)}. {dense}\n"
            f"Final test accuracy (%), mean ± std over seeds ({seeds}):\n\n{r.compact_markdown(summary)}\n{like}"
            f"Sanity-check ablations, final test accuracy (%):\n\n{r.ablation_markdown(summary)}\n"
            f"Paired differences (same seed, final test accuracy; 'yes' = paired t-test at 5% and at least "
            f"{r.MIN_DIFFERENCE * 100:g} point):\n\n{r.comparison_markdown(comps)}\n{found}")
    with open(os.path.join(out, "study.md"), "w") as fh:
        fh.write(text)
    r.plot(summary, args, os.path.join(out, "study.png"))
    if recorded:
        section = (f"{len(rows)} of {total} cells done ({', '.join(cpus)}). {dense}\n"
                   f"Final test accuracy (%) on {test}, mean ± std over seeds ({seeds}):\n\n"
                   f"{r.compact_markdown(summary)}\n{like}"
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


def measure_worker(dirs: list[str], args: argparse.Namespace) -> None:
    """Measure the cells in ``dirs`` (``study_cells.measure``; its own process: TensorFlow stays out of the driver)."""
    for cell in cells(args):
        if cell["dir"] in dirs and needs_measuring(cell):
            measure(cell, args)


def run_measure(dirs: list[str], argv: list[str]) -> None:
    """:func:`measure_worker` for ``dirs`` in a fresh Python process."""
    if dirs:
        subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--measure_worker", *dirs], cwd=ROOT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.measure_worker:
        measure_worker(args.measure_worker, args)
        return
    os.makedirs(os.path.join(ROOT, args.output_dir), exist_ok=True)
    if not args.report_only:
        all_cells = list(cells(args))
        todo = [c for c in all_cells if not os.path.exists(os.path.join(ROOT, c["dir"], "results.json"))]
        worker_argv = [a for a in argv if a not in ("--quick", "--commit")] + ([
            f"--output_dir={args.output_dir}", f"--models={args.models}", f"--methods={args.methods}",
            f"--sparsities={args.sparsities}", f"--ablations={args.ablations}",
            f"--ablation_methods={args.ablation_methods}", f"--later_methods={args.later_methods}",
            f"--seeds={args.seeds}", f"--epochs={args.epochs}", f"--train_limit={args.train_limit}",
            f"--test_limit={args.test_limit}", f"--batch_size={args.batch_size}", f"--lr={args.lr}"] + (
            ["--no_dense"] if args.no_dense else []) if args.quick else [])
        backlog = [c for c in all_cells if c not in todo and needs_measuring(c)]
        print(f"{len(todo)} of {len(all_cells)} cells to run ({len(all_cells) - len(todo)} done), {args.jobs} at a "
              f"time; results in {args.output_dir}", flush=True)
        from concurrent.futures import ThreadPoolExecutor

        t0, finished = time.perf_counter(), 0
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            runs = {c["dir"]: pool.submit(run_cell, c, args) for c in todo}
            for i, cell in enumerate(todo, 1):  # in cell order; the pool keeps args.jobs runners busy
                label = (f"{cell['model']} {cell['method']} {cell['sparsity']:g}"
                         f"{' ' + cell['ablation'] if cell['ablation'] else ''} seed {cell['seed']}")
                try:
                    seconds = runs[cell["dir"]].result()
                    run_measure([cell["dir"]] if needs_measuring(cell) else [], worker_argv)
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
        if backlog:  # after the new cells: finished cells' gradient norm / connectivity from their masks
            print(f"measuring {len(backlog)} finished cells' masks", flush=True)
            run_measure([c["dir"] for c in backlog], worker_argv)
            for cell in backlog if args.commit else []:
                commit_cell(cell)
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

"""Regenerate every committed figure in docs/figures/ with its documented command, or check that they match.

Each figure is the output of the ``python -m train.analyze`` command that docs/analysis.md and
the README print beside it (``curves`` and ``compare`` first run the ``train.run`` commands they
read). ``--check`` runs them all into a temporary directory and compares every CSV with the
committed one, byte for byte; it exits 1 naming each figure whose CSV differs, so a figure can
never silently drift from its command. Runs are bit-reproducible on one CPU model, so a check
on another CPU model can differ in the last digits (the committed figures say where they ran:
docs/analysis.md).

    python bench/figures.py                   # rewrite docs/figures/ (about 10 minutes on 2 cores)
    python bench/figures.py --check           # rerun into a temp dir and compare the CSVs
    python bench/figures.py --only=layers     # one figure (gradnorm, layers, curves, compare)
"""
from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES_DIR = os.path.join(ROOT, "docs", "figures")
RUN = ("--dataset=fashion_mnist", "--model=conv4", "--train_limit=5000")


def _runs(name: str) -> list[tuple[list[str], str]]:
    """The ``train.run`` flags and output subdirectory of every run the figure reads."""
    if name == "curves":  # GraSP and SNIP at 98%, 8 epochs on 5,000 images
        return [([*RUN, "--epochs=8", f"--method={m}", "--sparsity=0.98", "--seed=0"], f"{m}_98")
                for m in ("grasp", "snip")]
    if name == "compare":  # dense, and GraSP/SNIP/random at 90% and 98%, 2 epochs, 2 seeds
        runs = []
        for seed in (0, 1):
            runs.append(([*RUN, "--epochs=2", "--method=none", f"--seed={seed}"], f"compare/none_s{seed}"))
            runs += [([*RUN, "--epochs=2", f"--method={m}", f"--sparsity={s}", f"--seed={seed}"],
                      f"compare/{m}_{s}_s{seed}") for m in ("grasp", "snip", "random") for s in ("0.9", "0.98")]
        return runs
    return []


def analyze_args(name: str, runs_dir: str) -> list[str]:
    """The ``train.analyze`` arguments of figure ``name`` (its runs under ``runs_dir``)."""
    return {
        "gradnorm": ["gradnorm", "--model=conv4", "--trials=5", "--sparsities=0.8,0.9,0.95,0.98,0.99",
                     "--limit=256"],
        "layers": ["layers", "--model=resnet20", "--width=1", "--methods=grasp,snip,random", "--sparsity=0.95"],
        "curves": ["curves", f"--runs={os.path.join(runs_dir, 'grasp_98')},{os.path.join(runs_dir, 'snip_98')}"],
        "compare": ["compare", f"--runs={os.path.join(runs_dir, 'compare')}"],
    }[name]


FIGURES = ("gradnorm", "layers", "curves", "compare")


def make(name: str, output_dir: str, runs_dir: str) -> None:
    """Run figure ``name``'s commands, writing its files into ``output_dir``."""
    for flags, sub in _runs(name):
        out = os.path.join(runs_dir, sub)
        if not os.path.exists(os.path.join(out, "results.json")):
            subprocess.run([sys.executable, "-m", "train.run", *flags, f"--output_dir={out}"], cwd=ROOT,
                           check=True, stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-m", "train.analyze", *analyze_args(name, runs_dir),
                    f"--output_dir={output_dir}"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def differing_csvs(name: str, fresh_dir: str) -> list[str]:
    """The CSV files of figure ``name`` whose committed copy differs from ``fresh_dir``'s (or is missing)."""
    committed = os.path.join(FIGURES_DIR, name)
    names = sorted({f for d in (committed, fresh_dir) if os.path.isdir(d) for f in os.listdir(d)
                    if f.endswith(".csv")})
    return [f for f in names if not (os.path.exists(os.path.join(committed, f)) and os.path.exists(
        os.path.join(fresh_dir, f)) and filecmp.cmp(os.path.join(committed, f), os.path.join(fresh_dir, f),
                                                     shallow=False))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="rerun into a temp dir and compare with the committed CSVs")
    p.add_argument("--only", default=",".join(FIGURES), help="comma-separated, from: " + ",".join(FIGURES))
    p.add_argument("--runs_dir", default=None, help="where the train.run runs go (default: a temp dir; "
                   "existing finished runs there are reused)")
    args = p.parse_args(argv)
    names = args.only.split(",")
    bad = [n for n in names if n not in FIGURES]
    if bad:
        p.error(f"--only={args.only}: unknown figure(s) {', '.join(bad)}; choose from {', '.join(FIGURES)}")
    work = tempfile.mkdtemp(prefix="figures_")
    runs_dir = args.runs_dir or os.path.join(work, "runs")
    failed = []
    try:
        for name in names:
            out = os.path.join(work, name) if args.check else os.path.join(FIGURES_DIR, name)
            print(f"{name}: running its command ...", flush=True)
            make(name, out, runs_dir)
            if args.check:
                diff = differing_csvs(name, out)
                print(f"{name}: " + ("matches" if not diff else "DIFFERS in " + ", ".join(diff)), flush=True)
                failed += [f"{name}/{f}" for f in diff]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failed:
        print(f"error: committed figure CSVs differ from what their commands write: {', '.join(failed)}; "
              "rerun `python bench/figures.py` and commit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

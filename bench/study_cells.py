"""The converged study's cells: the grid, one training run per cell (every attempt timed), and what is read back.

A cell is one ``python -m train.run`` subprocess writing ``<output_dir>/runs/<model>/<cell>_s<seed>``
(paths relative to the repository). Each attempt at a cell (a killed run, then its
resumption) is recorded in the cell's ``attempts.json`` before it starts and when it ends; an
attempt whose driver died is closed from its log's last write, so the study's compute counts
every attempt. After training, one process per batch of cells measures each cell's masks on
its initial model: the gradient norm relative to the dense net (``gradnorm.json``) and, for
cells whose ``results.json`` predates them or lacks effective sparsity, FLOP density, effective
sparsity and dead channels (``connectivity.json``, from ``grasp_tf.sparsity_report``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Iterator

from bench.study_report import ABLATION_NAMES, CONNECTIVITY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ABLATIONS = dict(zip(ABLATION_NAMES, ("--shuffle_masks", "--invert_masks", "--reinit_weights")))
MODELS = {"resnet20": 1, "conv4": 0}  # name -> --width (0 = the builder's default)
METHOD_FLAGS = {  # any other cell: --method=<its method>
    "random_erk": ["--method=random", "--densities=erk"],
    # ProsPr as mil-ad/prospr's cli.py runs it by default (the plain "prospr" cells: its README's call)
    "prospr_cli": ["--method=prospr", "--inner_lr=0.1", "--inner_momentum=0", "--new_data_in_inner=false"],
}
GRADNORM_EXAMPLES = 512
ATTEMPTS = "attempts.json"
CELL_FILES = ("config.json", "masks.npz", "metrics.csv", "pruning.json", "results.json", "gradnorm.json",
              "connectivity.json", ATTEMPTS)


def _names(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def cells(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Every cell, seed-major: per model the dense baseline, the method grid, the ablations, then the later methods."""
    grid = [(m, float(s), None) for s in _names(args.sparsities) for m in _names(args.methods)]
    grid += [(m, float(s), a) for s in _names(args.ablation_sparsities) for m in _names(args.ablation_methods)
             for a in _names(args.ablations)]
    grid += [(m, float(s), None) for s in _names(args.later_sparsities) for m in _names(args.later_methods)]
    for seed in range(args.seeds):
        for model in _names(args.models):
            for method, sparsity, ablation in ([] if args.no_dense else [("none", 0.0, None)]) + grid:
                name = "dense" if method == "none" else f"{method}_{sparsity:g}" + (f"_{ablation}" if ablation else "")
                yield {"model": model, "width": MODELS[model], "method": method, "sparsity": sparsity,
                       "ablation": ablation, "seed": seed,
                       "dir": os.path.join(args.output_dir, "runs", model, f"{name}_s{seed}")}


def command(cell: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The ``train.run`` command line of one cell."""
    return ([sys.executable, "-m", "train.run", "--dataset=fashion_mnist", f"--model={cell['model']}",
             f"--width={cell['width']}", *METHOD_FLAGS.get(cell["method"], [f"--method={cell['method']}"]),
             f"--sparsity={cell['sparsity']}", f"--epochs={args.epochs}", f"--train_limit={args.train_limit}",
             f"--seed={cell['seed']}", f"--batch_size={args.batch_size}", f"--lr={args.lr}",
             f"--test_limit={args.test_limit}", "--augment=false", f"--output_dir={cell['dir']}"]
            + ([ABLATIONS[cell["ablation"]]] if cell["ablation"] else []))


def read_attempts(cell: dict[str, Any]) -> list[dict[str, Any]]:
    """The cell's recorded attempts (``[]`` if none): ``{"started": unix time, "seconds": float or None, ...}``."""
    path = os.path.join(ROOT, cell["dir"], ATTEMPTS)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write_attempts(cell: dict[str, Any], attempts: list[dict[str, Any]]) -> None:
    """Replace ``attempts.json`` atomically (a crash leaves the old or the new list, never half of one)."""
    path = os.path.join(ROOT, cell["dir"], ATTEMPTS)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(attempts, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def start_attempt(cell: dict[str, Any]) -> list[dict[str, Any]]:
    """Record a new attempt as started now, first closing one left open by a driver that died.

    An open attempt (``seconds`` None) ran until its process last wrote to the cell's log
    (appended to by every attempt), so it ends at the log's modification time.
    """
    os.makedirs(os.path.join(ROOT, cell["dir"]), exist_ok=True)
    attempts = read_attempts(cell)
    if attempts and attempts[-1]["seconds"] is None:
        log = os.path.join(ROOT, cell["dir"] + ".log")
        last = attempts[-1]
        end = os.path.getmtime(log) if os.path.exists(log) else last["started"]
        last.update(seconds=max(0.0, end - last["started"]), returncode=None, closed="from the log's last write")
    attempts.append({"started": time.time(), "seconds": None})
    _write_attempts(cell, attempts)
    return attempts


def run_cell(cell: dict[str, Any], args: argparse.Namespace) -> float:
    """Train one cell with the runner in a subprocess (resumes a killed one); returns this attempt's seconds."""
    attempts = start_attempt(cell)
    t0 = time.perf_counter()
    returncode = None
    try:
        with open(os.path.join(ROOT, cell["dir"] + ".log"), "a") as log:
            returncode = subprocess.run(command(cell, args), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    finally:  # also on Ctrl-C: the attempt's time is kept
        attempts[-1].update(seconds=time.perf_counter() - t0, returncode=returncode)
        _write_attempts(cell, attempts)
    if returncode:
        raise subprocess.CalledProcessError(returncode, command(cell, args))
    return attempts[-1]["seconds"]


def _read(base: str, name: str) -> Any:
    path = os.path.join(base, name)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _incomplete(results: dict[str, Any]) -> bool:
    """results.json predates the connectivity fields, or has no effective sparsity (a grasp_tf before it
    counted masks that cut every path as 100% effective sparsity left the field null)."""
    found = results.get("sparsity", {}).get("global", {})
    return "flop_density" not in found or found.get("effective_sparsity") is None


def connectivity(results: dict[str, Any], base: str) -> dict[str, Any]:
    """FLOP density, effective sparsity and dead-channel fraction: from results.json, else connectivity.json."""
    found = results.get("sparsity", {}).get("global", {})
    if _incomplete(results):
        found = _read(base, "connectivity.json") or found
    return {k: found.get(k) for k in CONNECTIVITY}


def mask_counts(base: str) -> dict[str, int | None]:
    """From the cell's ``masks.npz``: masked weights that keep no entry (``empty_layers``, a layer pruned
    away), and the classifier's outputs (``classes``) of which ``blind_classes`` keep no weight.

    The classifier is the last mask, a 2-D Dense kernel, as in every study model (masks are saved in
    the model's weight order). A class with no weight has a constant logit, its bias.
    """
    import numpy as np  # numpy only: the driver stays free of TensorFlow

    path = os.path.join(base, "masks.npz")
    if not os.path.exists(path):
        return {"empty_layers": None, "blind_classes": None, "classes": None}
    with np.load(path) as npz:
        masks = [npz[k] for k in npz.files]  # each entry decompressed once
    dense = bool(masks) and masks[-1].ndim == 2
    return {"empty_layers": sum(1 for m in masks if not m.any()),
            "blind_classes": int((~masks[-1].any(axis=0)).sum()) if dense else None,
            "classes": int(masks[-1].shape[1]) if dense else None}


def collect(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per finished cell: accuracies, times (every attempt), gradient norm, connectivity, mask counts, CPU."""
    rows = []
    for cell in cells(args):
        base = os.path.join(ROOT, cell["dir"])
        res = _read(base, "results.json")
        if res is None:
            continue
        gradnorm = _read(base, "gradnorm.json")
        closed = [a["seconds"] for a in read_attempts(cell) if a.get("seconds") is not None]
        rows.append({k: cell[k] for k in ("model", "method", "sparsity", "ablation", "seed")} | {
            "final_test_accuracy": res["final_test_accuracy"], "best_test_accuracy": res["best_test_accuracy"],
            "scoring_seconds": res["scoring_seconds"], "wall_seconds": sum(closed) if closed else res["wall_seconds"],
            "attempts": len(closed) or None, "relative_gradient_norm": gradnorm and gradnorm["relative"],
            "cpu": res.get("machine", {}).get("cpu")} | (
                connectivity(res, base) | mask_counts(base) if cell["method"] != "none" else {}))
    return rows


def needs_measuring(cell: dict[str, Any]) -> bool:
    """A finished pruned cell without its gradient norm or its connectivity fields."""
    base = os.path.join(ROOT, cell["dir"])
    res = _read(base, "results.json")
    if cell["method"] == "none" or res is None:
        return False
    return not os.path.exists(os.path.join(base, "gradnorm.json")) or (
        _incomplete(res) and not os.path.exists(os.path.join(base, "connectivity.json")))


def measure(cell: dict[str, Any], args: argparse.Namespace) -> None:
    """Write the cell's missing ``gradnorm.json`` / ``connectivity.json`` from its masks on its initial model."""
    import keras
    import numpy as np

    import grasp_tf
    import models
    from grasp_tf import analysis
    from train import artifacts, data

    base = os.path.join(ROOT, cell["dir"])
    keras.backend.clear_session()
    keras.utils.set_random_seed(cell["seed"])
    ds = data.load("fashion_mnist", batch_size=128, seed=cell["seed"], augment=False, train_limit=args.train_limit)
    init_seed = cell["seed"] + (1 if cell["ablation"] == "reinit" else 0)  # train.run --reinit_weights
    model = models.build(cell["model"], ds.num_classes, ds.input_shape, width=cell["width"] or None, seed=init_seed)
    masks = artifacts.load_masks(os.path.join(base, "masks.npz"))
    if not os.path.exists(os.path.join(base, "gradnorm.json")):
        dense, pruned = analysis.gradient_norms(model, ds.train, [None, masks], max_examples=GRADNORM_EXAMPLES)
        artifacts.write_json(os.path.join(base, "gradnorm.json"), {
            "dense": dense, "pruned": pruned, "relative": pruned / dense, "examples": GRADNORM_EXAMPLES,
            "kept": sum(int(np.count_nonzero(m)) for m in masks.values())})
    results = _read(base, "results.json")
    connectivity_json = os.path.join(base, "connectivity.json")
    if _incomplete(results) and not os.path.exists(connectivity_json):
        found = grasp_tf.sparsity_report(grasp_tf.apply_masks(model, masks))["global"]
        if all(k in found for k in CONNECTIVITY):  # a grasp_tf without them: leave the columns empty
            artifacts.write_json(connectivity_json,
                                 {k: found[k] for k in CONNECTIVITY} | {"from": "masks.npz on the initial model"})


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

"""bench/scoring.py --quick runs as a user runs it and writes a complete, sane record."""
import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.subprocess
def test_scoring_quick_writes_every_measurement(tmp_path):
    proc = subprocess.run([sys.executable, "bench/scoring.py", "--quick", f"--output_dir={tmp_path}"], cwd=ROOT,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "scoring_quick.json").read_text())
    assert [r["op"] for r in record["rows"]] == ["step", "grasp", "snip"]
    assert [r["n"] for r in record["scaling"]] == [100, 200]
    for row in record["rows"] + record["scaling"]:
        assert all(math.isfinite(row[k]) and row[k] > 0 for k in ("first_s", "warm_s", "step_warm_s"))
    assert record["rows"][0]["ratio_to_step"] == 1.0
    assert record["machine"]["nproc"] >= 1
    markdown = (tmp_path / "scoring_quick.md").read_text()
    assert "python bench/scoring.py --quick" in markdown and "| lenet300 | grasp |" in markdown


def test_time_to_masks_counts_the_exact_removal_and_brackets_the_call_with_steps():
    from bench import masks_timing

    row = masks_timing.measure_masks("lenet300", "iter_snip", {"rounds": 2}, sparsity=0.9, steps=2)
    assert row["total"] - row["kept"] == math.floor(row["total"] * 0.9)
    assert len(row["steps_before_s"]) == len(row["steps_after_s"]) == 2
    assert row["ratio_to_step"] == pytest.approx(row["first_s"] / row["step_warm_s"]) and row["first_s"] > 0


def test_methods_benchmark_resumes_and_records_a_failing_method_in_one_line(tmp_path, monkeypatch):
    from bench import common, masks_timing, scoring

    calls, failing = [], {"vgg19/synflow"}

    def worker(script, args):
        model, method, options = args[1], args[2], json.loads(args[3])
        calls.append((model, method))
        if f"{model}/{method}" in failing:
            raise RuntimeError("bench/scoring.py failed:\nTraceback ...\nValueError: SynFlow overflowed")
        return {"model": model, "method": method, "options": options, "first_s": 2.0, "step_warm_s": 1.0,
                "ratio_to_step": 2.0, "peak_mib": 1.0, "kept": 2, "total": 100}

    monkeypatch.setattr(common, "run_worker", worker)
    def run():
        scoring.main(["--parts=methods", f"--output_dir={tmp_path}"])

    run()
    every = len(common.MODELS) * len(masks_timing.method_variants())
    assert len(calls) == every and ("vgg19", "synflow") in calls
    markdown = (tmp_path / "scoring_methods.md").read_text()
    assert "| vgg19 | synflow | failed: ValueError: SynFlow overflowed |" in markdown
    assert "| resnet32 | random (densities=erk) | 2.0 | 2 |" in markdown
    calls.clear()
    failing.clear()
    run()  # the rerun measures only what failed
    assert calls == [("vgg19", "synflow")]
    rows = json.loads((tmp_path / "scoring_methods.json").read_text())["rows"]
    assert len(rows) == every and not any("error" in r for r in rows)


def test_study_tables_aggregate_seeds_into_mean_and_std():
    from bench import study_report as study

    rows = [{"model": "conv4", "method": m, "sparsity": s, "seed": seed, "final_test_accuracy": acc,
             "best_test_accuracy": acc, "scoring_seconds": 1.0, "wall_seconds": 2.0,
             "relative_gradient_norm": None if m == "none" else 0.5}
            for m, s, accs in (("none", 0.0, (0.60, 0.70)), ("grasp", 0.98, (0.40, 0.50)), ("snip", 0.98, (0.30, 0.30)))
            for seed, acc in enumerate(accs)]
    summary = {(e["method"], e["sparsity"]): e for e in study.summarize(rows)}
    assert summary[("grasp", 0.98)]["seeds"] == 2
    assert math.isclose(summary[("grasp", 0.98)]["final_test_accuracy"], 0.45)
    assert math.isclose(summary[("grasp", 0.98)]["final_test_accuracy_std"], math.sqrt(0.005))  # ddof=1
    assert summary[("none", 0.0)]["relative_gradient_norm"] is None
    compact = study.compact_markdown(list(summary.values())).splitlines()
    assert compact[0] == "| model (dense acc.) | sparsity | grasp | snip |"
    assert compact[2:] == ["| conv4 (65.0 ± 7.1) | 98% | 45.0 ± 7.1 | 30.0 ± 0.0 |"]
    (c,) = study.comparisons(rows)  # GraSP - SNIP, seed by seed: +0.10, +0.20
    assert c["a"][1] == "grasp" and c["b"][1] == "snip" and c["n"] == 2
    assert math.isclose(c["mean"], 0.15) and math.isclose(c["std"], math.sqrt(0.005))
    assert math.isclose(c["t"], 3.0) and not c["clear"]  # t(1) must exceed 12.7


def _study_rows(cells):
    """Rows as the study collects them, from ``(method, sparsity, ablation, [accuracy per seed])``."""
    return [{"model": "resnet20", "method": m, "sparsity": s, "ablation": a, "seed": seed, "final_test_accuracy": acc,
             "best_test_accuracy": acc, "scoring_seconds": 1.0, "wall_seconds": 180.0,
             "relative_gradient_norm": None if m == "none" else {"grasp": 0.5, "snip": 0.2}.get(m, 0.3), "cpu": "x"}
            for m, s, a, accs in cells for seed, acc in enumerate(accs)]


def test_study_findings_set_the_results_beside_the_paper_and_frankle():
    from bench import study_findings as findings
    from bench import study_report as study

    rows = _study_rows([
        ("none", 0.0, None, (0.897, 0.899, 0.881)),
        ("grasp", 0.98, None, (0.86, 0.85, 0.87)),
        ("random", 0.98, None, (0.83, 0.82, 0.84)),       # GraSP +3 points every seed: a clear gain
        ("snip", 0.98, None, (0.85, 0.86, 0.86)),         # +1, -1, +1: no clear difference
        ("synflow", 0.98, None, (0.87, 0.86, 0.88)),      # synflow leads by 1 point every seed
        ("grasp", 0.98, "shuffle", (0.855, 0.846, 0.866)),  # within a point: Frankle et al. agree
        ("snip", 0.98, "invert", (0.10, 0.10, 0.11)),     # collapses: they found a loss too
        ("grasp", 0.98, "invert", (0.80, 0.79, 0.81)),    # a clear loss where they found none
    ])
    text = findings.findings(study.summarize(rows), study.comparisons(rows))
    random_line, snip_line, lead, norms, frankle = text.splitlines()
    # The paper's Table 1 gap at 98% (ResNet32): 88.81 - 85.90 on CIFAR-10, 58.43 - 50.92 on CIFAR-100.
    assert "98%: paper +2.9 / +7.5, here +3.0 ± 0.0 (a clear gain)" in random_line
    assert random_line.endswith("at 1 of 1 sparsities.")
    assert "98%: paper +1.3 / +3.6, here +0.3 ± 1.2 (no clear difference)" in snip_line
    assert snip_line.endswith("at 0 of 1 sparsities.")  # the paper's gap is >= 1 point: a gain was expected
    assert "SynFlow at 98% (-1.0 ± 0.0 points, a clear loss)" in lead
    assert "within the seed spread over SNIP at 98%" in lead
    assert "98%: GraSP 0.50 > SynFlow 0.30 > random 0.30 > SNIP 0.20" in norms
    assert "GraSP shuffled layerwise at 98%: -0.4 ± 0.1 points (no clear difference; they found no loss: agrees)" in frankle
    assert "SNIP inverted at 98%: -75.3 ± 0.6 points (a clear loss; they found loss: agrees)" in frankle
    assert "GraSP inverted at 98%: -6.0 ± 0.0 points (a clear loss; they found no loss: disagrees)" in frankle
    assert findings.dense_and_compute(rows) == (
        "Dense: resnet20 seed 0: 89.7%, resnet20 seed 1: 89.9%, resnet20 seed 2: 88.1% (every one ≥ 88%). "
        "Compute: 24 runs, 1.2 hours of `train.run` wall time on 2 CPU cores (3.0 min per run), counting every "
        "attempt of a resumed run (24 of them finished before attempts were recorded: for those, only the last "
        "process).\n")


def test_study_findings_wait_for_two_seeds():
    from bench import study_findings as findings
    from bench import study_report as study

    rows = _study_rows([("grasp", 0.98, None, (0.86,)), ("random", 0.98, None, (0.83,))])
    assert findings.findings(study.summarize(rows), study.comparisons(rows)) == ""
    assert "NOT all ≥ 88%" in findings.dense_and_compute(_study_rows([("none", 0.0, None, (0.89, 0.87))]))


def test_study_shows_each_seed_where_they_disagree_and_what_the_masks_leave_connected():
    from bench import study_report as study

    rows = _study_rows([("random", 0.995, None, (0.85, 0.10, 0.84)), ("grasp", 0.995, None, (0.78, 0.77, 0.79))])
    for r in rows:  # FLOP density, effective sparsity, dead channels as results.json["sparsity"]["global"] has them
        r.update(flop_density={"random": 0.005, "grasp": 0.02}[r["method"]] + r["seed"] * 0.001,
                 effective_sparsity=0.996, dead_channel_fraction=None if r["method"] == "random" else 0.25,
                 empty_layers={"random": 0, "grasp": r["seed"]}[r["method"]],
                 blind_classes={"random": r["seed"] * 3, "grasp": 0}[r["method"]], classes=10)
    summary = study.summarize(rows)
    # random: mean 59.67, std 43.02 (ddof=1), seeds 75 points apart: each one shown; GraSP's 2 points apart: not.
    assert study.compact_markdown(summary).splitlines()[2] == (
        "| resnet20 | 99.5% | 78.0 ± 1.0 | 59.7 ± 43.0 (seeds: 85.0, 10.0, 84.0) |")
    table = study.connectivity_markdown(summary).splitlines()
    assert table[0] == ("| model | sparsity | method | final test acc. (%) | FLOP density (%) | "
                        "effective sparsity (%) | dead channels (%) | empty layers (per seed) | "
                        "blind classes (per seed) |")
    assert table[2:] == ["| resnet20 | 99.5% | grasp | 78.0 ± 1.0 | 2.1 | 99.60 | 25.0 | 0, 1, 2 | 0, 0, 0 |",
                         "| resnet20 | 99.5% | random | 59.7 ± 43.0 (seeds: 85.0, 10.0, 84.0) | 0.6 | 99.60 | - | "
                         "0, 0, 0 | 0, 3, 6 |"]


def test_study_names_masks_that_prune_whole_layers_and_the_reference_that_refuses_them(tmp_path):
    import numpy as np

    from bench import study_cells
    from bench import study_findings as findings
    from bench import study_report as study

    np.savez(tmp_path / "masks.npz", a=np.zeros((3, 3), bool), b=np.eye(3, dtype=bool), c=np.zeros(4, bool))
    # a and c keep nothing; the last mask, c, is no Dense kernel, so the classifier is unknown
    assert study_cells.mask_counts(str(tmp_path)) == {"empty_layers": 2, "blind_classes": None, "classes": None}
    assert study_cells.mask_counts(str(tmp_path / "missing"))["empty_layers"] is None
    rows = _study_rows([("grasp", 0.99, None, (0.82, 0.83)), ("prospr", 0.99, None, (0.18, 0.47)),
                        ("snip", 0.99, None, (0.82, 0.82)), ("prospr_cli", 0.99, None, (0.80, 0.81))])
    for r in rows:
        r["empty_layers"] = {"grasp": 0, "prospr": 10 - 4 * r["seed"], "snip": r["seed"],
                             "prospr_cli": 2}[r["method"]]
    text = findings.findings(study.summarize(rows), study.comparisons(rows), rows)
    (line,) = [t for t in text.splitlines() if t.startswith("- **Masks that prune whole layers**")]
    assert ("SNIP at 99% (0, 1 layers by seed; test accuracy (%) 82.0 ± 0.0); ProsPr at 99% (10, 6 layers by seed; "
            "test accuracy (%) 32.5 ± 20.5 (seeds: 18.0, 47.0))") in line
    assert "GraSP at" not in line  # no seed emptied a layer
    assert line.count("keep_masks_health_check") == 1  # one sentence for both ProsPr settings
    assert line.endswith("ProsPr and ProsPr (cli.py settings): mil-ad/prospr's `keep_masks_health_check` asserts on such masks, so the reference "
                         "would have stopped there; grasp_tf keeps the masks (docs/criteria.md).")


def test_study_findings_state_each_later_papers_claim_and_whether_the_seeds_agree():
    from bench import study_findings as findings
    from bench import study_report as study

    rows = _study_rows([
        ("none", 0.0, None, (0.89, 0.89, 0.89)),
        ("grasp", 0.98, None, (0.85, 0.85, 0.85)), ("grasp", 0.995, None, (0.78, 0.77, 0.79)),
        ("snip", 0.98, None, (0.85, 0.86, 0.84)), ("snip", 0.995, None, (0.50, 0.45, 0.55)),
        ("force", 0.98, None, (0.86, 0.85, 0.85)), ("force", 0.995, None, (0.80, 0.80, 0.80)),
        ("ntk_sap", 0.98, None, (0.87, 0.87, 0.87)),
    ])
    text = findings.findings(study.summarize(rows), study.comparisons(rows), rows)
    force = next(line for line in text.splitlines() if line.startswith("- **FORCE**"))
    # FORCE − SNIP: 98% +1, -1, +1 points (mean 0.3, std 1.2); 99.5% +30, +35, +25 (std 5, t = 10.4 > t(2) = 4.30).
    # FORCE − GraSP: 98% +1, 0, 0 (std 0.6); 99.5% +2, +3, +1 (std 1, t = 3.46 < 4.30): no clear gain where due.
    assert force == (
        "- **FORCE**: de Jorge et al. (ICLR 2021): FORCE stays trainable at extreme sparsity, where SNIP and GraSP "
        "fail. Expected here: a clear gain at 99.5% (the highest sparsity run) and no clear loss below. resnet20, "
        "paired by seed (points): FORCE − SNIP: 98% +0.3 ± 1.2 (no clear difference), 99.5% +30.0 ± 5.0 (a clear "
        "gain); FORCE − GraSP: 98% +0.3 ± 0.6 (no clear difference), 99.5% +2.0 ± 1.0 (no clear difference). "
        "Agrees at 3 of 4 comparisons.")
    ntk = next(line for line in text.splitlines() if line.startswith("- **NTK-SAP**"))
    # NTK-SAP − GraSP +2 points every seed (std 0: a clear gain); − SNIP +2, +1, +3 (t = 3.46: not clear).
    assert "Expected here: a clear gain at every sparsity." in ntk
    assert ("NTK-SAP − SNIP: 98% +2.0 ± 1.0 (no clear difference); "
            "NTK-SAP − GraSP: 98% +2.0 ± 0.0 (a clear gain)") in ntk
    assert ntk.endswith("Agrees at 1 of 2 comparisons.")
    assert "ProsPr" not in text and "Iter-SNIP" not in text  # no rows, no claim


def test_paired_rule_takes_its_t_quantile_from_scipy_at_any_number_of_seeds():
    from bench import study_report as study

    # 8 seeds, GraSP − SNIP = -3.5, -2.5, ..., +3.5 points, shifted by +1.9: mean 1.9, std 2.449 (ddof=1),
    # t = 1.9 / (2.449 / √8) = 2.19: above the old code's 2.0 fallback for df > 5, below t(7) = 2.3646.
    accs = [0.80 + (i - 3.5) * 0.01 for i in range(8)]
    rows = _study_rows([("grasp", 0.98, None, [a + 0.019 for a in accs]), ("snip", 0.98, None, [0.80] * 8)])
    (c,) = study.comparisons(rows)
    assert c["n"] == 8 and math.isclose(c["mean"], 0.019) and math.isclose(c["std"], math.sqrt(6) / 100)
    assert math.isclose(c["t"], 1.9 / (math.sqrt(6) / math.sqrt(8)))
    assert math.isclose(c["t_critical"], 2.3646, abs_tol=1e-4) and not c["clear"]


def test_study_grid_adds_the_later_methods_without_renaming_a_committed_cell():
    from bench import study_cells, study_fashion_mnist

    args = study_fashion_mnist.parse_args([])
    grid = list(study_cells.cells(args))
    committed = os.path.join(ROOT, "bench", "results", "study_converged", "runs", "resnet20")
    on_disk = {n for n in os.listdir(committed) if os.path.exists(os.path.join(committed, n, "results.json"))}
    names = [os.path.basename(c["dir"]) for c in grid]
    assert len(grid) == 69 + 7 * 3 * 3 and on_disk <= set(names)  # every committed cell stays a cell: skipped
    later = [c for c in grid if c["method"] in study_fashion_mnist.LATER_METHODS]
    assert {(c["method"], c["sparsity"]) for c in later} == {
        (m, s) for m in ("iter_snip", "force", "prospr", "ntk_sap", "phew", "random_erk", "prospr_cli")
        for s in (0.98, 0.99, 0.995)}
    erk = next(c for c in later if c["method"] == "random_erk" and c["sparsity"] == 0.995 and c["seed"] == 2)
    assert os.path.basename(erk["dir"]) == "random_erk_0.995_s2"
    cmd = study_cells.command(erk, args)
    assert "--method=random" in cmd and "--densities=erk" in cmd and "--sparsity=0.995" in cmd
    assert "--method=force" in study_cells.command(next(c for c in later if c["method"] == "force"), args)
    cli = study_cells.command(next(c for c in later if c["method"] == "prospr_cli"), args)
    assert "--method=prospr" in cli and "--inner_lr=0.1" in cli and "--new_data_in_inner=false" in cli


def test_study_compute_counts_every_attempt_of_a_resumed_cell(tmp_path, monkeypatch):
    from bench import study_cells

    cell = {"model": "resnet20", "width": 1, "method": "snip", "sparsity": 0.98, "ablation": None, "seed": 0,
            "dir": str(tmp_path / "snip_0.98_s0")}
    os.makedirs(cell["dir"])
    # The first attempt's driver died: its attempt is open; its process last wrote the log 420 s after it started.
    (tmp_path / "snip_0.98_s0" / "attempts.json").write_text(json.dumps([{"started": 1000.0, "seconds": None}]))
    (tmp_path / "snip_0.98_s0.log").write_text("epoch 1 ...\n")
    os.utime(tmp_path / "snip_0.98_s0.log", (1420.0, 1420.0))
    # The second attempt (a stand-in for train.run) finishes the run; its results say only its own wall time.
    results = {"final_test_accuracy": 0.85, "best_test_accuracy": 0.85, "scoring_seconds": 4.0, "wall_seconds": 0.3,
               "sparsity": {"global": {}}}
    out = os.path.join(cell["dir"], "results.json")
    finish = f"import json, time; time.sleep(0.3); json.dump({results!r}, open({out!r}, 'w'))"
    monkeypatch.setattr(study_cells, "command", lambda c, a: [sys.executable, "-c", finish])
    seconds = study_cells.run_cell(cell, None)
    attempts = study_cells.read_attempts(cell)
    assert [a["seconds"] for a in attempts] == [420.0, seconds] and seconds >= 0.3
    assert attempts[0]["closed"] == "from the log's last write" and attempts[1]["returncode"] == 0
    monkeypatch.setattr(study_cells, "cells", lambda args: iter([cell]))
    (row,) = study_cells.collect(None)
    assert row["attempts"] == 2 and row["wall_seconds"] == 420.0 + seconds  # not results.json's 0.3 alone
    monkeypatch.setattr(study_cells, "command", lambda c, a: [sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(subprocess.CalledProcessError):
        study_cells.run_cell(cell, None)
    assert study_cells.read_attempts(cell)[-1]["returncode"] == 3  # a failed attempt is timed too


def test_study_measures_connectivity_where_results_json_lacks_it_and_reads_it_back(tmp_path):
    from bench import study_cells

    def cell(name, global_, files=()):
        d = tmp_path / name
        d.mkdir()
        (d / "results.json").write_text(json.dumps({"sparsity": {"global": global_}}))
        for f in files:
            (d / f).write_text(json.dumps({"relative": 1.0, "flop_density": 0.1, "effective_sparsity": 1.0,
                                           "dead_channel_fraction": 0.9}))
        return {"dir": str(d), "method": "prospr"}, json.loads((d / "results.json").read_text())

    full = {"flop_density": 0.2, "effective_sparsity": 0.99, "dead_channel_fraction": 0.5}
    c, res = cell("full", full, ["gradnorm.json"])
    assert not study_cells.needs_measuring(c) and study_cells.connectivity(res, c["dir"]) == full
    c, res = cell("old", {"kept": 3}, ["gradnorm.json"])  # from before the connectivity fields
    assert study_cells.needs_measuring(c) and study_cells.connectivity(res, c["dir"])["flop_density"] is None
    cut = dict(full, effective_sparsity=None)  # masks that cut every path, reported null by an older grasp_tf
    c, res = cell("cut", cut, ["gradnorm.json"])
    assert study_cells.needs_measuring(c)
    c, res = cell("cut_measured", cut, ["gradnorm.json", "connectivity.json"])
    assert not study_cells.needs_measuring(c)
    assert study_cells.connectivity(res, c["dir"]) == {"flop_density": 0.1, "effective_sparsity": 1.0,
                                                        "dead_channel_fraction": 0.9}


def test_study_names_the_classes_a_mask_leaves_without_a_weight_and_the_accuracy_that_allows(tmp_path):
    import numpy as np

    from bench import study_cells
    from bench import study_findings as findings
    from bench import study_report as study

    classifier = np.ones((4, 10), bool)
    classifier[:, [2, 5, 7]] = False  # three classes keep no weight
    classifier[0, 5] = True  # ... then one keeps a single weight: two are blind
    np.savez(tmp_path / "masks.npz", conv=np.ones((3, 3, 1, 4), bool), linear=classifier)
    assert study_cells.mask_counts(str(tmp_path)) == {"empty_layers": 0, "blind_classes": 2, "classes": 10}
    rows = _study_rows([("grasp", 0.99, None, (0.82, 0.83)), ("ntk_sap", 0.99, None, (0.30, 0.67)),
                        ("snip", 0.99, None, (0.55, 0.80))])
    for r in rows:
        r["classes"] = 10
        r["blind_classes"] = {"grasp": 0, "ntk_sap": 7 - 5 * r["seed"], "snip": 0}[r["method"]]
    summary = study.summarize(rows)
    (line,) = [t for t in findings.findings(summary, study.comparisons(rows), rows).splitlines()
               if t.startswith("- **Classes the classifier cannot see**")]
    # (C - k + 1) / C: seed 0 has 7 blind classes, so at most 4 of 10 can be right
    assert ("NTK-SAP at 99%: 7, 2 of 10 by seed, test accuracy 30.0, 67.0% (at most 40, 90%)." in line)
    assert "GraSP at" not in line and "SNIP at 99%:" not in line  # no seed of theirs is blind to a class
    assert line.endswith("The lowest accuracy of a seed whose classifier keeps a weight for every class: "
                         "55.0% (SNIP at 99%).")
    (ntk,) = [t for t in study.connectivity_markdown(summary).splitlines() if "| ntk_sap |" in t]
    assert ntk.endswith("| - | 7, 2 |")  # empty layers unknown here; blind classes per seed

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
    text = study.findings(study.summarize(rows), study.comparisons(rows))
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
    assert study.dense_and_compute(rows) == (
        "Dense: resnet20 seed 0: 89.7%, resnet20 seed 1: 89.9%, resnet20 seed 2: 88.1% (every one ≥ 88%). "
        "Compute: 24 runs, 1.2 hours of `train.run` wall time on 2 CPU cores (3.0 min per run).\n")


def test_study_findings_wait_for_two_seeds():
    from bench import study_report as study

    rows = _study_rows([("grasp", 0.98, None, (0.86,)), ("random", 0.98, None, (0.83,))])
    assert study.findings(study.summarize(rows), study.comparisons(rows)) == ""
    assert "NOT all ≥ 88%" in study.dense_and_compute(_study_rows([("none", 0.0, None, (0.89, 0.87))]))

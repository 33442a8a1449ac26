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
    from bench import study_fashion_mnist as study

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

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

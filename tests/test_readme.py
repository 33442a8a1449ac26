"""The README's usage example runs as written and does what its comments say."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_python_example_runs(tmp_path):
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        example = re.search(r"```python\n(.*?)```", f.read(), re.S).group(1)
    check = (
        "\nimport numpy as np\n"
        "r = grasp_tf.sparsity_report(pruned)['global']\n"
        "assert r['total'] - r['kept'] == int(np.floor(r['total'] * 0.98))\n"
        "assert os.path.exists('fmnist_sparse/sparsity.json')\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
    r = subprocess.run([sys.executable, "-c", "import os\n" + example + check], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "shuffle=True" not in r.stderr and "UserWarning" not in r.stderr, r.stderr[-3000:]
    printed = [float(line) for line in r.stdout.splitlines() if re.fullmatch(r"0\.\d+", line.strip())]
    assert printed and abs(printed[0] - 0.98) < 1e-4, r.stdout[-2000:]
    said = re.search(r"sparsity_report\(pruned\).*# (0\.\d+)…", example).group(1)  # what the comment says it prints
    assert repr(printed[0]).startswith(said), (said, printed[0])

"""Every constrained flag of the three CLIs, fed a bad value: exit 2, one line naming the flag, nothing created."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {k: v for k, v in os.environ.items() if k not in ("GRASP_TF_CRASH_AT", "TF_CPP_MIN_LOG_LEVEL")}

RUN = [  # (bad flags, the flag the message must name)
    (["--steps_per_epoch=-1"], "--steps_per_epoch="),
    (["--momentum=-1"], "--momentum="),
    (["--momentum=1"], "--momentum="),
    (["--train_limit=-5"], "--train_limit="),
    (["--test_limit=-1"], "--test_limit="),
    (["--width=-1"], "--width="),
    (["--samples_per_class=0", "--scoring_batch_size=0"], "--scoring_batch_size="),
    (["--samples_per_class=0", "--scoring_batches=0"], "--scoring_batches="),
    (["--seed=-1"], "--seed="),
    (["--seed=2147483647"], "--seed="),
    (["--samples_per_class=-1"], "--samples_per_class="),
    (["--num_draws=0"], "--num_draws="),
    (["--lr=-1"], "--lr="),
    (["--lr=0"], "--lr="),
    (["--lr_boundaries=1.5"], "--lr_boundaries="),
    (["--lr_boundaries=0.5,x"], "--lr_boundaries="),
    (["--lr_decay=0"], "--lr_decay="),
    (["--lr_step_epochs=-1"], "--lr_step_epochs="),
    (["--cpu_devices=-1"], "--cpu_devices="),
    (["--weight_decay=-1"], "--weight_decay="),
    (["--epochs=0"], "--epochs="),
    (["--epochs=ten"], "--epochs="),
    (["--batch_size=0"], "--batch_size="),
    (["--validation_split=1"], "--validation_split="),
    (["--validation_split=-0.1"], "--validation_split="),
    (["--sparsity=1.0"], "--sparsity="),
    (["--sparsity=-0.5"], "--sparsity="),
    (["--temperature=0"], "--temperature=0.0 is invalid for --method=grasp: must be a number > 0"),
    (["--chunk_size=-1"], "--chunk_size=-1 is invalid for --method=grasp"),
    # A method's options come from its declarations: one not taken by --method is an error, not ignored.
    (["--method=random", "--chunk_size=5"], "--chunk_size is not an option of --method=random"),
    (["--method=snip", "--reinit_dense"], "--reinit_dense is not an option of --method=snip (it takes "
                                          "--temperature, --reinit_kernels, --chunk_size)"),
    (["--method=synflow", "--rounds=0"], "--rounds=0 is invalid for --method=synflow: must be an integer >= 1"),
    # Issue 19's methods: a bad choice is named by absl's enum check, a bad number with its method.
    (["--method=iter_snip", "--schedule=cubic"], "--schedule=cubic: value should be one of <exponential|linear>"),
    (["--method=force", "--loss=mse"], "--loss=mse: value should be one of <logit_nll|cross_entropy>"),
    (["--method=prospr", "--inner_momentum=2"], "--inner_momentum=2.0 is invalid for --method=prospr"),
    (["--method=ntk_sap", "--epsilon=0"], "--epsilon=0.0 is invalid for --method=ntk_sap"),
    (["--method=random", "--densities=erk2"], "--densities=erk2: value should be one of <uniform|erk|er>"),
    (["--method=phew", "--rounds=3"], "--rounds is not an option of --method=phew"),
    (["--init=he"], "--init="),
    (["--scope=local"], "--scope="),
    (["--strategy=tpu"], "--strategy="),
    (["--sparsty=0.9"], "'sparsty'"),
    # Checked after flag parsing, before anything is created:
    (["--dataset=cifar11"], "--dataset='cifar11'"),
    (["--model=vgg99"], "--model='vgg99'"),
    (["--method=grasp2"], "--method='grasp2'"),
    (["--method=none", "--invert_masks"], "--invert_masks"),
    (["--data_dir=/nonexistent"], "Fashion-MNIST not found: looked for"),
]

ANALYZE = [
    (["gradnorm", "--trials=0"], "--trials="),
    (["gradnorm", "--width=-1"], "--width="),
    (["gradnorm", "--seed=-1"], "--seed="),
    (["gradnorm", "--limit=-1"], "--limit="),
    (["gradnorm", "--batch_size=0"], "--batch_size="),
    (["gradnorm", "--num_draws=0"], "--num_draws="),
    (["gradnorm", "--samples_per_class=-1"], "--samples_per_class="),
    (["gradnorm", "--weights=all"], "--weights="),
    (["layers", "--sparsity=1"], "--sparsity="),
    (["compare", "--metric=top5"], "--metric="),
    (["gradnorm", "--sparsities=1.5"], "--sparsities"),
    (["gradnorm", "--methods=nope"], "--methods"),
    (["curves"], "--runs"),
    (["plot"], "usage: python -m train.analyze"),
]


def run(module, args):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=300)


def assert_one_line_error(r, flag):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr[-2000:]
    assert lines[0].startswith("error: ") and flag in lines[0], lines[0]


@pytest.mark.parametrize("args,flag", RUN, ids=[" ".join(a) for a, _ in RUN])
def test_train_run_rejects(tmp_path, args, flag):
    out = tmp_path / "run"
    r = run("train.run", ["--dataset=fashion_mnist", "--model=conv4", "--epochs=1", *args, f"--output_dir={out}"])
    assert_one_line_error(r, flag)
    assert not out.exists()


@pytest.mark.parametrize("args,flag", ANALYZE, ids=[" ".join(a) for a, _ in ANALYZE])
def test_train_analyze_rejects(tmp_path, args, flag):
    out = tmp_path / "analysis"
    r = run("train.analyze", [*args, f"--output_dir={out}"])
    assert_one_line_error(r, flag)
    assert not out.exists()


def test_train_export_rejects(tmp_path):
    assert_one_line_error(run("train.export", []), "--run_dir")
    assert_one_line_error(run("train.export", [f"--run_dir={tmp_path / 'nowhere'}"]), "--run_dir=")
    assert_one_line_error(run("train.export", [f"--run_dir={tmp_path}", "--storage=zip"]), "--storage=")
    assert_one_line_error(run("train.export", [f"--run_dir={tmp_path}"]), "holds no model.keras")
    (tmp_path / "model.keras").write_bytes(b"PK\x03\x04 truncated")
    r = run("train.export", [f"--run_dir={tmp_path}"])
    assert_one_line_error(r, "model.keras exists but is not a readable Keras model")
    assert sorted(os.listdir(tmp_path)) == ["model.keras"]


def test_a_method_option_set_in_a_flagfile_for_a_method_that_lacks_it_is_refused(tmp_path):
    """The old shared common.cfg set --temperature for every method; now that is one line naming both."""
    flagfile = tmp_path / "shared.cfg"
    flagfile.write_text("--temperature=200\n--epochs=1\n")
    out = tmp_path / "run"
    r = run("train.run", ["--model=conv4", f"--flagfile={flagfile}", "--method=magnitude", f"--output_dir={out}"])
    assert_one_line_error(r, "--temperature is not an option of --method=magnitude (it takes no options)")
    assert not out.exists()


PLUGIN = """
import sys
from train import quiet
quiet.import_tensorflow()
import numpy as np
from grasp_tf import criteria
from grasp_tf.criteria import Criterion, Option


def negative_power(model, weights, data, *, seed=None, power=1.0):
    return {w.key: -np.abs(np.asarray(w.variable)) ** power for w in weights}


criteria.register(Criterion("neg_power", negative_power, remove_largest=True, needs_data=False, option_specs=(
    Option("power", float, 1.0, "Exponent of |w|.", minimum=0, exclusive_minimum=True),)))
from train import run  # noqa: E402  (after the registration: its flags come from the registry)
from train.errors import run_app  # noqa: E402

run_app(run.main)
"""


def test_a_method_registered_in_the_process_gets_its_flags_and_runs(tmp_path):
    """No edit in train/: the registry's new method and its declared option are train.run flags."""
    def plugin(*args):
        return subprocess.run([sys.executable, "-c", PLUGIN, *args], cwd=ROOT, env=ENV, capture_output=True,
                              text=True, timeout=300)

    out = tmp_path / "run"
    bad = plugin("--method=neg_power", "--power=-1", "--model=conv4", f"--output_dir={out}")
    assert_one_line_error(bad, "--power=-1.0 is invalid for --method=neg_power: must be a number > 0")
    assert not out.exists()
    args = ["--method=neg_power", "--power=2", "--sparsity=0.5", "--model=conv4", "--train_limit=64",
            "--test_limit=64", "--batch_size=32", "--epochs=1", "--steps_per_epoch=1", f"--output_dir={out}"]
    r = plugin(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    config = json.loads((out / "config.json").read_text())
    assert (config["method"], config["power"], config["temperature"]) == ("neg_power", 2.0, None)
    with np.load(out / "masks.npz") as z:  # the largest -|w|^2 removed: the smallest |w| go, half of each
        kept = sum(int(z[k].sum()) for k in z.files)
        assert kept == sum(z[k].size for k in z.files) - sum(z[k].size for k in z.files) // 2
    again = plugin(*args)  # the same command: the finished run is recognised, nothing redone
    assert again.returncode == 0 and "already holds this finished run" in again.stdout, again.stderr[-2000:]

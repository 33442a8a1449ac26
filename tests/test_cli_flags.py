"""Every constrained flag of the three CLIs, fed a bad value: exit 2, one line naming the flag, nothing created."""
import os
import subprocess
import sys

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
    (["--temperature=0"], "--temperature="),
    (["--chunk_size=-1"], "--chunk_size="),
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

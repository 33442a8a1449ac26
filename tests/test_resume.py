"""A killed `train.run` reruns to the same bits, and one run directory has one writer.

Each crash test SIGKILLs a real run (conv4: convolutions with BatchNorm) at a named moment
(``$GRASP_TF_CRASH_AT``, see ``train.artifacts.crash_point``) or from outside at an arbitrary
one, reruns the same command, and compares final weights, masks, metrics.csv and the
results' metrics with a run that was never interrupted.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = pytest.mark.subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {k: v for k, v in os.environ.items() if k not in ("GRASP_TF_CRASH_AT", "TF_CPP_MIN_LOG_LEVEL")}
ENV["PYTHONUNBUFFERED"] = "1"  # a user's environment: the tools start TensorFlow quietly
ARGS = ["--dataset=fashion_mnist", "--model=conv4", "--method=grasp", "--sparsity=0.9", "--train_limit=256",
        "--test_limit=256", "--batch_size=64", "--epochs=3", "--lr=0.05"]


def command(out, *extra):
    return [sys.executable, "-m", "train.run", *ARGS, *extra, f"--output_dir={out}"]


def run(out, *extra, crash=None):
    env = {**ENV, "GRASP_TF_CRASH_AT": crash} if crash else ENV
    return subprocess.run(command(out, *extra), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def outcome(run_dir):
    """What must not depend on interruptions: weights, masks, metrics rows, result metrics."""
    import keras

    import grasp_tf  # noqa: F401  (registers FixedMaskWrapper)

    model = keras.models.load_model(os.path.join(run_dir, "model.keras"), compile=False)
    results = json.loads(open(os.path.join(run_dir, "results.json")).read())
    with np.load(os.path.join(run_dir, "masks.npz")) as z:
        masks = {k: z[k] for k in z.files}
    return {
        "weights": [w.numpy() for w in model.weights],
        "masks": masks,
        "metrics": open(os.path.join(run_dir, "metrics.csv")).read(),
        "results": {k: results[k] for k in ("final_test_accuracy", "best_test_accuracy", "epochs_completed",
                                            "sparsity")},
    }


def assert_same(a, b):
    assert a["metrics"] == b["metrics"]
    assert a["results"] == b["results"]
    assert sorted(a["masks"]) == sorted(b["masks"])
    for k in a["masks"]:
        np.testing.assert_array_equal(a["masks"][k], b["masks"][k])
    assert len(a["weights"]) == len(b["weights"])
    for x, y in zip(a["weights"], b["weights"]):
        np.testing.assert_array_equal(x, y)  # bit-identical


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    r = run(out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(open(out / "metrics.csv").read().splitlines()) == 4
    return outcome(out)


@pytest.mark.parametrize("moment", [
    "scoring",            # masks computed, nothing saved yet
    "mid_epoch:2",        # inside epoch 2, after its second step
    "backup_write:2",     # epoch 2's weights written under a temporary name, not renamed
    "backup_record:2",    # weights renamed, no commit record vouching for them yet
    "after_backup:2",     # checkpoint committed, metrics.csv not yet rewritten
    "before_results",     # trained and saved, results.json not yet written
])
def test_killed_at_any_moment_reruns_to_the_same_bits(tmp_path, uninterrupted, moment):
    out = tmp_path / "run"
    killed = run(out, crash=moment)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (out / "results.json").exists()
    again = run(out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "took over the lock of pid" in again.stdout  # the killed run's lock was stale
    assert_same(outcome(out), uninterrupted)
    assert not (out / "backup").exists() and not (out / ".lock").exists()


def test_a_corrupt_newest_checkpoint_falls_back_in_one_line(tmp_path, uninterrupted):
    out = tmp_path / "run"
    assert run(out, crash="after_backup:2").returncode == -signal.SIGKILL
    newest = out / "backup" / "epoch-0002.weights.h5"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a disk that lost data
    again = run(out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "warning:" not in again.stdout  # warnings go to stderr
    warnings = [line for line in again.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "checkpoint of epoch 2" in warnings[0] and "falling back" in warnings[0]
    assert "resuming: epoch 1 of 3" in again.stdout
    assert_same(outcome(out), uninterrupted)


def test_killed_from_outside_reruns_to_the_same_bits(tmp_path, uninterrupted):
    out = tmp_path / "run"
    p = subprocess.Popen(command(out), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    deadline = time.time() + 300
    while not (out / "backup" / "epoch-0001.json").exists():  # epoch 1 is checkpointed: now in epoch 2
        assert p.poll() is None and time.time() < deadline, "run ended before epoch 1 was checkpointed"
        time.sleep(0.01)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert not (out / "results.json").exists()
    again = run(out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert_same(outcome(out), uninterrupted)


def test_a_second_run_on_the_same_directory_is_refused_at_once(tmp_path):
    out = tmp_path / "run"
    longer = "--epochs=40"  # long enough for the second run to start while the first trains
    first = subprocess.Popen(command(out, longer), cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (out / "masks.npz").exists():
        assert first.poll() is None and time.time() < deadline, "first run ended before saving its masks"
        time.sleep(0.01)
    config = (out / "config.json").read_text()
    second = run(out, longer)
    assert first.poll() is None, "the first run ended before the second was refused: make it longer"
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --output_dir={out} is in use by pid {first.pid} on ")
    stdout, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr[-3000:]
    assert "took over" not in stdout
    assert (out / "config.json").read_text() == config
    assert [int(r.split(",")[0]) for r in (out / "metrics.csv").read_text().splitlines()[1:]] == list(range(1, 41))
    assert json.loads((out / "results.json").read_text())["epochs_completed"] == 40
    assert not (out / ".lock").exists()


def test_a_lock_held_by_a_live_process_names_it_and_a_dead_ones_is_taken_over(tmp_path):
    from train.lock import RunLock

    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from train.lock import RunLock; "
         f"RunLock({str(out)!r}).acquire(); print('held', flush=True); time.sleep(600)"],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = run(out)
        assert refused.returncode == 2
        assert f"is in use by pid {holder.pid} on " in refused.stderr
        assert sorted(os.listdir(out)) == [".lock"]  # nothing of the refused run
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing: its lock file stays, naming it; the next holder takes over.
    stale = json.loads((out / ".lock").read_text())
    assert stale["pid"] == holder.pid
    said = []
    lock = RunLock(str(out))
    lock.acquire(say=said.append)
    assert said == [f"took over the lock of pid {holder.pid} on {stale['host']} (started {stale['started']}), "
                    "which is no longer running"]
    assert json.loads((out / ".lock").read_text())["pid"] == os.getpid()
    lock.release()
    assert not (out / ".lock").exists()

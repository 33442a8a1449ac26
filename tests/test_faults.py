"""Faults of the tools, as a user meets them: a run never destroys what it did not make, and every
fault is one line on stderr, exit 2 (bad input) or 1 (the machine), with nothing half-written left.

Real processes on real files; the full disk is a 3 MB tmpfs and the read-only directory a run
by an unprivileged user, both only as root (skipped with the reason otherwise).
"""
import errno
import gzip
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from train import artifacts, data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {k: v for k, v in os.environ.items() if k not in ("GRASP_TF_CRASH_AT", "TF_CPP_MIN_LOG_LEVEL")}
ENV["PYTHONUNBUFFERED"] = "1"  # a user's environment: the tools start TensorFlow quietly
TINY = ["--dataset=fashion_mnist", "--model=lenet300", "--method=random", "--sparsity=0.9", "--train_limit=256",
        "--test_limit=256", "--batch_size=64", "--epochs=1"]


def tool(module, *args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env or ENV, capture_output=True,
                          text=True, timeout=600, **kw)


def train(out, *extra, **kw):
    return tool("train.run", *TINY, *extra, f"--output_dir={out}", **kw)


def one_line(r, code, *words):
    """``r`` failed with exit ``code`` and exactly one stderr line, ``error: ...`` holding ``words``."""
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == code and len(lines) == 1 and lines[0].startswith("error: "), (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stdout
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def tree(path):
    """Every file and directory under ``path`` (followed if a symlink) with its bytes: what must not change."""
    out = {}
    for d, dirs, files in os.walk(path):
        for name in dirs:
            out[os.path.relpath(os.path.join(d, name), path)] = "dir"
        for name in files:
            with open(os.path.join(d, name), "rb") as f:
                out[os.path.relpath(os.path.join(d, name), path)] = f.read()
    return out


def temporaries(path):
    return [os.path.join(d, n) for d, _, files in os.walk(path) for n in files if n.startswith(".tmp-")]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    r = train(out)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def copy_run(src, dst):
    shutil.copytree(src, dst, symlinks=True)
    return dst


# ----------------------------------------------------------------------------- never destroy what the run did not make

@pytest.mark.subprocess
def test_a_refused_fresh_start_touches_nothing(tmp_path, finished):
    """``cp -a runs/done d`` and a run of another seed there, through a symlink: the copy stays whole."""
    target = copy_run(finished, tmp_path / "done")
    out = tmp_path / "link"
    out.symlink_to(target)
    before = tree(target)
    r = train(out, "--seed=1")
    one_line(r, 2, f"{out} holds a different run (differs in seed)")
    assert tree(target) == before and out.is_symlink()


@pytest.mark.subprocess
def test_a_fresh_start_refuses_a_directory_holding_run_names_without_a_config(tmp_path):
    out = tmp_path / "d"
    (out / "export").mkdir(parents=True)
    (out / "export" / "thesis.tex").write_text("x")
    r = train(out, f"--data_dir={tmp_path / 'nonexistent'}")
    one_line(r, 2, f"{out} holds export but no config.json")
    assert tree(out) == {"export": "dir", "export/thesis.tex": b"x"}


@pytest.mark.subprocess
def test_a_failed_fresh_start_removes_only_what_it_made(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    one_line(train(tmp_path / "new" / "a" / "b", f"--data_dir={tmp_path / 'nowhere'}"), 2, "not found")
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]  # no directory of the nested path is left


def test_a_path_too_long_is_refused_leaving_nothing(tmp_path):
    from train.errors import UsageError
    from train.lock import RunLock

    with pytest.raises(UsageError, match="cannot write to --output_dir=.*: File name too long"):
        RunLock(str(tmp_path.joinpath("new", *["d" * 200] * 25))).acquire()
    assert os.listdir(tmp_path) == []


def test_overwrite_deletes_the_run_names_and_nothing_else(tmp_path):
    from train import rundir

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("k")
    out = tmp_path / "run"
    (out / "backup").mkdir(parents=True)
    (out / "backup" / "epoch-0001.json").write_text("{}")
    for name in ("config.json", "masks.npz", "results.json", "checksums.json", ".tmp-x.json", "notes.txt"):
        (out / name).write_text("x")
    (out / "export").symlink_to(elsewhere)  # a link is removed, never followed
    rundir.clear_run(str(out))
    assert sorted(os.listdir(out)) == ["notes.txt"]
    assert (elsewhere / "keep.txt").read_text() == "k"


# ----------------------------------------------------------------------------- integrity of finished runs

@pytest.mark.subprocess
@pytest.mark.parametrize("name,damage,command", [
    ("results.json", "truncate", ["train.run", *TINY]),
    ("masks.npz", "edit", ["train.export"]),
    ("masks.npz", "truncate", ["train.analyze", "layers"]),
])
def test_a_modified_finished_run_is_named_not_used(tmp_path, finished, name, damage, command):
    run = copy_run(finished, tmp_path / "run")
    data_ = bytearray((run / name).read_bytes())
    if damage == "truncate":
        del data_[-10:]
    else:
        data_[len(data_) // 2] ^= 0xFF
    (run / name).write_bytes(bytes(data_))
    before = tree(run)
    flag = {"train.run": "--output_dir", "train.export": "--run_dir", "train.analyze": "--runs"}[command[0]]
    extra = [f"--output_dir={tmp_path / 'analysis'}"] if command[0] == "train.analyze" else []
    r = tool(command[0], *command[1:], f"{flag}={run}", *extra)
    one_line(r, 2, f"{run / name}", "checksums.json")
    assert tree(run) == before
    assert not (tmp_path / "analysis").exists()


def _analyze(command, tmp_path, runs):
    from absl import flags

    from train import analyze

    fv = flags.FlagValues()
    analyze.define_flags(fv)
    return analyze.main(fv(["analyze", command, f"--output_dir={tmp_path / 'out'}", f"--runs={runs}"]), fv)


@pytest.mark.parametrize("content,message", [
    ('{"config": ["not", "an", "object"], "best_test_accuracy": 0.5, "final_test_accuracy": 0.5, '
     '"sparsity": {}}', "its config is not an object"),
    ('{"config": {"dataset": "fashion_mnist", "mod', "is not valid JSON"),  # truncated, no integrity record
])
def test_compare_names_a_bad_results_json(tmp_path, content, message):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(content)
    from train.errors import UsageError

    with pytest.raises((ValueError, UsageError), match=message) as e:
        _analyze("compare", tmp_path, tmp_path / "run")
    assert str(tmp_path / "run" / "results.json") in str(e.value)


# ----------------------------------------------------------------------------- a full disk, a read-only directory

@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs: lenet300's first checkpoint (3.2 MB) does not fit."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mount -t tmpfs failed (no CAP_SYS_ADMIN in this container?)")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.subprocess
def test_a_full_disk_during_a_checkpoint_is_one_line(small_disk):
    out = small_disk / "run"
    one_line(train(out), 1, "No space left on device", "rerun the same command to resume")
    assert not temporaries(out) and not (out / ".lock").exists()
    assert (out / "masks.npz").exists() and not artifacts.verify(str(out / "masks.npz"))  # kept: worth resuming


@pytest.mark.subprocess
def test_a_full_disk_at_start_is_one_line_and_leaves_nothing(small_disk):
    with open(small_disk / "fill", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
    one_line(train(small_disk / "a" / "run"), 1, "No space left on device")
    assert os.listdir(small_disk) == ["fill"]


@pytest.mark.subprocess
def test_an_output_dir_turned_read_only_stops_the_run_in_one_line_and_so_does_its_resume(tmp_path, request):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run the tools as an unprivileged user")
    import tempfile

    home = tempfile.mkdtemp(prefix="grasp-tf-home-")  # matplotlib's access() check needs a path nobody can walk
    request.addfinalizer(lambda: shutil.rmtree(home, ignore_errors=True))
    out = tmp_path / "run"
    out.mkdir()
    for d in (home, out):
        os.chmod(d, 0o777)
    # nobody, who may still read (and traverse) everything, so that Python and the repository load
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=+dac_read_search",
           "--ambient-caps=+dac_read_search", sys.executable, "-m", "train.run", *TINY, "--epochs=200",
           f"--output_dir={out}"]
    import matplotlib

    shutil.copytree(matplotlib.get_cachedir(), os.path.join(home, "mpl"))  # a font cache: nothing to build or log
    subprocess.run(["chmod", "-R", "a+rwX", home], check=True)
    env = {**ENV, "HOME": home, "MPLCONFIGDIR": os.path.join(home, "mpl")}
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (out / "backup" / "epoch-0001.json").exists():
        assert p.poll() is None and time.time() < deadline, p.stderr.read()[-3000:]
        time.sleep(0.01)
    for d, dirs, _ in os.walk(out):
        os.chmod(d, 0o555)
    _, err = p.communicate(timeout=600)
    one_line(subprocess.CompletedProcess(cmd, p.returncode, "", err), 1, "Permission denied",
             "rerun the same command to resume")
    before = {k: v for k, v in tree(out).items() if k != ".lock"}
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    one_line(again, 1, "Permission denied")
    assert {k: v for k, v in tree(out).items() if k != ".lock"} == before
    for d, dirs, _ in os.walk(out):
        os.chmod(d, 0o755)


# ----------------------------------------------------------------------------- data files

def _write_idx(path, arr):
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    with (gzip.open if str(path).endswith(".gz") else open)(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def fake_fashion_mnist(directory, n=20, images=None, labels=None):
    """The four IDX files of a tiny Fashion-MNIST in ``directory``; ``images``/``labels`` replace the training ones."""
    directory.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 28, 28)) if images is None else images
    y = np.arange(n) % 10 if labels is None else labels
    for stem, arr in zip(data._FASHION_FILES, (x, y, x, y)):
        _write_idx(directory / (stem + ".gz"), arr)
    return directory


def damage(path, how):
    raw = path.read_bytes()
    if how == "truncated .gz":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "not gzip":
        path.write_bytes(gzip.decompress(raw))  # an IDX file named .gz
    elif how == "truncated header":
        path.write_bytes(gzip.compress(gzip.decompress(raw)[:10]))


@pytest.mark.parametrize("how,message", [
    ("truncated .gz", "is not a readable gzip file"),
    ("not gzip", "is not a readable gzip file"),
    ("truncated header", "truncated IDX header"),
    ("fewer labels", "holds 15 labels for the 20 images"),
    ("wrong shape", "holds images of shape (32, 32)"),
])
def test_bad_idx_files_are_named(tmp_path, how, message):
    images = np.zeros((20, 32, 32)) if how == "wrong shape" else None
    labels = np.arange(15) % 10 if how == "fewer labels" else None
    d = fake_fashion_mnist(tmp_path / "fm", images=images, labels=labels)
    bad = d / ("train-images-idx3-ubyte.gz" if how != "fewer labels" else "train-labels-idx1-ubyte.gz")
    damage(bad, how)
    with pytest.raises(ValueError) as e:
        data.load("fashion_mnist", data_dir=str(d))
    assert str(bad) in str(e.value) and message in str(e.value)


# ----------------------------------------------------------------------------- interrupts

@pytest.mark.subprocess
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_says_where_releases_the_lock_and_keeps_the_run(tmp_path, sig, code):
    out = tmp_path / "run"
    # A shell starts background jobs with SIGINT ignored and children inherit that (the suite run as `cmd &`
    # would see Ctrl-C ignored, as nohup means it): give the run the disposition of a terminal's foreground job.
    p = subprocess.Popen([sys.executable, "-m", "train.run", *TINY, "--epochs=200", f"--output_dir={out}"],
                         cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while not (out / "backup" / "epoch-0001.json").exists():
        assert p.poll() is None and time.time() < deadline, p.stderr.read()[-3000:]
        time.sleep(0.01)
    p.send_signal(sig)
    _, err = p.communicate(timeout=600)
    lines = err.strip().splitlines()
    assert p.returncode == code and len(lines) == 1, err[-3000:]
    epoch = int(lines[0].split("interrupted at epoch ")[1].split(";")[0])
    assert lines[0] == f"interrupted at epoch {epoch}; rerun the same command to resume" and epoch >= 2
    assert epoch == 1 + max(int(n[6:10]) for n in os.listdir(out / "backup") if n.endswith(".json"))
    assert not (out / ".lock").exists() and not temporaries(out)
    assert (out / "config.json").exists() and (out / "masks.npz").exists()  # kept to resume
    if sig == signal.SIGTERM:  # and a resume with masks that disagree with the checkpoint says so
        masks = artifacts.load_masks(str(out / "masks.npz"))
        artifacts.save_masks(str(out / "masks.npz"), {k: ~v for k, v in masks.items()})  # valid, recorded
        one_line(train(out, "--epochs=200"), 2, f"{out / 'masks.npz'} disagrees with the checkpoint of epoch")

"""`python -m train.run` as a user runs it: end to end, distributed, bad input (crashes: test_resume.py)."""
import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
SMALL = ["--dataset=fashion_mnist", "--model=conv4", "--method=grasp", "--sparsity=0.9",
         "--train_limit=640", "--batch_size=64"]


def run(args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "train.run", *args], cwd=ROOT, env=env or ENV,
                          capture_output=True, text=True, timeout=600, **kw)


def assert_masked_zeros(run_dir):
    """The saved model's masks equal masks.npz and its pruned kernels are exactly zero."""
    import keras

    import grasp_tf

    model = keras.models.load_model(os.path.join(run_dir, "model.keras"), compile=False)
    saved = dict(np.load(os.path.join(run_dir, "masks.npz")))
    masks = grasp_tf.get_masks(model)
    assert sorted(masks) == sorted(saved)
    for key, mask in masks.items():
        np.testing.assert_array_equal(mask, saved[key])
    kernels = {f"{w.layer.name}/{v.name}": v.numpy() for w in model.layers if hasattr(w, "pruning_vars")
               for v, _, _ in w.pruning_vars}
    for key, mask in saved.items():
        assert np.all(kernels[key][~mask] == 0.0), key
        assert np.any(kernels[key][mask] != 0.0), key
    return saved


def test_end_to_end_fashion_mnist(tmp_path):
    out = tmp_path / "run"
    r = run([*SMALL, "--epochs=2", "--export", f"--output_dir={out}"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "test accuracy" in r.stdout and "sparsity 0.9000" in r.stdout
    res = json.loads((out / "results.json").read_text())
    assert res["epochs_completed"] == 2 and res["config"]["method"] == "grasp"
    glob = res["sparsity"]["global"]
    assert glob["total"] - glob["kept"] == int(np.floor(glob["total"] * 0.9))
    conv1 = res["sparsity"]["weights"]["conv1/kernel"]  # connectivity (grasp_tf.connectivity): 28x28 outputs
    assert conv1["macs"] == 28 * 28 * conv1["total"] and conv1["kept_macs"] == 28 * 28 * conv1["kept"]
    assert glob["connectivity_note"] is None and 0 < glob["flop_density"] < 1 and glob["macs"] > 0
    assert glob["sparsity"] <= glob["effective_sparsity"] < 1 and glob["effective_kept"] <= glob["kept"]
    assert 0 <= glob["dead_channels"] <= glob["effectively_dead_channels"] <= glob["channels"] == 32 + 32 + 64 + 64 + 10
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",")[0] == "epoch" and len(rows) == 3
    assert {"test_accuracy", "test_loss", "lr", "loss", "accuracy"} <= set(rows[0].split(","))
    assert os.listdir(out / "tensorboard")
    assert not (out / "backup").exists()  # removed once training completed
    assert_masked_zeros(out)
    exported = json.loads((out / "export" / "sparsity.json").read_text())
    assert res["export"]["parameters"]["sparse"] < res["export"]["parameters"]["dense"]
    assert exported["parameters"] == res["export"]["parameters"]
    # only what identical runs reproduce: the gzipped size depends on the files' times
    assert res["export"] == {"parameters": exported["parameters"], "raw_bytes": exported["size"]["raw_bytes"],
                             "files": exported["size"]["files"]}
    mask = os.umask(0o022)
    os.umask(mask)
    for path in [out / name for name in ("config.json", "masks.npz", "metrics.csv", "results.json", "model.keras",
                                         "pruning.json")] + [out / "export"]:
        want = (0o777 if path.is_dir() else 0o666) & ~mask  # what the user's umask gives any file they write
        assert path.stat().st_mode & 0o777 == want, (path, oct(path.stat().st_mode))
    assert not (out / ".lock").exists()
    again = run([*SMALL, "--epochs=2", "--export", f"--output_dir={out}"])  # same command: nothing to redo
    assert again.returncode == 0 and "already holds this finished run" in again.stdout


LATER = [  # (method, its option flags, what results.json's config must then hold)
    ("iter_snip", ["--rounds=3", "--schedule=linear"], {"rounds": 3, "schedule": "linear"}),
    ("force", ["--rounds=3", "--loss=cross_entropy"], {"rounds": 3, "loss": "cross_entropy"}),
    ("prospr", ["--inner_steps=1", "--meta_gradient=first_order"], {"inner_steps": 1, "meta_gradient": "first_order"}),
    ("ntk_sap", ["--rounds=2", "--repetitions=1", "--epsilon=0.02", "--ntk_sap_batch_size=40"],
     {"rounds": 2, "repetitions": 1, "epsilon": 0.02, "ntk_sap_batch_size": 40}),
    ("phew", ["--seed=3"], {"seed": 3}),
    ("random", ["--densities=erk"], {"densities": "erk"}),
]


@pytest.mark.parametrize("method,flags,config", LATER, ids=[m for m, _, _ in LATER])
def test_every_later_method_prunes_from_train_run_with_its_options(tmp_path, method, flags, config):
    """Issue 19's methods from the command line: their own flags reach them, exactly floor(N*s) go."""
    out = tmp_path / "run"
    r = run(["--dataset=fashion_mnist", "--model=conv4", f"--method={method}", *flags, "--sparsity=0.9",
             "--train_limit=640", "--batch_size=64", "--epochs=1", "--steps_per_epoch=1", "--test_limit=64",
             f"--output_dir={out}"])
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["method"] == method and {k: res["config"][k] for k in config} == config
    glob = res["sparsity"]["global"]
    assert glob["total"] - glob["kept"] == int(np.floor(glob["total"] * 0.9))
    masks = assert_masked_zeros(out)
    if method == "random":  # ERK: the 288-weight first conv is kept far above the 10% a uniform cut gives it
        assert masks["conv1/kernel"].mean() > 0.5


def test_masks_that_leave_no_input_to_output_path_are_named_in_one_warning(tmp_path):
    tiny = ["--dataset=fashion_mnist", "--model=lenet300", "--method=random", "--train_limit=128", "--test_limit=128",
            "--batch_size=64", "--epochs=1"]
    # 0.99995 keeps 14 of 266,200 weights (266,200 - floor(266,200 * 0.99995)): the 1,000-weight output layer
    # keeps none of them (random, seed 0).
    r = run([*tiny, "--sparsity=0.99995", f"--output_dir={tmp_path / 'cut'}"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.strip() == (
        "warning: --method=random at --sparsity=0.99995 leaves no path from the input to the output (effective "
        "sparsity 100%), so the output cannot depend on the input; training goes on, but try a lower --sparsity or "
        "another --method")
    res = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert res["sparsity"]["global"]["effective_sparsity"] == 1.0 and res["sparsity"]["global"]["kept"] == 14
    r = run([*tiny, "--sparsity=0.99995", f"--output_dir={tmp_path / 'cut'}"])  # the rerun: finished, no warning
    assert r.returncode == 0 and r.stderr == "" and "already holds this finished run" in r.stdout, r.stderr[-3000:]
    r = run([*tiny, "--sparsity=0.9", f"--output_dir={tmp_path / 'kept'}"])  # a connected net: no warning
    assert r.returncode == 0 and r.stderr == "", r.stderr[-3000:]


def test_mirrored_on_two_logical_cpus(tmp_path):
    out = tmp_path / "run"
    r = run([*SMALL, "--epochs=1", "--steps_per_epoch=3", "--strategy=mirrored", "--cpu_devices=2",
             f"--output_dir={out}"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert_masked_zeros(out)


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_worker_processes_on_loopback(tmp_path):
    out = tmp_path / "run"
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "train.run", *SMALL, "--epochs=2", "--steps_per_epoch=2",
         "--strategy=multi_worker", f"--output_dir={out}"], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**ENV, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
        for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    chief = assert_masked_zeros(out)
    worker = dict(np.load(out / ".workers" / "worker_1" / "masks.npz"))
    for k in chief:  # every worker pruned identically
        np.testing.assert_array_equal(chief[k], worker[k])
    assert json.loads((out / "results.json").read_text())["epochs_completed"] == 2


def write_flagfile(tmp_path, text):
    path = tmp_path / "typo.cfg"
    path.write_text(text)
    return f"--flagfile={path}"


@pytest.mark.parametrize("args,message", [
    (["--dataset=cifar11"], "unknown --dataset='cifar11'; choose one of fashion_mnist"),
    (["--model=vgg99"], "unknown --model='vgg99'; choose one of"),
    (["--method=grasp2"], "unknown --method='grasp2'; choose one of none, "),
    (["--sparsity=1.0"], "flag --sparsity=1.0: must be in [0, 1)"),
    (["--data_dir={tmp}/nowhere"], "Fashion-MNIST not found: looked for"),
    (["--output_dir=/proc/forbidden"], "cannot write to --output_dir=/proc/forbidden"),
    (["--samples_per_class=10", "--train_limit=5", "--epochs=1"], "pruning with --method=grasp failed:"),
    (["{flagfile}"], "Unknown command line flag 'sparsty'"),
])
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    args = [a.format(tmp=tmp_path, flagfile=write_flagfile(tmp_path, "--sparsty=0.9\n")) for a in args]
    if not any(a.startswith("--output_dir") for a in args):
        args.append(f"--output_dir={out}")
    r = run(args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    ours = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(ours) == 1 and message in ours[0], r.stderr[-2000:]
    assert not out.exists()


def test_quick_start_prints_only_our_lines(tmp_path):
    """A user's plain run (no TF_CPP_MIN_LOG_LEVEL set) shows no TensorFlow start-up block, no
    "failed call to cuInit", no Keras warnings: stderr is empty; export is as quiet."""
    flagfile = tmp_path / "tiny.cfg"
    flagfile.write_text(f"--flagfile={ROOT}/configs/quickstart.cfg\n--train_limit=512\n--test_limit=512\n"
                        f"--epochs=1\n--output_dir={tmp_path / 'run'}\n")
    user_env = {k: v for k, v in ENV.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    r = run([f"--flagfile={flagfile}"], env=user_env)
    assert r.returncode == 0 and r.stderr == "", r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert lines[0].startswith("pruning 98.00% of lenet300 with grasp") and "test accuracy" in lines[-1]
    assert not [line for line in lines if line[:1] in "IWE" and line[1:5].isdigit()]  # glog-style lines
    e = subprocess.run([sys.executable, "-m", "train.export", f"--run_dir={tmp_path / 'run'}", "--tflite"],
                       cwd=ROOT, env=user_env, capture_output=True, text=True, timeout=600)
    assert e.returncode == 0 and e.stderr == "", e.stderr[-3000:]
    assert len(e.stdout.splitlines()) == 2
    verbose = run([f"--flagfile={flagfile}", "--overwrite", "--verbosity=0"], env=user_env)
    assert verbose.returncode == 0 and re.search(r"^[IWE]\d{4} ", verbose.stderr, re.M)  # asked for: shown

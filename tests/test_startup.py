"""Start-up as a user meets it: a silent `import grasp_tf`, quiet tools, `--help` by section, flagfiles from anywhere.

Real processes run from a directory outside the repository, with the user's environment
(no ``TF_CPP_MIN_LOG_LEVEL`` unless the test sets it); the flagfile expansion itself is
also checked in-process on small files.
"""
import os
import re
import subprocess
import sys

import pytest

from train import flagfiles

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER_ENV = {k: v for k, v in os.environ.items()
            if k not in ("TF_CPP_MIN_LOG_LEVEL", "GRASP_TF_VERBOSE_LOG", "GRASP_TF_CRASH_AT")}
USER_ENV["PYTHONPATH"] = ROOT


def run(args, cwd, **env):
    return subprocess.run([sys.executable, *args], cwd=cwd, env={**USER_ENV, **env}, capture_output=True,
                          text=True, timeout=600)


# ----------------------------------------------------------------------------- quiet start-up

@pytest.mark.subprocess
def test_import_grasp_tf_prints_nothing(tmp_path):
    r = run(["-c", "import grasp_tf, tensorflow as tf; print(int(tf.constant(2) + 1))"], tmp_path)
    assert r.returncode == 0 and r.stdout == "3\n"
    assert r.stderr == "", r.stderr  # no start-up block, no "failed call to cuInit" at the first op


@pytest.mark.subprocess
def test_the_tools_hide_tensorflows_retracing_notes_unless_asked(tmp_path):
    """A tool scoring several fresh models (train.analyze gradnorm) must not print tf.function retracing notes."""
    code = ("from train import quiet; quiet.import_tensorflow(); import tensorflow as tf\n"
            "for i in range(8): tf.function(lambda x: x + 1)(tf.constant(float(i)))\n")
    assert run(["-c", code], tmp_path).stderr == ""
    assert "retracing" in run(["-c", code], tmp_path, GRASP_TF_VERBOSE_LOG="1").stderr


def test_the_filter_hides_the_start_up_block_and_keeps_everything_else(capfd, monkeypatch):
    from grasp_tf import quiet

    block = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
             "I0000 00:00:1796523426.349942    7819 port.cc:153] oneDNN custom operations are on.\n"
             "E0000 00:00:1796523429.750621    7819 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR\n"
             "2026-12-06 02:21:27.256867: I tensorflow/core/platform/cpu_feature_guard.cc:210] This TF binary\n")
    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    with quiet.filtered_stderr():
        os.write(2, (block + "real trouble: libfoo.so not found\n").encode())
    assert capfd.readouterr().err == "real trouble: libfoo.so not found\n"
    monkeypatch.setenv(quiet.VERBOSE_ENV, "1")  # the documented switch: the full log
    with quiet.filtered_stderr():
        os.write(2, block.encode())
    assert capfd.readouterr().err == block


@pytest.mark.subprocess
def test_a_line_printed_before_tensorflow_aborts_the_import_still_shows(tmp_path):
    """The filter passes lines on as they come: a fatal line survives the abort that follows it."""
    code = ("import importlib.util, os, sys\n"
            "spec = importlib.util.spec_from_file_location('q', sys.argv[1])\n"
            "q = importlib.util.module_from_spec(spec); spec.loader.exec_module(q)\n"
            "with q.filtered_stderr():\n"
            "    os.write(2, b'I0000 00:00:1.1    7 port.cc:153] oneDNN custom operations are on.\\n'\n"
            "                b'F0000 00:00:1.2    7 cpu_feature_guard.cc:9] Check failed: AVX\\n')\n"
            "    os.abort()\n")
    r = run(["-c", code, os.path.join(ROOT, "grasp_tf", "quiet.py")], tmp_path)
    assert r.returncode != 0 and r.stderr == "F0000 00:00:1.2    7 cpu_feature_guard.cc:9] Check failed: AVX\n"


# ----------------------------------------------------------------------------- --help

@pytest.mark.subprocess
def test_help_lists_our_flags_by_section_and_exits_0(tmp_path):
    r = run(["-m", "train.run", "--help"], tmp_path)
    assert r.returncode == 0 and r.stderr == "", r.stderr[-2000:]
    titles = [line[:-1] for line in r.stdout.splitlines() if re.fullmatch(r"[a-z][^ ]*( [^-].*)?:", line)]
    assert titles[:5] == ["data", "model", "pruning", "recipe", "execution"], titles
    sections = dict(re.findall(r"^(\w[^\n]*):\n((?:  .*\n)+)", r.stdout, re.M))
    assert "--dataset" in sections["data"] and "--sparsity" in sections["pruning"]
    assert "--lr_boundaries" in sections["recipe"] and "--[no]overwrite" in sections["execution"]
    assert "--verbosity" not in r.stdout and "--logtostderr" not in r.stdout  # absl's: --helpfull
    assert "(default: '160')" in sections["recipe"]


# ----------------------------------------------------------------------------- flagfiles

def test_includes_resolve_beside_the_including_file_from_any_directory(tmp_path, monkeypatch):
    (tmp_path / "base").mkdir()
    (tmp_path / "cells").mkdir()
    (tmp_path / "base" / "common.cfg").write_text("# shared\n--lr=0.5\n\n// also a comment\n--epochs=3\n")
    (tmp_path / "cells" / "a.cfg").write_text("--flagfile=../base/common.cfg\n--epochs=7\n")
    monkeypatch.chdir("/")
    argv = flagfiles.expand(["prog", f"--flagfile={tmp_path / 'cells' / 'a.cfg'}", "--seed=1", "--",
                             "--flagfile=untouched"])
    assert argv == ["prog", "--lr=0.5", "--epochs=3", "--epochs=7", "--seed=1", "--", "--flagfile=untouched"]
    paper = flagfiles.expand(["prog", "--flagfile", os.path.join(ROOT, "configs/paper/cifar10_vgg19_grasp_98.cfg")])
    assert "--momentum=0.9" in paper and "--dataset=cifar10" in paper and paper[-1] == "--num_draws=1"


def test_built_in_configs_by_name_and_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    quick = flagfiles.expand(["prog", "--flagfile=quickstart"])
    assert quick == flagfiles.expand(["prog", "--flagfile=configs/quickstart.cfg"]) and "--model=lenet300" in quick
    assert "paper/cifar10_vgg19_grasp_98" in flagfiles.builtin_names() and len(flagfiles.builtin_names()) >= 90
    (tmp_path / "quickstart").write_text("--epochs=2\n")  # a file of the user's wins over a built-in name
    assert flagfiles.expand(["prog", "--flagfile=quickstart"]) == ["prog", "--epochs=2"]
    (tmp_path / "bad.cfg").write_bytes(b"--epochs=1\n--model=caf\xe9\n")
    (tmp_path / "loop.cfg").write_text("--flagfile=loop.cfg\n")
    (tmp_path / "outer.cfg").write_text("--flagfile=missing.cfg\n")
    for name, message in [("bad.cfg", "bad.cfg is not UTF-8 text (byte 0xe9 on line 2)"),
                          ("loop.cfg", "includes itself"), ("nosuch", "no such file, nor a built-in config"),
                          ("outer.cfg", "--flagfile=missing.cfg (included from outer.cfg): no such file")]:
        with pytest.raises(flagfiles.FlagfileError, match=re.escape(message)):
            flagfiles.expand(["prog", f"--flagfile={name}"])


@pytest.mark.subprocess
def test_a_paper_config_parses_from_another_directory(tmp_path):
    """Gets past flag parsing to the data check (no CIFAR-10 here): one line, exit 2."""
    r = run(["-m", "train.run", f"--flagfile={ROOT}/configs/paper/cifar10_vgg19_grasp_98.cfg",
             f"--data_dir={tmp_path / 'nodata'}", f"--output_dir={tmp_path / 'run'}"], tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.splitlines()) == 1 and "cifar10" in r.stderr and "flagfile" not in r.stderr, r.stderr


@pytest.mark.subprocess
def test_a_built_in_name_works_and_tf_log_level_3_keeps_the_tool_quiet(tmp_path):
    r = run(["-m", "train.run", "--flagfile=quickstart", f"--data_dir={tmp_path / 'nodata'}",
             f"--output_dir={tmp_path / 'run'}"], tmp_path, TF_CPP_MIN_LOG_LEVEL="3")
    assert r.returncode == 2 and r.stderr.startswith("error: Fashion-MNIST not found"), r.stderr[-2000:]
    assert len(r.stderr.splitlines()) == 1, r.stderr  # no absl I0000 lines, once or twice


@pytest.mark.subprocess
def test_a_flagfile_that_is_not_utf8_is_one_line_exit_2(tmp_path):
    (tmp_path / "latin1.cfg").write_bytes(b"# r\xe9glages\n--epochs=1\n")
    r = run(["-m", "train.run", "--flagfile=latin1.cfg"], tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.splitlines() == ["error: --flagfile=latin1.cfg: latin1.cfg is not UTF-8 text (byte 0xe9 on "
                                     "line 1); save it as UTF-8"]
    assert not (tmp_path / "runs").exists()

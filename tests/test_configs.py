"""Every flagfile in configs/ parses and matches the paper's recipe (reference items 7 and 18)."""
import glob
import os
import re

import pytest
from absl import flags

import train.flags  # noqa: F401  (defines the flags)
from configs.make_configs import cells, render

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = sorted(glob.glob(os.path.join(ROOT, "configs", "paper", "*.cfg")))
CFG = re.compile(r"(?P<ds>cifar10|cifar100|tiny_imagenet|imagenet2012)_(?P<model>[a-z0-9_]+?)_"
                 r"(?P<method>[a-z]+)(?:_(?P<s>[0-9.]+))?(?:_(?P<init>normal|xavier))?\.cfg")


def parse(path):
    """A flagfile's final flag values (nested files expanded, later wins), type-checked by absl."""
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        argv = flags.FLAGS.read_flags_from_files([f"--flagfile={path}"], force_gnu=False)
    finally:
        os.chdir(cwd)
    values = {}
    for arg in argv:
        m = re.fullmatch(r"--(\w+)=(.*)", arg)
        assert m, f"{path}: malformed line {arg!r}"
        name, raw = m.groups()
        assert name in flags.FLAGS, f"{path}: unknown flag --{name}"
        values[name] = flags.FLAGS[name].parser.parse(raw)
    return values


def test_one_file_per_paper_cell_and_files_are_up_to_date():
    expected = {f"{stem}.cfg": render(f) for stem, f in cells()}
    assert sorted(expected) == sorted(os.path.basename(p) for p in PAPER)
    for path in PAPER:
        with open(path) as f:
            assert f.read() == expected[os.path.basename(path)], f"{path} is stale: rerun make_configs.py"
    # Tables 1-5 + dense baselines: 90 distinct runs.
    assert len(PAPER) == 90


@pytest.mark.parametrize("path", PAPER, ids=os.path.basename)
def test_cell_matches_paper_recipe(path):
    cell = CFG.fullmatch(os.path.basename(path)).groupdict()
    v = parse(path)
    assert v["dataset"] == cell["ds"] and v["model"] == cell["model"] and v["method"] == cell["method"]
    if cell["s"]:
        assert v["sparsity"] == pytest.approx(float(cell["s"]) / 100)
    assert v.get("init", "kaiming") == (cell["init"] or "kaiming")
    assert v["momentum"] == 0.9 and v["lr"] == 0.1 and v["lr_decay"] == 0.1
    assert v["temperature"] == 200 and v["scope"] == "global"
    if cell["ds"] == "imagenet2012":
        assert (v["epochs"], v["lr_step_epochs"], v["batch_size"], v["weight_decay"]) == (150, 50, 256, 1e-4)
        assert (v["samples_per_class"], v["scoring_batches"], v["scoring_batch_size"], v["chunk_size"]) == (0, 150, 250, 20)
        return
    assert v["batch_size"] == 128 and v["lr_boundaries"] == ["0.5", "0.75"]
    assert v["epochs"] == {"tiny_imagenet": 300}.get(cell["ds"], 160)
    assert v["weight_decay"] == {"vgg19": 5e-4, "resnet32": 1e-4}[cell["model"]]
    if cell["model"] == "resnet32":
        assert v["width"] == 2
    spc_draws = {("cifar100", "resnet32"): (5, 2), ("tiny_imagenet", "vgg19"): (1, 10),
                 ("tiny_imagenet", "resnet32"): (1, 10)}.get((cell["ds"], cell["model"]), (10, 1))
    assert (v["samples_per_class"], v["num_draws"]) == spc_draws


def test_quickstart_parses():
    v = parse(os.path.join(ROOT, "configs", "quickstart.cfg"))
    assert v["dataset"] == "fashion_mnist" and v["method"] == "grasp" and v["sparsity"] >= 0.98

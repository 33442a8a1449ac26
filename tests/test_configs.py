"""Every flagfile in configs/ parses and matches the paper's recipe (the authors' samples and recipe)."""
import glob
import os
import re

import pytest
from absl import flags

import train.flags  # noqa: F401  (defines the flags)

train.flags.define_method_flags()  # and the methods' options (--temperature, --chunk_size, ...)
from configs.make_configs import cells, render
from train import flagfiles

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = sorted(glob.glob(os.path.join(ROOT, "configs", "paper", "*.cfg")))
CFG = re.compile(r"(?P<ds>cifar10|cifar100|tiny_imagenet|imagenet2012)_(?P<model>[a-z0-9_]+?)_"
                 r"(?P<method>[a-z]+)(?:_(?P<s>[0-9.]+))?(?:_(?P<init>normal|xavier))?\.cfg")


def parse(path):
    """A flagfile's final flag values (nested files expanded as the tools do, later wins), type-checked by absl."""
    argv = flagfiles.expand(["prog", f"--flagfile={path}"])[1:]
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
    assert v["scope"] == "global"
    # A method's own options only in the cells of methods taking them (else train.run refuses the cell):
    # GraSP at the reference's T = 200; SNIP at its T = 1 (never set); ImageNet pieces of 20 for both.
    assert v.get("temperature") == (200 if cell["method"] == "grasp" else None)
    assert v.get("chunk_size") == (20 if cell["ds"] == "imagenet2012" and cell["method"] != "none" else None)
    from grasp_tf import criteria

    method = cell["method"]
    taken = {train.flags.FLAG_OF[(method, o)] for o in criteria.get(method).mask_options} if method != "none" else set()
    assert {k for k in v if k in train.flags.METHOD_FLAGS} <= taken, "a method option the cell's method lacks"
    if cell["ds"] == "imagenet2012":
        assert (v["epochs"], v["lr_step_epochs"], v["batch_size"], v["weight_decay"]) == (150, 50, 256, 1e-4)
        assert (v["samples_per_class"], v["scoring_batches"], v["scoring_batch_size"]) == (0, 150, 250)
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

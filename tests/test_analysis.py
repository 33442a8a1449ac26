"""Analysis: gradient norm after pruning, per-layer density, statistics, and the train.analyze commands."""
import csv
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from PIL import Image

import grasp_tf
import models
from grasp_tf import analysis
from grasp_tf.prunable import prunable_weights
from train import analyze, artifacts


def conv4(seed=0):
    return models.build("conv4", 10, (28, 28, 1), seed=seed)


def no_bn_net():
    """A small net without batch norm, so the loss of a batch is the mean of its examples' losses."""
    inp = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="c1")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inp, keras.layers.Dense(10, name="fc")(h))


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_png(path, min_size=(400, 300)):
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size[0] >= min_size[0] and img.size[1] >= min_size[1]


def run_cli(command, tmp_path, **values):
    """Parse flags like the command line would (a private FlagValues) and run ``command``."""
    fv = flags.FlagValues()
    analyze.define_flags(fv)
    argv = fv(["analyze", command, f"--output_dir={tmp_path}",
               *(f"--{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in values.items())])
    return analyze.main(argv, fv)


# ----------------------------------------------------------------------------- gradient norm


def test_dense_net_is_exactly_one_relative(fashion_mnist_slice):
    model = conv4()
    ones = {w.key: np.ones(w.variable.shape, bool) for w in prunable_weights(model)}
    assert analysis.relative_gradient_norm(model, fashion_mnist_slice, None, batch_size=100) == 1.0
    # All-ones masks take the masked path (θ ⊙ m, gradient ⊙ m) and must give the same number, bit for bit.
    assert analysis.relative_gradient_norm(model, fashion_mnist_slice, ones, batch_size=100) == 1.0


@pytest.mark.parametrize("weights", ["trainable", "prunable"])
def test_random_pruning_at_99_lowers_the_gradient_norm(fashion_mnist_slice, weights):
    model = conv4()
    masks = grasp_tf.compute_masks(model, None, 0.99, "random", seed=0)
    assert analysis.relative_gradient_norm(model, fashion_mnist_slice, masks, weights=weights, batch_size=200) < 0.5


def test_gradient_norm_is_that_of_a_plain_tape_and_leaves_the_model_alone(fashion_mnist_slice):
    x, y = fashion_mnist_slice
    model = conv4()
    before = [v.numpy().copy() for v in model.variables]
    norm = analysis.gradient_norm(model, (x, y), batch_size=len(x))
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.variables))  # BN statistics too
    twin = conv4()  # same seed, same weights: a plain tape in training mode
    with tf.GradientTape() as tape:
        logits = twin(x, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    variables = twin.trainable_variables
    grads = dict(zip([v.path for v in variables], tape.gradient(loss, variables)))

    def l2(keys):
        return math.sqrt(sum(float(tf.reduce_sum(grads[k] ** 2)) for k in keys))

    assert norm == pytest.approx(l2(grads), rel=1e-5)
    kernels = [k for k in grads if k.endswith("/kernel")]
    assert len(kernels) == 5
    prunable = analysis.gradient_norm(model, (x, y), batch_size=len(x), weights="prunable")
    assert prunable == pytest.approx(l2(kernels), rel=1e-5)
    assert prunable < norm


def test_streamed_gradient_is_the_example_weighted_mean(fashion_mnist_slice):
    x, y = fashion_mnist_slice
    model = no_bn_net()
    whole = analysis.gradient_norm(model, (x, y), batch_size=len(x))
    assert analysis.gradient_norm(model, (x, y), batch_size=64) == pytest.approx(whole, rel=1e-5)  # 64+64+64+8
    stream = tf.data.Dataset.from_tensor_slices((x, y)).batch(48)
    assert analysis.gradient_norm(model, stream) == pytest.approx(whole, rel=1e-5)
    first = analysis.gradient_norm(model, (x[:70], y[:70]), batch_size=70)
    assert analysis.gradient_norm(model, stream, max_examples=70) == pytest.approx(first, rel=1e-5)
    assert first != pytest.approx(whole, rel=1e-3)  # the limit really cut the data


def test_masks_argument_is_the_masked_model(fashion_mnist_slice):
    model = conv4()
    masks = grasp_tf.compute_masks(model, None, 0.9, "random", seed=0)
    pruned = grasp_tf.apply_masks(model, masks)
    dense, direct = analysis.gradient_norms(model, fashion_mnist_slice, [None, masks], batch_size=200)
    assert direct == pytest.approx(analysis.gradient_norm(pruned, fashion_mnist_slice, batch_size=200), rel=1e-6)
    assert direct < dense


def test_gradient_norm_rejects_bad_masks(fashion_mnist_slice):
    with pytest.raises(ValueError, match="does not have"):
        analysis.gradient_norm(conv4(), fashion_mnist_slice, {"nope/kernel": np.ones(3, bool)})
    with pytest.raises(ValueError, match="not trainable"):
        analysis.gradient_norm(conv4(), fashion_mnist_slice, {"bn1/moving_mean": np.ones(32, bool)})


# ----------------------------------------------------------------------------- masks and densities


def test_masks_at_sparsities_are_compute_masks(fashion_mnist_slice):
    model = conv4()
    several = analysis.masks_at_sparsities(model, fashion_mnist_slice, [0.5, 0.9], "snip", seed=0)
    for s, masks in zip([0.5, 0.9], several):
        single = grasp_tf.compute_masks(model, fashion_mnist_slice, s, "snip", seed=0)
        assert list(masks) == list(single)
        assert all(np.array_equal(masks[k], single[k]) for k in single)


def test_layer_densities_count_the_masks():
    rng = np.random.default_rng(0)
    masks = {"b/kernel": rng.random((3, 3, 4, 8)) < 0.3, "a/kernel": rng.random((8, 10)) < 0.7}
    d = analysis.layer_densities(masks)
    assert list(d) == ["b/kernel", "a/kernel"]
    for k, m in masks.items():
        assert d[k] == m.sum() / m.size
    assert list(analysis.layer_densities(masks, ["a/kernel", "b/kernel"])) == ["a/kernel", "b/kernel"]
    with pytest.raises(ValueError, match="not matching"):
        analysis.layer_densities(masks, ["a/kernel"])


# ----------------------------------------------------------------------------- statistics


def t_two_sided_mass(q, df, steps=400_001):
    """P(|T| <= q) for Student's t with df degrees of freedom, by the trapezoid rule on its density."""
    t = np.linspace(-q, q, steps)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    pdf = np.exp(log_c - (df + 1) / 2 * np.log1p(t * t / df))
    return float(np.sum((pdf[1:] + pdf[:-1]) / 2) * (t[1] - t[0]))


@pytest.mark.parametrize("df", [1, 2, 4, 9, 17, 30, 45, 90, 500])
def test_t_quantiles_hold_95_percent(df):
    assert t_two_sided_mass(analysis.t_quantile_975(df), df) == pytest.approx(0.95, abs=2e-4)


def test_mean_ci95_and_std():
    mean, half = analysis.mean_ci95([1.0, 2.0, 3.0, 4.0, 5.0])
    assert mean == 3.0
    assert half == pytest.approx(2.776445 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)
    assert analysis.mean_std([2.0, 4.0]) == (3.0, pytest.approx(math.sqrt(2.0)))
    single = analysis.mean_ci95([0.7])
    assert single[0] == 0.7 and math.isnan(single[1])


def test_paired_t_test_by_hand():
    # Differences 1, 2, 2, 3: mean 2, std sqrt(2/3), t = 2 / (sqrt(2/3) / 2) = 4.899 > t(3) = 3.1824.
    test = analysis.paired_t_test([1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 1.0, 1.0])
    assert test["n"] == 4 and test["mean"] == 2.0 and test["std"] == pytest.approx(math.sqrt(2 / 3))
    assert test["t"] == pytest.approx(2 / (math.sqrt(2 / 3) / 2)) and test["reject"]
    assert test["t_critical"] == pytest.approx(3.1824, abs=1e-4)
    assert test["p"] == pytest.approx(1 - t_two_sided_mass(test["t"], 3), abs=2e-4)
    same = analysis.paired_t_test([0.5, 0.7], [0.4, 0.6])  # every difference equal (up to rounding)
    assert same["reject"] and abs(same["t"]) > 1e6
    zero = analysis.paired_t_test([0.5, 0.7], [0.5, 0.7])
    assert (zero["t"], zero["p"], zero["reject"]) == (0.0, 1.0, False)
    assert analysis.paired_t_test([2.0, 2.0], [1.0, 1.0])["t"] == math.inf
    with pytest.raises(ValueError, match="at least 2 pairs, got 1"):
        analysis.paired_t_test([1.0], [0.0])
    with pytest.raises(ValueError, match="equally long"):
        analysis.paired_t_test([1.0, 2.0], [0.0])
    with pytest.raises(ValueError, match="df must be a positive number, got 0"):
        analysis.t_quantile_975(0)


# ----------------------------------------------------------------------------- commands


def write_run(path, method, sparsity, seed, best, final=None, dataset="fashion_mnist", model="conv4", epochs=2,
              metrics=None, masks=None):
    """A run directory as train.run leaves it (results.json, metrics.csv, masks.npz)."""
    os.makedirs(path, exist_ok=True)
    config = {"dataset": dataset, "model": model, "method": method, "sparsity": sparsity, "seed": seed,
              "init": "kaiming", "epochs": epochs, "lr": 0.1, "output_dir": str(path), "overwrite": False}
    artifacts.write_json(os.path.join(path, "results.json"), {
        "config": config, "final_test_accuracy": best if final is None else final, "best_test_accuracy": best,
        "epochs_completed": epochs,
        "sparsity": {"weights": {}, "global": {"sparsity": 0.0 if method == "none" else sparsity}}})
    if metrics:
        artifacts.write_metrics(os.path.join(path, "metrics.csv"), metrics)
    if masks is not None:
        artifacts.save_masks(os.path.join(path, "masks.npz"), masks)


def test_compare_aggregates_seeds_and_sets_paper_numbers_beside(tmp_path):
    runs = tmp_path / "runs"
    for seed, acc in enumerate([0.80, 0.82, 0.87]):
        write_run(runs / f"g{seed}", "grasp", 0.9, seed, acc, final=acc - 0.01)
    write_run(runs / "s0", "snip", 0.9, 0, 0.75)
    write_run(runs / "long", "grasp", 0.9, 0, 0.95, epochs=20)  # another recipe: never averaged in
    write_run(runs / "deep" / "c10", "grasp", 0.95, 0, 0.93, dataset="cifar10", model="vgg19")
    out = tmp_path / "out"
    files = run_cli("compare", out, runs=[str(runs)])
    rows = {(r["dataset"], r["method"], r["settings"]): r for r in read_rows(out / "compare.csv")}
    assert len(rows) == 4
    g = rows[("fashion_mnist", "grasp", "epochs=2")]
    assert (g["runs"], g["seeds"]) == ("3", "0 1 2")
    assert float(g["best_test_accuracy_mean"]) == pytest.approx(83.0)
    assert float(g["best_test_accuracy_std"]) == pytest.approx(np.std([80, 82, 87], ddof=1))
    assert float(g["final_test_accuracy_mean"]) == pytest.approx(82.0)
    assert float(rows[("fashion_mnist", "grasp", "epochs=20")]["best_test_accuracy_mean"]) == pytest.approx(95.0)
    assert math.isnan(float(rows[("fashion_mnist", "snip", "epochs=2")]["best_test_accuracy_std"]))
    assert rows[("fashion_mnist", "grasp", "epochs=2")]["paper"] == ""
    # CIFAR-10 VGG19 GraSP 95% is in the paper's Tables 1 and 2.
    assert rows[("cifar10", "grasp", "epochs=2")]["paper"] == "93.04 ± 0.2 (T1); 93.04 ± 0.18 (T2)"
    table = (out / "compare.md").read_text()
    assert "| fashion_mnist | conv4 | grasp | 90% | kaiming | epochs=2 | 3 | 83.00 ± 3.61 | 82.00 ± 3.61 | – |" in table
    assert_png(out / "compare.png")
    assert str(out / "compare.png") in files


def test_paper_results_match_the_published_tables():
    cells = analyze.paper_cells(analyze.PAPER_RESULTS)
    assert sum(len(v) for v in cells.values()) == 32 + 28 + 14 + 14 + 12  # top-1 cells of Tables 1-5 + dense
    assert cells[("cifar100", "resnet32", "random", 0.995, "kaiming")][0]["mean"] == "18.51"
    assert cells[("imagenet2012", "resnet50", "grasp", 0.9, "kaiming")][0]["mean"] == "68.14"
    assert [c["mean"] for c in cells[("cifar10", "resnet32", "grasp", 0.9, "kaiming")]] == ["92.38", "92.12"]
    assert cells[("tiny_imagenet", "vgg19", "none", 0.0, "kaiming")][0]["mean"] == "61.38"


def test_curves_read_metrics_csv(tmp_path):
    for method, offset in (("grasp", 0.0), ("snip", 0.3)):
        write_run(tmp_path / method, method, 0.98, 0, 0.8, metrics=[
            {"epoch": e, "loss": 2.0 / e + offset, "test_loss": 2.2 / e + offset, "accuracy": 0.3 * e,
             "test_accuracy": 0.25 * e, "lr": 0.1} for e in (1, 2, 3)])
    out = tmp_path / "out"
    run_cli("curves", out, runs=[str(tmp_path / "grasp"), str(tmp_path / "snip" / "metrics.csv")])
    rows = read_rows(out / "curves.csv")
    assert [(r["run"], r["epoch"]) for r in rows] == [("grasp 98%", "1.0"), ("grasp 98%", "2.0"),
                                                      ("grasp 98%", "3.0"), ("snip 98%", "1.0"),
                                                      ("snip 98%", "2.0"), ("snip 98%", "3.0")]
    assert float(rows[4]["test_loss"]) == pytest.approx(2.2 / 2 + 0.3)
    assert float(rows[2]["accuracy"]) == pytest.approx(0.9)
    assert_png(out / "curves.png", min_size=(800, 300))


def test_layers_from_runs_agree_with_the_masks(tmp_path):
    rng = np.random.default_rng(1)
    shapes = {"conv1/kernel": (3, 3, 1, 8), "conv2/kernel": (3, 3, 8, 8), "fc/kernel": (8, 10)}
    masks = {m: {k: rng.random(s) < p for k, s in shapes.items()} for m, p in (("grasp", 0.2), ("snip", 0.6))}
    for m in masks:
        write_run(tmp_path / m, m, 0.9, 0, 0.5, masks=masks[m])
    out = tmp_path / "out"
    run_cli("layers", out, runs=[str(tmp_path / "grasp"), str(tmp_path / "snip")], labels=["G", "S"])
    rows = read_rows(out / "layers.csv")
    assert [r["weight"] for r in rows] == list(shapes)
    for r in rows:
        key = r["weight"]
        assert int(r["size"]) == np.prod(shapes[key])
        assert float(r["G"]) == pytest.approx(masks["grasp"][key].mean())
        assert float(r["S"]) == pytest.approx(masks["snip"][key].mean())
    assert_png(out / "layers.png")


def test_layers_computed_on_fashion_mnist(tmp_path):
    run_cli("layers", tmp_path, methods=["snip", "random"], sparsity=0.95)
    rows = read_rows(tmp_path / "layers.csv")
    assert [r["weight"] for r in rows] == ["conv1/kernel", "conv2/kernel", "conv3/kernel", "conv4/kernel",
                                           "fc/kernel"]
    sizes = np.array([int(r["size"]) for r in rows])
    for label in ("snip 95%", "random 95%"):
        kept = np.array([float(r[label]) for r in rows]) * sizes
        assert np.allclose(kept, np.round(kept))  # whole weights
        assert kept.sum() == pytest.approx(0.05 * sizes.sum(), abs=1)  # one global threshold
    assert np.ptp([float(r["snip 95%"]) for r in rows]) > 0.1  # SNIP's layers differ; not the uniform random
    assert_png(tmp_path / "layers.png")


def test_gradnorm_command_on_fashion_mnist(tmp_path):
    run_cli("gradnorm", tmp_path, methods=["random"], sparsities=[0.5, 0.99], trials=2, limit=128)
    rows = read_rows(tmp_path / "gradnorm.csv")
    assert len(rows) == 4
    for r in rows:
        assert float(r["relative"]) == pytest.approx(float(r["grad_norm"]) / float(r["dense_grad_norm"]))
    assert rows[0]["dense_grad_norm"] != rows[2]["dense_grad_norm"]  # a new initialization per trial
    summary = {r["sparsity"]: r for r in read_rows(tmp_path / "gradnorm_summary.csv")}
    values = [float(r["relative"]) for r in rows if r["sparsity"] == "0.99"]
    s = summary["0.99"]
    assert float(s["mean"]) == pytest.approx(np.mean(values))
    half = 12.7062 * np.std(values, ddof=1) / math.sqrt(2)
    assert (float(s["ci95_low"]), float(s["ci95_high"])) == pytest.approx((np.mean(values) - half,
                                                                            np.mean(values) + half))
    assert float(s["mean"]) < float(summary["0.5"]["mean"]) < 1.0
    assert artifacts.read_json(str(tmp_path / "gradnorm.json"))["settings"]["examples"] == 128
    assert_png(tmp_path / "gradnorm.png")


def test_commands_report_bad_input(tmp_path):
    with pytest.raises(analyze.UsageError, match="needs --runs"):
        run_cli("curves", tmp_path)
    with pytest.raises(analyze.UsageError, match="usage"):
        analyze.main(["analyze", "plot"])
    with pytest.raises(analyze.UsageError, match="unknown"):
        run_cli("gradnorm", tmp_path, methods=["nope"])


@pytest.mark.subprocess
def test_gradnorm_says_what_it_will_do_and_prints_progress_lines_when_not_on_a_terminal(tmp_path):
    import re
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-m", "train.analyze", "gradnorm", "--methods=random", "--sparsities=0.5",
                        "--trials=2", "--limit=128", f"--output_dir={tmp_path}"], cwd=root, capture_output=True,
                       text=True, timeout=600, env={**os.environ, "PYTHONPATH": root})
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert re.fullmatch(r"gradnorm: 2 initializations x 1 methods \(random\) x 1 pruning ratios of conv4 on 128 "
                        r"fashion_mnist examples \(1 batches of 128\): 4 steps, about \d+(\.\d)? (s|min|h) .*", lines[0])
    progress = [line for line in lines if re.match(r"gradnorm: \d/4 steps, ", line)]  # one per step
    assert [line.split(" steps")[0] for line in progress] == [f"gradnorm: {i}/4" for i in (1, 2, 3, 4)]
    assert all(re.search(r", [\d.]+ (s|min|h), ETA [\d.]+ (s|min|h) \(", line) for line in progress[:3])
    assert re.search(r", [\d.]+ (s|min|h), done \(", progress[3])
    assert progress[2].endswith("(trial 2/2: random scored)")
    assert lines[-1].startswith("wrote ")


def test_run_identity_and_compare_grouping_share_one_list_of_execution_flags():
    from train.analyze import compare
    from train.run import NOT_IN_IDENTITY

    assert NOT_IN_IDENTITY is artifacts.EXECUTION_FLAGS
    assert compare.EXECUTION_KEYS == artifacts.EXECUTION_FLAGS | {"seed"}
    assert analyze.EXECUTION_KEYS is compare.EXECUTION_KEYS


def test_compare_legend_follows_the_figures_method_order(tmp_path, monkeypatch):
    """Dense first, then GraSP, SNIP, random (as gradnorm and layers order them), not alphabetically."""
    import matplotlib.pyplot as plt

    from train.analyze import compare

    rows = [dict(dataset="fashion_mnist", model="conv4", method=m, sparsity=0.0 if m == "none" else 0.9,
                 init="kaiming", settings="", best_test_accuracy_mean=50.0, best_test_accuracy_std=1.0)
            for m in ("random", "none", "snip", "grasp")]
    seen = {}
    monkeypatch.setattr(compare, "save_figure",
                        lambda fig, path: seen.update(labels=fig.axes[0].get_legend_handles_labels()[1]))
    compare.plot_compare(rows, {}, "best_test_accuracy", str(tmp_path / "c.png"))
    plt.close("all")
    assert seen["labels"] == ["dense", "grasp", "snip", "random"]


def test_compare_settings_show_a_method_option_only_where_it_varies_within_the_method(tmp_path):
    """Each method's own options (null for the others) do not split or label groups unless they vary."""
    from train.analyze import compare

    def result(method, seed, **options):
        config = {"dataset": "fashion_mnist", "model": "conv4", "method": method, "sparsity": 0.9, "seed": seed,
                  "init": "kaiming", "epochs": 2, "temperature": None, "rounds": None, **options}
        return {"config": config, "best_test_accuracy": 0.5, "final_test_accuracy": 0.5,
                "sparsity": {"global": {"sparsity": 0.9}}}

    plain = [result("grasp", s, temperature=200.0) for s in (0, 1)] + [result("force", s, rounds=60) for s in (0, 1)]
    assert [(r["method"], r["settings"], r["runs"]) for r in compare.aggregate(plain)] == [
        ("force", "", 2), ("grasp", "", 2)]
    varied = plain + [result("grasp", 2, temperature=1.0)]
    assert [(r["method"], r["settings"], r["runs"]) for r in compare.aggregate(varied)] == [
        ("force", "", 2), ("grasp", "temperature=1.0", 1), ("grasp", "temperature=200.0", 2)]

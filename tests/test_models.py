"""models/: the reference architectures, their parameter counts, initialisation and padding."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import models
from models import resnet

CONV_DENSE = (keras.layers.Conv2D, keras.layers.Dense)
IMAGENET = ("resnet50", "vgg16_imagenet")


def prunable_count(model):
    """Conv and Dense kernels (all are scored, as in the authors' code), counted without grasp_tf."""
    return sum(int(np.prod(l.kernel.shape)) for l in model.layers if isinstance(l, CONV_DENSE))


def total_count(model):
    """PyTorch's ``parameters()``: every trainable weight, BN moving statistics excluded."""
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def bn_channels(model):
    """Channels over all BatchNorm layers (each has gamma, beta, moving mean and variance)."""
    return sum(l.gamma.shape[0] for l in model.layers if isinstance(l, keras.layers.BatchNormalization))


def test_registry_names():
    assert models.names() == sorted(
        ["conv4", "lenet300", "resnet20", "resnet32", "resnet56", "resnet110", "resnet50", "vgg16", "vgg19",
         "vgg16_imagenet"])


@pytest.mark.parametrize("name, classes, shape, width, prunable, total", [
    ("vgg19", 10, (32, 32, 3), None, 20_024_000, 20_035_018),
    ("resnet32", 10, (32, 32, 3), None, 1_855_584, 1_860_522),  # the default width is the paper's 2
    ("resnet32", 10, (32, 32, 3), 2, 1_855_584, 1_860_522),
    ("resnet20", 10, (32, 32, 3), 1, 270_896, 272_474),  # He et al.'s 16/32/64 with projections
    ("resnet50", 1000, (224, 224, 3), None, 25_502_912, 25_557_032),  # torchvision: 25,557,032
    ("lenet300", 10, (28, 28, 1), None, 266_200, 266_610),  # 784-300-100-10
])
def test_parameter_counts(name, classes, shape, width, prunable, total):
    model = models.build(name, classes, shape, width=width)
    assert prunable_count(model) == prunable
    assert total_count(model) == total
    # Keras' count_params() also counts BN moving mean/variance; the reference's numbers do not.
    assert model.count_params() == total + 2 * bn_channels(model)


def test_vgg_pools_over_the_final_map():
    cifar = models.build("vgg19", 10, (32, 32, 3))
    tiny = models.build("vgg19", 200, (64, 64, 3))
    assert cifar.get_layer("avgpool").pool_size == (2, 2)
    assert tiny.get_layer("avgpool").pool_size == (4, 4)
    # Same features at both sizes: only the classifier's output width differs.
    assert prunable_count(tiny) - prunable_count(cifar) == 512 * 190
    assert tiny.get_layer("flatten").output.shape[-1] == 512
    mnist = models.build("vgg16", 10, (28, 28, 1))  # builds: 28 -> 14 -> 7 -> 3 -> 1
    assert mnist.get_layer("avgpool").pool_size == (1, 1)
    assert mnist.output.shape == (None, 10)


def test_vgg19_layer_order():
    model = models.build("vgg19", 10, (32, 32, 3))
    kinds = [type(l).__name__ for l in model.layers[1:]]
    expected = []
    for v in [64, 64, "M", 128, 128, "M"] + [256] * 4 + ["M"] + [512] * 4 + ["M"] + [512] * 4:
        expected += ["MaxPooling2D"] if v == "M" else ["Conv2D", "BatchNormalization", "ReLU"]
    assert kinds == expected + ["AveragePooling2D", "Flatten", "Dense"]
    widths = [l.filters for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert widths == [64, 64, 128, 128] + [256] * 4 + [512] * 8
    assert all(l.kernel_size == (3, 3) for l in model.layers if isinstance(l, keras.layers.Conv2D))


def reference_resnet_order(blocks, stages=3, last="linear", convs=2):
    """Conv/Linear module names of a torch ResNet in ``modules()`` order, projections at stage starts."""
    names = ["conv1"]
    for s in range(1, stages + 1):
        for b in range(blocks[s - 1]):
            names += [f"layer{s}.{b}.conv{i}" for i in range(1, convs + 1)]
            if b == 0 and (s > 1 or convs == 3):
                names.append(f"layer{s}.{b}.downsample.0")
    return names + [last]


def test_resnet_layer_order_matches_reference_modules():
    r32 = models.build("resnet32", 10, (32, 32, 3))
    assert [l.name for l in r32.layers if isinstance(l, CONV_DENSE)] == reference_resnet_order([5] * 3)
    stage_widths = [r32.get_layer(f"layer{s}.0.conv1").filters for s in (1, 2, 3)]
    assert stage_widths == [32, 64, 128]
    assert r32.get_layer("layer2.0.downsample.0").kernel_size == (1, 1)
    assert r32.get_layer("layer2.0.downsample.0").strides == (2, 2)
    r20 = models.build("resnet20", 10, (32, 32, 3), width=1)
    assert [r20.get_layer(f"layer{s}.0.conv1").filters for s in (1, 2, 3)] == [16, 32, 64]
    r50 = models.build("resnet50", 1000, (224, 224, 3))
    order = reference_resnet_order([3, 4, 6, 3], stages=4, last="fc", convs=3)
    assert [l.name for l in r50.layers if isinstance(l, CONV_DENSE)] == order
    # torchvision v1.5: the stride sits on the 3x3 conv; 7x7 stem padded 3 on every side.
    assert r50.get_layer("layer2.0.conv2").strides == (2, 2)
    assert r50.get_layer("layer2.0.conv1").strides == (1, 1)
    assert r50.get_layer("conv1_pad").padding == ((3, 3), (3, 3))
    assert r50.get_layer("avgpool").output.shape[-1] == 2048


def test_kaiming_init_statistics():
    model = models.build("vgg19", 10, (32, 32, 3), seed=1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and np.prod(layer.kernel.shape) >= 10_000:
            w = layer.kernel.numpy()
            fan_out = w.shape[0] * w.shape[1] * w.shape[3]
            assert np.std(w) == pytest.approx(math.sqrt(2.0 / fan_out), rel=0.05), layer.name
            assert abs(np.mean(w)) < 0.05 * np.std(w)
    big = model.get_layer("feature.49").kernel.numpy()  # 3x3x512x512, 2.4 M draws
    assert big.shape == (3, 3, 512, 512)
    assert np.max(np.abs(big)) > 4 * np.std(big)  # untruncated: Keras' truncated normal stops at 2 std
    head = model.get_layer("classifier")
    assert np.std(head.kernel.numpy()) == pytest.approx(0.01, rel=0.05)
    assert not np.any(head.bias.numpy())
    for bn in (l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)):
        assert np.all(bn.gamma.numpy() == 1) and not np.any(bn.beta.numpy())
        assert bn.momentum == 0.9 and bn.epsilon == 1e-5


@pytest.mark.parametrize("init", ["normal", "xavier"])
def test_table5_inits(init):
    model = models.build("conv4", 10, (16, 16, 3), init=init, seed=1)
    w = model.get_layer("conv4").kernel.numpy()  # 3x3x64x64
    fc = model.get_layer("fc").kernel.numpy()  # 64x10
    expected = 0.1 if init == "normal" else math.sqrt(2.0 / (9 * 64 + 9 * 64))
    assert np.std(w) == pytest.approx(expected, rel=0.05)
    assert np.max(np.abs(w)) > 3 * np.std(w)  # untruncated
    fc_expected = 0.1 if init == "normal" else math.sqrt(2.0 / (64 + 10))
    assert np.std(fc) == pytest.approx(fc_expected, rel=0.25)  # only 640 draws


def test_seed_makes_init_deterministic():
    def weights(seed):
        return [v.numpy() for v in models.build("resnet20", 10, (8, 8, 3), width=1, seed=seed).weights]

    a, b, c = weights(7), weights(7), weights(8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    model = models.build("resnet20", 10, (8, 8, 3), width=1, seed=7)
    same_shape = [model.get_layer(f"layer1.{b}.conv{i}").kernel.numpy() for b in (0, 1) for i in (1, 2)]
    assert len({x.tobytes() for x in same_shape}) == 4  # every layer draws its own values


@pytest.mark.parametrize("call, match", [
    (lambda: models.build("vgg11", 10, (32, 32, 3)), "valid: conv4, .*resnet32.*vgg19"),
    (lambda: models.build("vgg19", 10, (32, 32, 3), width=2), "no width multiplier"),
    (lambda: models.build("resnet32", 10, (32, 32, 3), width=0), "positive integer"),
    (lambda: models.build("resnet32", 10, (32, 32, 3), width=1.5), "positive integer"),
    (lambda: resnet.cifar_resnet(33, 10, (32, 32, 3)), "6n \\+ 2"),
    (lambda: models.build("vgg19", 10, (8, 8, 3)), "8x8.*>= 16"),
    (lambda: models.build("vgg16_imagenet", 10, (32, 32, 3)), "224..255"),
    (lambda: models.build("resnet50", 10, (16, 16, 3)), ">= 32"),
    (lambda: models.build("conv4", 10, (32, 32)), "height, width, channels"),
    (lambda: models.build("conv4", 0, (32, 32, 3)), "num_classes"),
    (lambda: models.build("conv4", 10, (32, 32, 3), init="he"), "kaiming, normal, xavier"),
    (lambda: models.build("conv4", 10, (32, 32, 3), seed="1"), "seed"),
])
def test_bad_arguments_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_stride2_block_pads_symmetrically_like_torch():
    model = models.build("resnet32", 10, (32, 32, 3), seed=3)
    block = keras.Model(model.get_layer("layer1.4.relu2").output,
                        model.get_layer("layer2.0.relu2").output)
    rng = np.random.default_rng(0)
    for bn in ("bn1", "bn2", "bn3"):  # non-trivial inference-mode BN
        layer = model.get_layer(f"layer2.0.{bn}")
        layer.set_weights([rng.uniform(0.5, 1.5, 64), rng.normal(0, 0.1, 64),
                           rng.normal(0, 0.1, 64), rng.uniform(0.5, 1.5, 64)])
    x = tf.constant(rng.normal(size=(2, 32, 32, 32)), tf.float32)

    def bn(y, name):
        gamma, beta, mean, var = model.get_layer(f"layer2.0.{name}").get_weights()
        return (y - mean) / np.sqrt(var + 1e-5) * gamma + beta

    def expected(first_conv):
        k1, k2, k3 = (model.get_layer(f"layer2.0.{n}").kernel
                      for n in ("conv1", "conv2", "downsample.0"))
        out = tf.nn.relu(bn(first_conv(x, k1), "bn1"))
        out = bn(tf.nn.conv2d(out, k2, 1, "SAME"), "bn2")
        shortcut = bn(tf.nn.conv2d(x, k3, 2, "VALID"), "bn3")  # 1x1/2 picks x[::2, ::2], as torch
        return tf.nn.relu(out + shortcut).numpy()

    pad = [[0, 0], [1, 1], [1, 1], [0, 0]]
    torch_like = expected(lambda y, k: tf.nn.conv2d(tf.pad(y, pad), k, 2, "VALID"))
    tf_same = expected(lambda y, k: tf.nn.conv2d(y, k, 2, "SAME"))
    got = block(x, training=False).numpy()
    assert got.shape == (2, 16, 16, 64)
    np.testing.assert_allclose(got, torch_like, rtol=1e-4, atol=1e-4)
    assert np.max(np.abs(got - tf_same)) > 0.1


def fashion_inputs(name, x):
    """Fashion-MNIST for ``name``: 28 px grey (VGG padded to 32), or 224 px RGB for the ImageNet nets."""
    if name in IMAGENET:
        return tf.image.grayscale_to_rgb(tf.image.resize(x, (224, 224))).numpy()
    if name.startswith("vgg"):
        return np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)])
    return x


@pytest.fixture(scope="module")
def fashion_models(fashion_mnist_slice):
    """Every registered model, built once (seed 0) for its ``fashion_inputs`` shape."""
    x = fashion_mnist_slice[0][:1]
    return {name: models.build(name, 10, fashion_inputs(name, x).shape[1:], seed=0)
            for name in models.names()}


def test_convs_have_no_bias_except_torchvision_vgg16(fashion_models):
    for name, model in fashion_models.items():
        biased = [l.name for l in model.layers if isinstance(l, keras.layers.Conv2D) and l.use_bias]
        if name == "vgg16_imagenet":  # torchvision's vgg16_bn keeps its conv biases
            assert len(biased) == 13
        else:
            assert biased == [], name


def test_vgg16_imagenet_is_torchvision_vgg16_bn(fashion_models):
    model = fashion_models["vgg16_imagenet"]
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert [l.filters for l in convs] == [64] * 2 + [128] * 2 + [256] * 3 + [512] * 6
    assert sum(isinstance(l, keras.layers.MaxPooling2D) for l in model.layers) == 5
    assert model.get_layer("flatten").output.shape[-1] == 7 * 7 * 512
    head = [(type(l).__name__, getattr(l, "units", None)) for l in model.layers[-7:]]
    assert head == [("Dense", 4096), ("ReLU", None), ("Dropout", None), ("Dense", 4096), ("ReLU", None),
                    ("Dropout", None), ("Dense", 10)]
    # torchvision's vgg16_bn has 138,365,992 parameters; a 10-way head drops 990 * (4096 + 1).
    assert total_count(model) == 138_365_992 - 990 * 4097


@pytest.mark.parametrize("name", models.names())
def test_every_model_trains_on_fashion_mnist(name, fashion_models, fashion_mnist_slice):
    x, y = fashion_mnist_slice
    batch, steps = (2, 1) if name in IMAGENET else (8, 2)
    idx = np.random.default_rng(0).permutation(len(y))[:batch]
    xb, yb = fashion_inputs(name, x[idx]), y[idx]
    model = fashion_models[name]
    # Eager: on CPU, tracing a 110-layer train step costs more than the steps themselves.
    model.compile(optimizer=keras.optimizers.SGD(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False, run_eagerly=True)
    kernels = [l.kernel for l in model.layers if isinstance(l, CONV_DENSE)]
    before = [k.numpy() for k in kernels]
    losses = [float(model.train_on_batch(xb, yb)) for _ in range(steps)]
    assert np.all(np.isfinite(losses)), losses
    assert all(np.all(np.isfinite(v.numpy())) for v in model.trainable_weights)
    # The gradient reaches every layer.
    assert all(not np.array_equal(b, k.numpy()) for b, k in zip(before, kernels))
    logits = model.predict_on_batch(xb)
    assert logits.shape == (batch, 10) and np.all(np.isfinite(logits))
    if steps > 1:
        assert losses[-1] < losses[0], losses

"""ResNets: the reference's CIFAR ResNet (the authors' ResNet32) and torchvision's ResNet-50 (v1.5)."""
from __future__ import annotations

from typing import Sequence

import keras

from models.layers import Initializers, batch_norm, build_start, check_no_width, conv2d, dense

CIFAR_DEPTHS: tuple[int, ...] = (20, 32, 56, 110)
"""The depths with a registry name; any ``6n + 2`` builds through ``cifar_resnet``."""

DEFAULT_WIDTH = 2
"""The reference builds every depth with stages 32/64/128, i.e. width 2 of He et al.'s 16/32/64."""


def _basic_block(x: keras.KerasTensor, planes: int, strides: int, name: str,
                 inits: Initializers) -> keras.KerasTensor:
    """The reference ``BasicBlock``: conv-BN-ReLU-conv-BN + shortcut (1x1 conv + BN if shapes differ)."""
    shortcut = x
    out = conv2d(x, planes, 3, strides, f"{name}.conv1", inits)
    out = batch_norm(out, f"{name}.bn1")
    out = keras.layers.ReLU(name=f"{name}.relu1")(out)
    out = conv2d(out, planes, 3, 1, f"{name}.conv2", inits)
    out = batch_norm(out, f"{name}.bn2")
    if strides != 1 or x.shape[-1] != planes:
        shortcut = conv2d(x, planes, 1, strides, f"{name}.downsample.0", inits)
        shortcut = batch_norm(shortcut, f"{name}.bn3")
    out = keras.layers.Add(name=f"{name}.add")([out, shortcut])
    return keras.layers.ReLU(name=f"{name}.relu2")(out)


def cifar_resnet(depth: int, num_classes: int, input_shape: Sequence[int], init: str = "kaiming",
                 width: int | None = None, seed: int | None = None) -> keras.Model:
    """The reference CIFAR ResNet: 3x3 stem, 3 stages of (depth-2)/6 basic blocks, GAP, Dense.

    Stage widths are 16/32/64 times ``width`` (default 2, the reference's 32/64/128, i.e.
    the paper's "ResNet32 x2"; ``width=1`` is He et al.'s original); strides 1/2/2.
    """
    name = f"resnet{depth}"
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"A CIFAR ResNet has depth 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, "
                         f"110, ...), got {depth!r}.")
    width = DEFAULT_WIDTH if width is None else width
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"{name}: width must be a positive integer (1 gives stages 16/32/64, "
                         f"2 the reference's 32/64/128), got {width!r}.")
    num_classes, inputs, inits = build_start(name, num_classes, input_shape, init, seed, min_size=1)
    blocks = (depth - 2) // 6
    x = conv2d(inputs, 16 * width, 3, 1, "conv1", inits)
    x = batch_norm(x, "bn")
    x = keras.layers.ReLU(name="relu")(x)
    for stage, (planes, strides) in enumerate(((16 * width, 1), (32 * width, 2), (64 * width, 2)), 1):
        for b in range(blocks):
            x = _basic_block(x, planes, strides if b == 0 else 1, f"layer{stage}.{b}", inits)
    x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    outputs = dense(x, num_classes, "linear", inits)
    return keras.Model(inputs, outputs, name=name)


def _bottleneck(x: keras.KerasTensor, planes: int, strides: int, name: str,
                inits: Initializers) -> keras.KerasTensor:
    """torchvision's v1.5 ``Bottleneck``: 1x1, 3x3 (strided), 1x1 x4; projection if shapes differ."""
    shortcut = x
    out = x
    for i, (filters, kernel, s) in enumerate(((planes, 1, 1), (planes, 3, strides),
                                              (4 * planes, 1, 1)), 1):
        out = conv2d(out, filters, kernel, s, f"{name}.conv{i}", inits)
        out = batch_norm(out, f"{name}.bn{i}")
        if i < 3:
            out = keras.layers.ReLU(name=f"{name}.relu{i}")(out)
    if strides != 1 or x.shape[-1] != 4 * planes:
        shortcut = conv2d(x, 4 * planes, 1, strides, f"{name}.downsample.0", inits)
        shortcut = batch_norm(shortcut, f"{name}.downsample.1")
    out = keras.layers.Add(name=f"{name}.add")([out, shortcut])
    return keras.layers.ReLU(name=f"{name}.relu")(out)


def resnet50(num_classes: int, input_shape: Sequence[int], init: str = "kaiming",
             width: int | None = None, seed: int | None = None) -> keras.Model:
    """torchvision's ResNet-50 (v1.5): 7x7/2 stem, 3x3/2 max-pool, [3, 4, 6, 3] bottlenecks, GAP, fc.

    Every strided conv and the max-pool are padded symmetrically as in torch (the zero pad
    before the max-pool is exact because it follows a ReLU). Needs at least 32 px.
    """
    name = "resnet50"
    check_no_width(name, width)
    num_classes, inputs, inits = build_start(name, num_classes, input_shape, init, seed, min_size=32)
    x = conv2d(inputs, 64, 7, 2, "conv1", inits)
    x = batch_norm(x, "bn1")
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.ZeroPadding2D(1, name="maxpool_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="maxpool")(x)
    for stage, (planes, blocks, strides) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2),
                                                       (512, 3, 2)), 1):
        for b in range(blocks):
            x = _bottleneck(x, planes, strides if b == 0 else 1, f"layer{stage}.{b}", inits)
    x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    outputs = dense(x, num_classes, "fc", inits)
    return keras.Model(inputs, outputs, name=name)

"""A small, fast CPU network for quick starts and tests (not one of the paper's models)."""
from __future__ import annotations

from typing import Sequence

import keras

from models.layers import batch_norm, build_start, check_no_width, conv2d, dense


def conv4(num_classes: int, input_shape: Sequence[int], init: str = "kaiming",
          width: int | None = None, seed: int | None = None) -> keras.Model:
    """Four bias-free 3x3 convs (32, 32, M, 64, 64, M) with BN + ReLU, global average pool, Dense."""
    name = "conv4"
    check_no_width(name, width)
    num_classes, inputs, inits = build_start(name, num_classes, input_shape, init, seed, min_size=4)
    x = inputs
    for i, filters in enumerate((32, 32, 64, 64), 1):
        x = conv2d(x, filters, 3, 1, f"conv{i}", inits)
        x = batch_norm(x, f"bn{i}")
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        if i % 2 == 0:
            x = keras.layers.MaxPooling2D(2, name=f"pool{i // 2}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    outputs = dense(x, num_classes, "fc", inits)
    return keras.Model(inputs, outputs, name=name)


def lenet300(num_classes: int, input_shape: Sequence[int], init: str = "kaiming",
             width: int | None = None, seed: int | None = None) -> keras.Model:
    """LeNet-300-100 (SNIP's MLP): flatten, Dense 300 + ReLU, Dense 100 + ReLU, Dense classes.

    Hidden layers take the conv rule (He normal, fan_out, under ``kaiming``): the reference's
    Dense N(0, 0.01) is meant for a single classifier and would starve a stack of them.
    """
    name = "lenet300"
    check_no_width(name, width)
    num_classes, inputs, inits = build_start(name, num_classes, input_shape, init, seed, min_size=1)
    x = keras.layers.Flatten(name="flatten")(inputs)
    for i, units in enumerate((300, 100), 1):
        x = keras.layers.Dense(units, kernel_initializer=inits.conv_kernel(), bias_initializer="zeros",
                               name=f"fc{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    outputs = dense(x, num_classes, "fc3", inits)
    return keras.Model(inputs, outputs, name=name)

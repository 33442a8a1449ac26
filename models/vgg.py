"""VGG: the reference's CIFAR / Tiny-ImageNet VGG (the authors' VGG19, alecwangcq/GraSP) and torchvision's VGG16-BN."""
from __future__ import annotations

from typing import Sequence

import keras

from models.layers import Initializers, batch_norm, build_start, check_no_width, conv2d, dense

CIFAR_CONFIGS: dict[int, list[int | str]] = {
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512],
}
"""Conv widths and max-pools ("M") of the reference's ``defaultcfg``: four pools, not five."""

IMAGENET_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                  512, 512, 512, "M"]
"""torchvision's ``vgg16_bn`` features: five pools, 224 px down to 7x7."""


def _features(x: keras.KerasTensor, config: list[int | str], prefix: str, inits: Initializers,
              use_bias: bool) -> keras.KerasTensor:
    """3x3 conv + BN + ReLU per width, 2x2 max-pool per "M"; names follow the torch Sequential index."""
    i = 0
    for v in config:
        if v == "M":
            x = keras.layers.MaxPooling2D(2, name=f"{prefix}.{i}")(x)
            i += 1
        else:
            x = conv2d(x, v, 3, 1, f"{prefix}.{i}", inits, use_bias=use_bias)
            x = batch_norm(x, f"{prefix}.{i + 1}")
            x = keras.layers.ReLU(name=f"{prefix}.{i + 2}")(x)
            i += 3
    return x


def cifar_vgg(depth: int, num_classes: int, input_shape: Sequence[int], init: str = "kaiming",
              width: int | None = None, seed: int | None = None) -> keras.Model:
    """The reference VGG16/19: bias-free 3x3 convs, BN + ReLU, four max-pools, avg-pool, one Dense.

    The average pool spans the whole final feature map: 2x2 at 32 px (CIFAR), 4x4 at 64 px
    (Tiny-ImageNet), as in the reference; any input of at least 16 px builds (28 px gives
    a 1x1 map, so pad Fashion-MNIST to 32 to keep the CIFAR geometry).
    """
    if depth not in CIFAR_CONFIGS:
        raise ValueError(f"No CIFAR VGG of depth {depth!r}; valid depths: "
                         f"{', '.join(map(str, CIFAR_CONFIGS))}.")
    name = f"vgg{depth}"
    check_no_width(name, width)
    num_classes, inputs, inits = build_start(name, num_classes, input_shape, init, seed, min_size=16)
    x = _features(inputs, CIFAR_CONFIGS[depth], "feature", inits, use_bias=False)
    x = keras.layers.AveragePooling2D((inputs.shape[1] // 16, inputs.shape[2] // 16), name="avgpool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = dense(x, num_classes, "classifier", inits)
    return keras.Model(inputs, outputs, name=name)


def imagenet_vgg16(num_classes: int, input_shape: Sequence[int], init: str = "kaiming",
                   width: int | None = None, seed: int | None = None) -> keras.Model:
    """torchvision's ``vgg16_bn``: 13 convs (with bias) + BN + ReLU, five pools, 4096-4096 classifier.

    Built for 224 px (any 224..255 px input pools to torchvision's 7x7 map), Dropout 0.5
    after each hidden Dense as in torchvision. Keras flattens the 7x7x512 map HWC, torch
    CHW: reorder ``classifier.0``'s input rows when loading torchvision weights.
    """
    name = "vgg16_imagenet"
    check_no_width(name, width)
    num_classes, inputs, inits = build_start(name, num_classes, input_shape, init, seed, min_size=224, max_size=255)
    x = _features(inputs, IMAGENET_VGG16, "features", inits, use_bias=True)
    x = keras.layers.Flatten(name="flatten")(x)
    for i in (0, 3):
        x = dense(x, 4096, f"classifier.{i}", inits)
        x = keras.layers.ReLU(name=f"classifier.{i + 1}")(x)
        x = keras.layers.Dropout(0.5, name=f"classifier.{i + 2}")(x)
    outputs = dense(x, num_classes, "classifier.6", inits)
    return keras.Model(inputs, outputs, name=name)

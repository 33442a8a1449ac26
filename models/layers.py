"""Initialisers and the conv / BatchNorm building blocks shared by every model family.

Layers are named after the PyTorch modules of the reference code (``layer2.0.conv1``,
``feature.3``, ...), so a reference ``state_dict`` key maps to a Keras layer by name.
"""
from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

INITS: tuple[str, ...] = ("kaiming", "normal", "xavier")
"""The initialisation schemes of the paper's Table 5; ``kaiming`` is the reference default."""

BN_MOMENTUM = 0.9  # PyTorch momentum 0.1
BN_EPSILON = 1e-5


class Initializers:
    """Hands out a fresh, independently seeded initializer for every layer of one build.

    ``kaiming``: conv kernels He normal (fan_out, untruncated), Dense kernels N(0, 0.01),
    as the reference's ``weights_init``. ``normal``: conv and Dense kernels N(0, 0.1).
    ``xavier``: conv and Dense kernels Glorot normal (untruncated). Biases are zero.
    """

    def __init__(self, scheme: str, seed: int | None = None):
        if scheme not in INITS:
            raise ValueError(f"Unknown init {scheme!r}; valid: {', '.join(INITS)}.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"seed must be an int or None, got {seed!r}.")
        self.scheme = scheme
        self._rng = None if seed is None else np.random.default_rng(int(seed))

    def _seed(self) -> int | None:
        """A new seed per initializer: a seeded Keras initializer repeats its draw on every call."""
        return None if self._rng is None else int(self._rng.integers(0, 2**31 - 1))

    def _normal(self, std: float) -> keras.initializers.Initializer:
        return keras.initializers.RandomNormal(0.0, std, seed=self._seed())

    def _scaling(self, scale: float, mode: str) -> keras.initializers.Initializer:
        return keras.initializers.VarianceScaling(scale, mode, "untruncated_normal", seed=self._seed())

    def conv_kernel(self) -> keras.initializers.Initializer:
        """Initializer for one conv kernel under this scheme."""
        if self.scheme == "kaiming":
            return self._scaling(2.0, "fan_out")
        if self.scheme == "normal":
            return self._normal(0.1)
        return self._scaling(1.0, "fan_avg")

    def dense_kernel(self) -> keras.initializers.Initializer:
        """Initializer for one Dense kernel under this scheme."""
        if self.scheme == "kaiming":
            return self._normal(0.01)
        if self.scheme == "normal":
            return self._normal(0.1)
        return self._scaling(1.0, "fan_avg")


def check_num_classes(num_classes: int) -> int:
    """``num_classes`` as an int, or a ValueError when it is not a positive integer."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
    return int(num_classes)


def check_input_shape(model: str, input_shape: Sequence[int], min_size: int,
                      max_size: int | None = None) -> tuple[int, int, int]:
    """``(height, width, channels)`` checked against the sizes ``model`` can pool down."""
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1 or shape != tuple(input_shape):
        raise ValueError(
            f"input_shape must be (height, width, channels) of positive ints, got {input_shape!r}.")
    h, w, _ = shape
    too_big = max_size is not None and max(h, w) > max_size
    if min(h, w) < min_size or too_big:
        valid = f"{min_size}..{max_size}" if max_size is not None else f">= {min_size}"
        raise ValueError(
            f"{model} cannot be built for {h}x{w} inputs: height and width must be {valid} "
            f"pixels (pad or resize the images).")
    return shape


def build_start(model: str, num_classes: int, input_shape: Sequence[int], init: str, seed: int | None,
                min_size: int, max_size: int | None = None
                ) -> tuple[int, keras.KerasTensor, Initializers]:
    """The checked start of every build: ``(num_classes, the named Input, the initializers)``."""
    num_classes = check_num_classes(num_classes)
    shape = check_input_shape(model, input_shape, min_size, max_size)
    return num_classes, keras.Input(shape=shape, name="input"), Initializers(init, seed)


def conv2d(x: keras.KerasTensor, filters: int, kernel_size: int, strides: int, name: str,
           inits: Initializers, use_bias: bool = False) -> keras.KerasTensor:
    """A PyTorch-padded conv: ``kernel_size // 2`` zeros on every side, as ``nn.Conv2d(padding=k//2)``.

    Strided convs get an explicit ``ZeroPadding2D`` + ``valid``: Keras ``same`` would pad
    bottom/right only on even inputs and shift every output by half a pixel.
    """
    pad = kernel_size // 2
    if strides > 1 and pad > 0:
        x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same" if pad > 0 else "valid"
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias,
        kernel_initializer=inits.conv_kernel(), bias_initializer="zeros", name=name)(x)


def batch_norm(x: keras.KerasTensor, name: str) -> keras.KerasTensor:
    """BatchNorm with PyTorch's defaults (momentum 0.1, eps 1e-5), gamma 1 and beta 0."""
    return keras.layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, gamma_initializer="ones",
        beta_initializer="zeros", name=name)(x)


def dense(x: keras.KerasTensor, units: int, name: str, inits: Initializers) -> keras.KerasTensor:
    """A Dense layer (linear output) with this scheme's kernel init and a zero bias."""
    return keras.layers.Dense(units, kernel_initializer=inits.dense_kernel(),
                              bias_initializer="zeros", name=name)(x)


def check_no_width(model: str, width: int | None) -> None:
    """Reject a width multiplier for a family that has none."""
    if width is not None:
        raise ValueError(
            f"{model} has no width multiplier (got width={width!r}); only the CIFAR ResNets "
            f"(resnet20, resnet32, resnet56, resnet110) take one.")

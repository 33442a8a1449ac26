"""The paper's networks as Keras 3 functional models, built by name from a registry.

Every model returns logits. Layer names follow the reference PyTorch modules.
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import keras

from models import resnet, small, vgg
from models.layers import INITS

Builder = Callable[..., keras.Model]
"""``(num_classes, input_shape, init="kaiming", width=None, seed=None) -> keras.Model``."""

REGISTRY: dict[str, Builder] = {
    "conv4": small.conv4,
    "lenet300": small.lenet300,
    **{f"resnet{d}": functools.partial(resnet.cifar_resnet, d) for d in resnet.CIFAR_DEPTHS},
    **{f"vgg{d}": functools.partial(vgg.cifar_vgg, d) for d in vgg.CIFAR_CONFIGS},
    "resnet50": resnet.resnet50,
    "vgg16_imagenet": vgg.imagenet_vgg16,
}


def names() -> list[str]:
    """The registered model names, sorted."""
    return sorted(REGISTRY)


def build(name: str, num_classes: int, input_shape: Sequence[int], init: str = "kaiming",
          width: int | None = None, seed: int | None = None) -> keras.Model:
    """A freshly initialised model ``name`` for ``input_shape`` (H, W, C) images and ``num_classes``.

    ``init`` is one of ``INITS``; ``width`` is the CIFAR ResNets' multiplier (default 2, the
    reference's); ``seed`` makes the initialisation deterministic. Raises ``ValueError``
    listing the valid choices on a bad argument.
    """
    if name not in REGISTRY:
        raise ValueError(f"Unknown model {name!r}; valid: {', '.join(names())}.")
    return REGISTRY[name](num_classes, input_shape, init=init, width=width, seed=seed)


__all__ = ["INITS", "REGISTRY", "build", "names"]

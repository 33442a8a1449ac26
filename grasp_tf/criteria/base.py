"""What a pruning method is (:class:`Criterion`) and the helpers several methods share."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from grasp_tf import _keras_internals
from grasp_tf.prunable import PrunableWeight

ScoreFn = Callable[..., Mapping[str, np.ndarray]]
MaskFn = Callable[..., dict[str, np.ndarray]]


SAMPLING_OPTIONS = ("samples_per_class", "num_draws", "sample_storage")
"""How the scoring sample is drawn and kept (``grasp_tf.sampling.draw``); every method with data takes them."""

MASK_ARGUMENTS = ("scope", "count_rule", "seed", "prunable")
"""What ``compute_masks`` hands every ``iterative_masks`` function besides the method's own options."""


@dataclass(frozen=True)
class Option:
    """One option of a method, declared once: name, type, default, valid range and help.

    From these come the API's validation, the method's docs and ``train.run``'s flags.

    Args:
        name: the keyword the method's function takes.
        type: ``int``, ``float``, ``bool`` or ``str``.
        default: the value used when the option is not given (``None`` allowed when ``optional``).
        help: one line for ``--help`` and docs/criteria.md.
        choices: the valid values of a ``str`` option.
        minimum, maximum: inclusive bounds of a number (``None``: unbounded).
        exclusive_minimum: make ``minimum`` exclusive (``> minimum``).
        optional: whether ``None`` is valid (meaning "off").
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    optional: bool = False

    def check(self, value: Any, method: str) -> Any:
        """``value`` if valid for this option, else a ValueError naming option, method and value."""
        if value is None and self.optional:
            return value
        ok = (isinstance(value, bool) if self.type is bool else
              isinstance(value, (int, np.integer)) and not isinstance(value, bool) if self.type is int else
              isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
              if self.type is float else isinstance(value, self.type))
        if ok and self.choices and value not in self.choices:
            ok = False
        if ok and self.minimum is not None:
            ok = value > self.minimum if self.exclusive_minimum else value >= self.minimum
        if ok and self.maximum is not None:
            ok = value <= self.maximum
        if not ok:
            raise ValueError(f"Option {self.name}={value!r} of method {method!r} is invalid: must be "
                             f"{self.describe()}.")
        return value

    def describe(self) -> str:
        """The valid values in words, e.g. ``"an integer >= 1"``."""
        if self.choices:
            return "one of " + ", ".join(map(repr, self.choices))
        words = {bool: "True or False", int: "an integer", float: "a number", str: "a string"}[self.type]
        if self.minimum is not None:
            words += f" {'>' if self.exclusive_minimum else '>='} {self.minimum:g}"
        if self.maximum is not None:
            words += f"{',' if self.minimum is not None else ''} <= {self.maximum:g}"
        return words + (" or None" if self.optional else "")


def _keyword_options(fn: Callable[..., Any], exclude: Iterable[str]) -> tuple[str, ...]:
    params = inspect.signature(fn).parameters.values()
    return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name not in exclude)


@dataclass(frozen=True)
class Criterion:
    """A pruning method: how to score, which end of the ranking is pruned, what it needs.

    The public functions take a method by its registered name (``method="grasp"``); the
    name stands for a ``Criterion`` in ``grasp_tf.criteria``.

    Args:
        name: the registered name.
        score_fn: ``score_fn(model, weights, data, *, seed, **options)`` returns one array per
            ``PrunableWeight.key`` of ``weights``; ``data`` is a validated
            :class:`grasp_tf.sampling.Sample` when ``needs_data``, else the caller's data as
            given (possibly ``None``). Its keyword-only parameters are the method's options.
        remove_largest: True when the largest scores are pruned (GraSP), False for the smallest.
        needs_data: whether scoring needs a labelled sample.
        iterative_masks: when set, replaces score-then-threshold in ``compute_masks``:
            ``iterative_masks(model, data, sparsity, *, scope, count_rule, seed, prunable,
            **options) -> masks``, its own keyword-only parameters being its options.
        takes_sampling_options: False makes ``samples_per_class`` / ``num_draws`` an error
            (SynFlow, which draws no sample). Random and magnitude keep True: they ignore the
            options, so that one option set can be passed to every method.
        option_specs: the method's options declared once (:class:`Option`): validation, docs
            and ``train.run``'s flags come from them.
    """

    name: str
    score_fn: ScoreFn
    remove_largest: bool = False
    needs_data: bool = True
    iterative_masks: MaskFn | None = None
    takes_sampling_options: bool = True
    option_specs: tuple[Option, ...] = ()

    @property
    def options(self) -> tuple[str, ...]:
        """The method's own keyword options for scoring (``seed`` aside)."""
        return _keyword_options(self.score_fn, ("seed",))

    @property
    def mask_options(self) -> tuple[str, ...]:
        """The method's own keyword options for ``compute_masks`` (its ``iterative_masks`` ones, if any)."""
        if self.iterative_masks is None:
            return self.options
        return _keyword_options(self.iterative_masks, MASK_ARGUMENTS)

    def check_options(self, options: Iterable[str], *, masks: bool = False) -> None:
        """Raise a ValueError naming any option this method does not take (``masks``: for compute_masks)."""
        own = self.mask_options if masks else self.options
        unknown = sorted(set(options) - set(own))
        if unknown:
            common = ("prunable", *(SAMPLING_OPTIONS if self.takes_sampling_options else ()), "seed")
            raise ValueError(f"Unknown option(s) {unknown} for method {self.name!r}; it takes "
                             f"{list(own) or 'no options'} (plus {', '.join(common)}).")

    def check_sampling(self, samples_per_class: int | None, num_draws: int) -> None:
        """Raise a ValueError when sampling options are given to a method that draws no sample."""
        if not self.takes_sampling_options and (samples_per_class is not None or num_draws != 1):
            raise ValueError(f"samples_per_class / num_draws do not apply to method {self.name!r}: "
                             "it draws no scoring sample.")


def glorot_normal(shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Untruncated Glorot/Xavier normal draws, N(0, 2 / (fan_in + fan_out)) with Keras' fans.

    This is PyTorch's ``xavier_normal_``, which the reference code uses (Keras'
    ``GlorotNormal`` is truncated).
    """
    shape = tuple(int(d) for d in shape)
    if len(shape) == 1:
        fan_in = fan_out = shape[0]
    else:
        receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
        fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    std = np.sqrt(2.0 / (fan_in + fan_out))
    return (rng.standard_normal(shape) * std).astype(np.float32)


def dense_kernels(model: Any) -> list[Any]:
    """The kernel of every Dense layer of ``model``, in layer order."""
    kernels = {}
    for layer in _keras_internals.flatten_layers(model):
        if any(c.__name__ == "Dense" for c in type(layer).__mro__) and getattr(layer, "kernel", None) is not None:
            kernels.setdefault(id(layer.kernel), layer.kernel)
    return list(kernels.values())


def redrawn(variables: Sequence[Any], seed: int | None) -> list[tuple[Any, np.ndarray]]:
    """``(variable, Glorot-normal draw)`` pairs, drawn in order from ``np.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    return [(v, glorot_normal(v.shape, rng)) for v in variables]


def check_loss(loss: Any, where: str) -> None:
    """Raise a ValueError when a scoring loss is NaN or infinite."""
    if not np.isfinite(float(loss)):
        raise ValueError(f"The loss is not finite ({float(loss)}) on {where}: check the inputs and "
                         "the model's initial weights.")


def keyed(weights: Sequence[PrunableWeight], arrays: Iterable[Any]) -> dict[str, np.ndarray]:
    """``{key: array}`` in weight order, as float32 numpy arrays."""
    return {w.key: np.asarray(a, dtype=np.float32) for w, a in zip(weights, arrays)}

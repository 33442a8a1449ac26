"""What a pruning method is (:class:`Criterion`) and the helpers several methods share."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from grasp_tf import _keras_internals, hessian, sampling
from grasp_tf.criteria.options import Option  # noqa: F401  (declared here by every method module)
from grasp_tf.prunable import PrunableWeight

ScoreFn = Callable[..., Mapping[str, np.ndarray]]
MaskFn = Callable[..., dict[str, np.ndarray]]


SAMPLING_OPTIONS = ("samples_per_class", "num_draws", "sample_storage")
"""How the scoring sample is drawn and kept (``grasp_tf.sampling.draw``); every method with data takes them."""

MASK_ARGUMENTS = ("scope", "count_rule", "seed", "prunable")
"""What ``compute_masks`` hands every ``iterative_masks`` function besides the method's own options."""

SAMPLE_ARGUMENTS = (*SAMPLING_OPTIONS, "verbose")
"""What ``compute_masks`` also hands the ``iterative_masks`` of a method that ``needs_data`` (it draws its own sample)."""


RESERVED = frozenset({"seed", "scope", "count_rule", "prunable", "shuffle", "invert", "sparsity", "method",
                      *SAMPLE_ARGUMENTS})
"""Keywords the public functions take for every method: no method may declare an option so named."""


def _keyword_parameters(fn: Callable[..., Any], exclude: Iterable[str]) -> tuple[list[inspect.Parameter], bool]:
    """``fn``'s keyword-only parameters not in ``exclude``, and whether it also takes ``**kwargs``."""
    params = inspect.signature(fn).parameters.values()
    return ([p for p in params if p.kind is p.KEYWORD_ONLY and p.name not in exclude],
            any(p.kind is p.VAR_KEYWORD for p in params))


def _same_default(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b or (a is None and b is None)


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
            given (possibly ``None``). Its keyword-only parameters are options declared in
            ``option_specs``, with the declared defaults.
        remove_largest: True when the largest scores are pruned (GraSP), False for the smallest.
        needs_data: whether scoring needs a labelled sample.
        iterative_masks: when set, replaces score-then-threshold in ``compute_masks``:
            ``iterative_masks(model, data, sparsity, *, scope, count_rule, seed, prunable,
            **options) -> masks``, its own keyword-only parameters being its options; when
            ``needs_data`` it also gets ``samples_per_class``, ``num_draws``, ``sample_storage``
            and ``verbose`` (:data:`SAMPLE_ARGUMENTS`) and draws its sample from ``data`` itself.
        takes_sampling_options: False makes ``samples_per_class`` / ``num_draws`` an error
            (SynFlow, which draws no sample). Random and magnitude keep True: they ignore the
            options, so that one option set can be passed to every method.
        option_specs: the method's options declared once (:class:`Option`), the source of
            their validation (:meth:`check_options`), ``help(grasp_tf.compute_masks)``, the
            table in docs/criteria.md and ``train.run``'s flags. ``register`` checks they agree
            with the functions (:meth:`check_declarations`).
        samples_drawn: for a method that draws a fresh sample per round or step from a
            dataset (FORCE, Iter-SNIP, ProsPr), ``samples_drawn(options) -> int``: how many
            samples of ``num_draws`` draws it takes with those options (the method's defaults
            filled in), so a caller can size a finite stream; None means one.

    Example:

    >>> def scores(model, weights, data, *, seed=None, power=1.0):
    ...     return {w.key: np.abs(np.asarray(w.variable)) ** power for w in weights}
    >>> grasp_tf.criteria.register(Criterion("power", scores, needs_data=False, option_specs=(
    ...     Option("power", float, 1.0, "Exponent of |w|.", minimum=0, exclusive_minimum=True),)))
    """

    name: str
    score_fn: ScoreFn
    remove_largest: bool = False
    needs_data: bool = True
    iterative_masks: MaskFn | None = None
    takes_sampling_options: bool = True
    option_specs: tuple[Option, ...] = ()
    samples_drawn: Callable[[Mapping[str, Any]], int] | None = None

    def samples_needed(self, options: Mapping[str, Any]) -> int:
        """How many samples of ``num_draws`` draws the method takes from a dataset with ``options``."""
        if self.samples_drawn is None:
            return 1
        declared = {o.name: o.default for o in self.option_specs}
        return int(self.samples_drawn({**declared, **{k: v for k, v in options.items() if k in declared}}))

    def _functions(self) -> list[tuple[str, Callable[..., Any], tuple[str, ...]]]:
        """``(label, function, the keywords it gets that are not options)`` of score_fn and iterative_masks."""
        out = [("score_fn", self.score_fn, ("seed",))]
        if self.iterative_masks is not None:
            out.append(("iterative_masks", self.iterative_masks, (*MASK_ARGUMENTS, *SAMPLE_ARGUMENTS)))
        return out

    def _taken_by(self, fn: Callable[..., Any], exclude: tuple[str, ...]) -> tuple[str, ...]:
        params, any_keyword = _keyword_parameters(fn, exclude)
        names = {p.name for p in params}
        return tuple(o.name for o in self.option_specs if any_keyword or o.name in names)

    @property
    def options(self) -> tuple[str, ...]:
        """The declared options ``compute_scores`` takes (those ``score_fn`` takes), in declaration order."""
        return self._taken_by(self.score_fn, ("seed",))

    @property
    def mask_options(self) -> tuple[str, ...]:
        """The declared options ``compute_masks`` takes (its ``iterative_masks`` ones, if any)."""
        if self.iterative_masks is None:
            return self.options
        return self._taken_by(*self._functions()[1][1:])

    def option(self, name: str) -> Option:
        """The declaration of option ``name``; a ValueError if the method declares none so named."""
        for spec in self.option_specs:
            if spec.name == name:
                return spec
        raise ValueError(f"Method {self.name!r} has no option {name!r}.")

    def check_options(self, options: Mapping[str, Any], *, masks: bool = False) -> None:
        """Raise a ValueError naming an option this method does not take, or a bad value with its option.

        Args:
            options: ``{name: value}`` as the caller gave them.
            masks: check against what ``compute_masks`` takes (else ``compute_scores``).
        """
        own = self.mask_options if masks else self.options
        unknown = sorted(set(options) - set(own))
        if unknown:
            common = ("prunable", *(SAMPLING_OPTIONS if self.takes_sampling_options else ()), "seed")
            raise ValueError(f"Unknown option(s) {unknown} for method {self.name!r}; it takes "
                             f"{list(own) or 'no options'} (plus {', '.join(common)}).")
        for name, value in options.items():
            self.option(name).check(value, self.name)

    def check_declarations(self) -> None:
        """Raise a ValueError unless ``option_specs`` and the functions' keyword-only parameters agree.

        Every keyword-only parameter of ``score_fn`` (``seed`` aside) and of ``iterative_masks``
        (the arguments ``compute_masks`` passes aside) must be declared, with the declared
        default; every declared option must be taken by one of them; no name is declared twice
        or is one every method takes (:data:`RESERVED`). ``grasp_tf.criteria.register`` calls it.
        """
        where = f"Method {self.name!r}"
        if not all(isinstance(o, Option) for o in self.option_specs):
            raise TypeError(f"{where}: option_specs must hold grasp_tf.criteria.Option declarations.")
        names = [o.name for o in self.option_specs]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"{where} declares option(s) {twice} more than once.")
        reserved = sorted(set(names) & RESERVED)
        if reserved:
            raise ValueError(f"{where} declares option(s) {reserved}, a keyword every method takes; rename it.")
        taken: set[str] = set()
        for label, fn, exclude in self._functions():
            params, any_keyword = _keyword_parameters(fn, exclude)
            for p in params:
                if p.name not in names:
                    raise ValueError(f"{where}: {label} takes the keyword {p.name!r}, which option_specs does "
                                     f"not declare; declare it with grasp_tf.criteria.Option({p.name!r}, ...).")
                spec = self.option(p.name)
                if p.default is p.empty or not _same_default(p.default, spec.default):
                    shown = "no default" if p.default is p.empty else f"the default {p.default!r}"
                    raise ValueError(f"{where}: {label} gives {p.name!r} {shown}, but its declaration says "
                                     f"{spec.default!r}; make them the same.")
            taken.update(names if any_keyword else (p.name for p in params))
        untaken = [n for n in names if n not in taken]
        if untaken:
            raise ValueError(f"{where} declares option(s) {untaken}, but neither score_fn nor iterative_masks "
                             "takes them as keyword-only parameters.")

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


def classes(model: Any, x: np.ndarray) -> int:
    """The number of classes ``model`` scores (its output width); a ValueError below 2."""
    width = hessian.output_width(model, x)
    if width < 2:
        raise ValueError(f"The model has {width} output; scoring with a loss needs a classifier "
                         "with one logit per class (at least 2).")
    return width


def input_spec(model: Any, data: Any, method: str) -> tuple[tuple[int, ...], Any]:
    """One example's input ``(shape, dtype)``: declared by the model, or else read from ``data``.

    For data-free methods (SynFlow, NTK-SAP); a ValueError names ``method`` when a model has
    several inputs or neither the model nor ``data`` gives the shape.
    """
    try:
        inputs = list(model.inputs)
    except (AttributeError, ValueError, TypeError):
        inputs = []
    if len(inputs) > 1:
        raise ValueError(f"{method} supports models with a single input.")
    if inputs and all(d is not None for d in inputs[0].shape[1:]):
        return tuple(int(d) for d in inputs[0].shape[1:]), inputs[0].dtype
    if data is not None:
        x = next(sampling.batches(data), (None, None))[0]
        if x is None:
            raise ValueError("The dataset is empty: it yielded no batches.")
        return tuple(int(d) for d in x.shape[1:]), x.dtype
    raise ValueError(f"{method} needs the input shape: build the model on a keras.Input or pass data.")

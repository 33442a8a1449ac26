"""The pruning methods by name (a registry of :class:`Criterion`) and the one path from a method to masks.

``method="grasp"`` in the public API names a registered :class:`Criterion`. :func:`score`
gives its scores; :func:`masks` its keep-masks at one or more sparsities, by
score-then-threshold or, for iterative methods (SynFlow), by the method's own procedure.

Built in: ``grasp`` (remove the largest ``-θ⊙Hg``), ``grasp_abs`` (remove the smallest
``|θ⊙Hg|``), ``snip`` (smallest ``|θ⊙g|``), ``random`` (smallest uniform draw),
``magnitude`` (smallest ``|θ|``) and ``synflow`` (smallest ``|θ⊙∂R/∂θ|``, iterative).
Adding one is a function, its options declared once (:class:`Option`), and a line::

    def my_scores(model, weights, sample, *, seed=None, alpha=1.0):
        return {w.key: ... for w in weights}

    grasp_tf.criteria.register(Criterion("mine", my_scores, remove_largest=False, option_specs=(
        Option("alpha", float, 1.0, "How much of it.", minimum=0),)))

From the declarations come the validation of every call, the method options section of
``help(grasp_tf.compute_masks)`` (functions marked :func:`documented`), the options table of
docs/criteria.md (``python -m grasp_tf.criteria docs/criteria.md``) and ``train.run``'s flags.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence, TypeVar

import numpy as np

from grasp_tf import masking, progress, sampling, streaming
from grasp_tf.criteria import describe, force, grasp, magnitude, ntk_sap, phew, prospr, random, snip, synflow
from grasp_tf.criteria.base import Criterion, Option, classes
from grasp_tf.prunable import Prunable, prunable_weights

__all__ = ["Criterion", "Option", "register", "get", "names", "score", "masks", "documented"]

_REGISTRY: dict[str, Criterion] = {}
_DOCUMENTED: list[tuple[Callable[..., Any], str]] = []  # (function, its docstring template)
F = TypeVar("F", bound=Callable[..., Any])


def register(criterion: Criterion, *, overwrite: bool = False) -> Criterion:
    """Make ``criterion`` available by its name (an existing name needs ``overwrite=True``).

    Its declared options must agree with its functions' keyword-only parameters
    (:meth:`Criterion.check_declarations`); a ValueError says what differs.
    """
    if not isinstance(criterion, Criterion):
        raise TypeError(f"register() takes a Criterion, got {type(criterion).__name__}.")
    if criterion.name in _REGISTRY and not overwrite:
        raise ValueError(f"A method named {criterion.name!r} is already registered.")
    criterion.check_declarations()
    _REGISTRY[criterion.name] = criterion
    for fn, template in _DOCUMENTED:
        fn.__doc__ = describe.fill_docstring(template, list(_REGISTRY.values()))
    return criterion


def documented(fn: F) -> F:
    """Decorator: ``fn``'s docstring line ``{method options}`` lists every registered method's options.

    The list is written now and again whenever a method is registered.
    """
    _DOCUMENTED.append((fn, fn.__doc__ or ""))
    fn.__doc__ = describe.fill_docstring(fn.__doc__ or "", list(_REGISTRY.values()))
    return fn


def names() -> tuple[str, ...]:
    """The registered method names, in registration order."""
    return tuple(_REGISTRY)


def get(name: str) -> Criterion:
    """The method registered as ``name``; a ValueError lists the valid names otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown method {name!r}; choose one of {', '.join(names())}.") from None


def _checked(scores: Any, weights: list, method: str) -> dict[str, np.ndarray]:
    out = {}
    for w in weights:
        if w.key not in scores:
            raise ValueError(f"Method {method!r} returned no scores for {w.key!r}.")
        s = np.asarray(scores[w.key], dtype=np.float32)
        if s.shape != tuple(w.variable.shape):
            raise ValueError(f"Method {method!r} scored {w.key!r} with shape {s.shape}, "
                             f"the weight has {tuple(w.variable.shape)}.")
        if not np.isfinite(s).all():
            raise ValueError(f"Method {method!r} produced NaN or infinite scores for {w.key!r}.")
        out[w.key] = s
    return out




def score(model: Any, data: Any, method: str, *, prunable: Prunable = None,
          samples_per_class: int | None = None, num_draws: int = 1, sample_storage: str = "disk",
          verbose: progress.Verbose = "auto", seed: int | None = None, **method_opts: Any) -> dict[str, np.ndarray]:
    """One float32 score array per prunable weight of ``model``, oriented as ``get(method)`` says.

    ``data`` is sampled by :func:`grasp_tf.sampling.draw` (for methods that need data), the
    draws kept as ``sample_storage`` says and deleted afterwards, also on error; ``verbose``
    is how long work reports progress (``grasp_tf.progress``); ``method_opts`` are the
    method's own options (see ``get(method).options``). The model, its weights and its
    batch-norm statistics are left untouched.
    """
    criterion = get(method)
    criterion.check_options(method_opts)
    criterion.check_sampling(samples_per_class, num_draws)
    streaming.check_storage(sample_storage)
    progress.check_verbose(verbose)
    weights = prunable_weights(model, prunable)
    if not criterion.needs_data:
        return _checked(criterion.score_fn(model, weights, data, seed=seed, **method_opts), weights, method)
    if data is None:
        raise ValueError(f"Method {method!r} needs data: an (x, y) pair or a tf.data.Dataset.")
    with sampling.draw(data, lambda x: classes(model, x), samples_per_class=samples_per_class,
                       num_draws=num_draws, sample_storage=sample_storage, verbose=verbose) as sample:
        scores = criterion.score_fn(model, weights, sample, seed=seed, **method_opts)
        return _checked(scores, weights, method)


def masks(model: Any, data: Any, sparsities: Sequence[float], method: str, *, scope: str = "global",
          count_rule: str = "exact", seed: int | None = None, prunable: Prunable = None,
          samples_per_class: int | None = None, num_draws: int = 1, sample_storage: str = "disk",
          verbose: progress.Verbose = "auto", invert: bool = False, **method_opts: Any) -> list[dict[str, np.ndarray]]:
    """Keep-masks of ``method`` at each of ``sparsities``; the one path of ``compute_masks`` and ``analysis``.

    The request is validated before any scoring. A score-then-threshold method scores the
    model once and thresholds the scores per sparsity; an iterative method runs its
    ``iterative_masks`` once per sparsity. ``invert`` reverses a one-shot method's ranking
    (the invert ablation: the weights it would keep are removed, the same number).
    """
    sparsities = [masking.check_pruning(s, scope, count_rule) for s in sparsities]
    criterion = get(method)
    if criterion.iterative_masks is None:
        scores = score(model, data, method, prunable=prunable, samples_per_class=samples_per_class,
                       num_draws=num_draws, sample_storage=sample_storage, verbose=verbose, seed=seed,
                       **method_opts)
        return [masking.masks_from_scores(scores, s, remove_largest=criterion.remove_largest != invert,
                                          scope=scope, count_rule=count_rule) for s in sparsities]
    if invert:
        raise ValueError(f"invert=True needs a one-shot method; {method!r} builds its masks by its own procedure.")
    criterion.check_options(method_opts, masks=True)
    criterion.check_sampling(samples_per_class, num_draws)
    streaming.check_storage(sample_storage)
    progress.check_verbose(verbose)
    sample_args = (dict(samples_per_class=samples_per_class, num_draws=num_draws, sample_storage=sample_storage,
                        verbose=verbose) if criterion.needs_data else {})  # it draws its own sample
    return [criterion.iterative_masks(model, data, s, scope=scope, count_rule=count_rule, seed=seed,
                                      prunable=prunable, **sample_args, **method_opts) for s in sparsities]

for _criterion in (grasp.GRASP, grasp.GRASP_ABS, snip.SNIP, random.RANDOM, magnitude.MAGNITUDE,
                   synflow.SYNFLOW, force.ITER_SNIP, force.FORCE, prospr.PROSPR, ntk_sap.NTK_SAP,
                   phew.PHEW):
    register(_criterion)

BUILT_IN: tuple[str, ...] = names()
"""The methods grasp_tf registers itself (docs/criteria.md's table lists their options)."""


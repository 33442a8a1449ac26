"""Per-layer densities from weight shapes and a global sparsity: uniform, Erdős–Rényi (ER) and ER-kernel (ERK).

Kept apart from scoring (as jaxpruner keeps its sparsity distributions): :func:`layer_densities`
gives the reference's real-valued densities, :func:`removal_counts` the whole number of
weights each layer loses. ERK and ER follow google-research/rigl ``rigl/sparse_utils.py``
(``get_sparsities_erdos_renyi``; Evci et al. 2020): layer ``l`` keeps ``ε·p_l`` of its weights,
``p_l = Σ dims / Π dims`` of its kernel shape (ERK) or ``(n_in + n_out) / (n_in·n_out)`` of
its last two dimensions (ER); ``ε`` is solved so the kept total is the budget, and while
some layer's ``ε·p_l`` exceeds 1 the layers with the largest ``p_l`` are made dense and
``ε`` re-solved without them.

Counts: ``count_rule="exact"`` removes exactly ``floor(N·s)`` in total. ``ε`` is solved for
exactly ``N - floor(N·s)`` kept, each layer's real kept count ``ε·p_l·n_l`` is rounded
down, and the few weights still missing from the budget go one each to the layers with the
largest fractional parts (earlier layer first on a tie). ``count_rule="reference"`` is
rigl's: ``ε`` solved for ``Σ_l (n_l - floor(s·n_l))`` kept (dense layers counted as their
``n_l - floor(s·n_l)`` short) and each layer loses ``floor((1 - ε·p_l)·n_l)``, so the total
can miss ``floor(N·s)`` by a few weights.

Example:

>>> removal_counts([(3, 3, 3, 16), (3, 3, 16, 32), (512, 10)], 0.9, "erk")
[390, 4517, 4237]
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

KINDS = ("uniform", "erk", "er")


def _raw(shape: Sequence[int], kind: str) -> float:
    shape = [int(d) for d in shape]
    if kind == "erk" or len(shape) < 2:
        return float(np.sum(shape) / np.prod(shape))
    n_in, n_out = shape[-2:]
    return (n_in + n_out) / (n_in * n_out)


def _check(shapes: Sequence[Sequence[int]], sparsity: float, kind: str) -> list[int]:
    if kind not in KINDS:
        raise ValueError(f"Unknown densities {kind!r}; choose one of {', '.join(KINDS)}.")
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}.")
    sizes = [int(np.prod([int(d) for d in s])) for s in shapes]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"Densities need at least one non-empty weight shape, got {list(shapes)!r}.")
    return sizes


def _solve(shapes: Sequence[Sequence[int]], sizes: list[int], kept_of: list[float], kind: str
           ) -> tuple[float, set[int], list[float]]:
    """``ε``, the layers made dense and the raw ``p_l``, as rigl's loop: re-solve while a layer exceeds 1.

    ``kept_of[l]`` is what layer ``l`` contributes to the kept budget when it scales (rigl:
    ``n_l - floor(s·n_l)``); a dense layer contributes ``n_l`` instead, i.e. it takes
    ``n_l - kept_of[l]`` from the others' budget.
    """
    raw = [_raw(s, kind) for s in shapes]
    dense: set[int] = set()
    while True:
        scaling = [i for i in range(len(sizes)) if i not in dense]
        if not scaling:
            return 0.0, dense, raw
        rhs = sum(kept_of[i] for i in scaling) - sum(sizes[i] - kept_of[i] for i in dense)
        eps = rhs / sum(raw[i] * sizes[i] for i in scaling)
        top = max(raw[i] for i in scaling)
        if top * eps <= 1:
            return eps, dense, raw
        dense |= {i for i in scaling if raw[i] == top}


def layer_densities(shapes: Sequence[Sequence[int]], sparsity: float, kind: str = "erk") -> list[float]:
    """The fraction of each layer kept, real-valued, as rigl computes it (before rounding to counts).

    Args:
        shapes: each prunable weight's shape (a kernel's last two dimensions are its fan-in
            and fan-out units, Keras' layout).
        sparsity: the global fraction removed, in [0, 1).
        kind: ``"uniform"`` (every layer ``1 - s``), ``"erk"`` or ``"er"``.

    Returns:
        One density in [0, 1] per shape, in order.

    Raises:
        ValueError: for an unknown ``kind``, a sparsity outside [0, 1) or no shapes.

    Example:

    >>> layer_densities([(100, 100), (100, 2)], 0.5, "er")   # the second would exceed 1: dense
    [0.49, 1.0]
    """
    sizes = _check(shapes, sparsity, kind)
    if kind == "uniform":
        return [1.0 - float(sparsity)] * len(sizes)
    kept_of = [n - int(np.floor(sparsity * n)) for n in sizes]
    eps, dense, raw = _solve(shapes, sizes, kept_of, kind)
    return [1.0 if i in dense else eps * raw[i] for i in range(len(sizes))]


def removal_counts(shapes: Sequence[Sequence[int]], sparsity: float, kind: str = "erk",
                   count_rule: str = "exact") -> list[int]:
    """How many weights each layer loses (see the module docstring for the two count rules).

    Args:
        shapes, sparsity, kind: as :func:`layer_densities`.
        count_rule: ``"exact"`` (the counts sum to ``floor(N·sparsity)``) or ``"reference"``
            (rigl's per-layer ``floor((1 - density)·n)``).

    Returns:
        One count per shape, each in ``[0, n_l]``.

    Raises:
        ValueError: as :func:`layer_densities`, or for an unknown ``count_rule``.

    Example:

    >>> sum(removal_counts([(3, 3, 3, 16), (512, 10)], 0.9, "erk")) == int(0.9 * (432 + 5120))
    True
    """
    sizes = _check(shapes, sparsity, kind)
    if count_rule not in ("exact", "reference"):
        raise ValueError(f"Unknown count_rule {count_rule!r}; choose one of exact, reference.")
    if count_rule == "reference":
        return [int(np.floor((1.0 - d) * n)) for d, n in zip(layer_densities(shapes, sparsity, kind), sizes)]
    total = sum(sizes)
    budget = total - int(np.floor(total * sparsity))  # kept, exactly
    if kind == "uniform":
        kept_real = [budget * n / total for n in sizes]
        dense: set[int] = set()
    else:
        eps, dense, raw = _solve(shapes, sizes, [budget * n / total for n in sizes], kind)
        kept_real = [float(n) if i in dense else eps * raw[i] * n for i, n in enumerate(sizes)]
    kept = [min(int(np.floor(k)), n) for k, n in zip(kept_real, sizes)]
    missing = budget - sum(kept)
    order = sorted((i for i in range(len(sizes)) if kept[i] < sizes[i] and i not in dense),
                   key=lambda i: (-(kept_real[i] - np.floor(kept_real[i])), i))
    for i in order[:max(missing, 0)]:
        kept[i] += 1
    if sum(kept) != budget:  # only if rounding left more than one per layer to place (never seen)
        raise AssertionError(f"Densities kept {sum(kept)} weights, the budget is {budget}.")
    return [n - k for n, k in zip(sizes, kept)]

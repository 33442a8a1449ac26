"""PHEW (Patil & Dovrolis, ICML 2021): keep the weights that random walks ∝ |w| traverse, data-free and seeded.

Reference: ShreyasMalakarjunPatil/PHEW ``Prune/phew_utils.py`` (``generate_probability``,
``phew_masks``). Walks alternate: even ones start at an input unit of the first kernel
(round-robin over its units) and go forward to the output, odd ones start at an output unit
(round-robin) and go backward to the input. At a kernel the walk picks the next unit with
probability ∝ the summed |w| joining them (all kernel positions of a conv), then one kernel
position of that pair ∝ |w|, and that weight joins the mask. Walks continue until the
budget ``N - floor(N·s)`` is reached.

How walks pass the model's graph (:mod:`grasp_tf.criteria.phew_graph`): batch norm,
activations, dropout and pooling keep the unit (channel); Flatten sends channel ``c`` to a
uniformly drawn position of it (the reference's ``conv_to_linear_unit``) and back to
``u mod C``; at a tensor feeding several layers a forward walk picks one uniformly, and at a
residual Add a backward walk picks one input uniformly, leaving out weight-free identity
shortcuts when a path with kernels exists (the reference walks a ResNet's main path or its
1×1 shortcut conv at random, never the identity); Concatenate offsets the unit. Other
layers are refused with an error naming them.

Deviations: the walks are drawn from ``np.random.default_rng(seed)`` (the reference uses the
unseeded ``random``/``np.random``) many at a time (vectorised), and the mask takes the first
new weights in walk order up to exactly the budget; ``count_rule="reference"`` finishes the
last walk instead, as the reference checks the budget only between walks (so it may keep a
few more). PHEW has no per-weight scores (``compute_scores`` refuses) and is global only.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from grasp_tf.criteria.base import Criterion
from grasp_tf.criteria.phew_graph import Graph
from grasp_tf.progress import Progress
from grasp_tf.prunable import Prunable, PrunableWeight, prunable_weights

MAX_BATCH = 1 << 16


class _Walker:
    """Walks over a :class:`Graph`, recording ``(walk, step, global flat index)`` of each weight taken."""

    def __init__(self, graph: Graph, offsets: dict[str, int], rng: np.random.Generator) -> None:
        self.graph, self.offsets, self.rng = graph, offsets, rng
        self.on_path = set(graph.order)
        first = next(graph.producer[t] for t in graph.order if t in graph.producer
                     and graph.producer[t].kind == "weight")
        self.start = first.inputs[0]
        self.records: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def _take(self, kernel: Any, walks: np.ndarray, steps: np.ndarray, i: np.ndarray, o: np.ndarray) -> None:
        flat = kernel.entry(i, o, self.rng.random(len(walks)))
        if kernel.key is not None:
            self.records.append((walks, steps[walks - self.base].copy(), flat + self.offsets[kernel.key]))
        steps[walks - self.base] += 1

    def run(self, first_walk: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Walks ``first_walk .. first_walk + count - 1``: their weights' global indices and walk ids, in walk order."""
        self.base, self.records = first_walk, []
        ids = np.arange(first_walk, first_walk + count)
        steps = np.zeros(count, np.int64)
        g = self.graph
        fwd, bwd = ids[ids % 2 == 0], ids[ids % 2 == 1]
        self._forward(fwd, (fwd // 2) % g.units[self.start], steps)
        self._backward(bwd, (bwd // 2) % g.units[g.output], steps)
        if not self.records:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        walks, step, flat = (np.concatenate(a) for a in zip(*self.records))
        order = np.lexsort((step, walks))
        return flat[order].astype(np.int64), walks[order]

    def _forward(self, walks: np.ndarray, units: np.ndarray, steps: np.ndarray) -> None:
        g, pending = self.graph, {self.start: [(walks, units)]}
        for t in g.order:
            if t not in pending or t == g.output:
                continue
            w, u = (np.concatenate(a) for a in zip(*pending.pop(t)))
            options = [(e, p) for e, p in g.consumers[t] if e.output in self.on_path]
            options = [(e, p) for e, p in options if not g.weight_free_to_merge(e)] or options
            pick = self.rng.integers(len(options), size=len(w)) if len(options) > 1 else np.zeros(len(w), int)
            for n, (edge, pos) in enumerate(options):
                sel = pick == n
                if not sel.any():
                    continue
                ww, uu = w[sel], u[sel]
                if edge.kind == "weight":
                    for kernel in edge.kernels:
                        nxt = kernel.forward(uu, self.rng.random(len(ww)))
                        self._take(kernel, ww, steps, uu, nxt)
                        uu = nxt
                elif edge.kind == "concat":
                    uu = uu + edge.offsets[pos]
                elif edge.kind == "flatten":
                    uu = uu + edge.channels * self.rng.integers(edge.spatial, size=len(ww))
                pending.setdefault(edge.output, []).append((ww, uu))

    def _backward(self, walks: np.ndarray, units: np.ndarray, steps: np.ndarray) -> None:
        g = self.graph
        pending = {g.output: [(walks, units)]}
        for t in reversed(g.order):
            if t not in pending or t not in g.producer:
                continue
            w, u = (np.concatenate(a) for a in zip(*pending.pop(t)))
            edge = g.producer[t]
            if edge.kind == "weight":
                for kernel in reversed(edge.kernels):
                    prev = kernel.backward(u, self.rng.random(len(w)))
                    self._take(kernel, w, steps, prev, u)
                    u = prev
                dest = np.zeros(len(w), int)
            elif edge.kind == "concat":
                dest = np.searchsorted(edge.offsets, u, side="right") - 1
                u = u - np.asarray(edge.offsets)[dest]
            elif edge.kind == "merge":
                options = [n for n, s in enumerate(edge.inputs) if s in self.on_path]
                options = [n for n in options if not g.weight_free_from_branch(edge.inputs[n])] or options
                dest = np.asarray(options)[self.rng.integers(len(options), size=len(w))]
            else:
                u = u % edge.channels if edge.kind == "flatten" else u
                dest = np.zeros(len(w), int)
            for n in np.unique(dest):
                sel = dest == n
                pending.setdefault(edge.inputs[n], []).append((w[sel], u[sel]))


def _safe_prefix(flat: np.ndarray, kept: np.ndarray, need: int) -> int | None:
    """Length of the shortest prefix with ``need`` new weights ending at the walk's end or before a kept weight.

    Every kept weight lies on an input-output path (induction: whole walks, and such prefixes,
    which continue along an already kept weight), so that prefix's weights do too.
    """
    new = ~kept[flat]
    counts = np.cumsum(new)
    safe = np.append(~new[1:], True)  # cutting after position j is safe
    hits = np.flatnonzero((counts == need) & safe)
    return int(hits[0]) + 1 if len(hits) else None


def _walk_until(walker: _Walker, total: int, budget: int, kernels: int, count_rule: str,
                search_batches: int = 50) -> np.ndarray:
    """The kept weights (global flat bool) once the walks reach ``budget`` (see the module docstring)."""
    kept, count, first, per_walk = np.zeros(total, bool), 0, 0, float(kernels)
    progress = Progress("phew", budget, "weights")
    while count < budget:
        batch = int(np.clip(1.2 * (budget - count) / max(per_walk, 1e-3), 64, MAX_BATCH)) // 2 * 2
        flat, walks = walker.run(first, batch)
        _, firsts = np.unique(flat, return_index=True)
        new = np.zeros(len(flat), bool)
        new[firsts] = True
        new = np.flatnonzero(new & ~kept[flat])
        if count + len(new) < budget:
            kept[flat[new]] = True
            count, first, per_walk = count + len(new), first + batch, len(new) / batch
            progress.step(len(new))
            if per_walk < 1e-4:
                raise ValueError(f"PHEW's walks stopped finding new weights after {first} walks with {count} of "
                                 f"{budget} kept (weights of |w| = 0 are never walked); prune more.")
            continue
        crossing = walks[new[budget - count - 1]]
        whole = new[walks[new] < crossing]
        kept[flat[whole]] = True
        progress.step(budget - count)
        need = budget - count - len(whole)
        if count_rule == "reference" or need == 0:
            kept[flat[new[walks[new] == crossing]]] = True
            break
        fallback = None
        for _ in range(search_batches):  # the first later walk with a safe prefix of exactly `need` new weights
            bounds = np.searchsorted(walks, np.arange(crossing, first + batch + 1))
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                mine = flat[lo:hi]
                cut = _safe_prefix(mine, kept, need)
                if cut is not None:
                    kept[mine[:cut]] = True
                    return kept
                if fallback is None and (~kept[mine]).sum() >= need:
                    fallback = mine[~kept[mine]][:need]
            first, crossing = first + batch, first + batch
            flat, walks = walker.run(first, batch)
        if fallback is None:
            raise ValueError(f"PHEW's walks found no {need} more weights to reach the budget; prune more.")
        kept[fallback] = True  # none found (never seen): the first walk's first `need` new weights
        break
    return kept


def phew_scores(model: Any, weights: Sequence[PrunableWeight], data: Any, *,
                seed: int | None = None) -> dict[str, np.ndarray]:
    """PHEW has no per-weight scores: a ValueError says to use ``compute_masks``."""
    raise ValueError("Method 'phew' has no per-weight scores (its masks are the weights random walks reach "
                     "before the budget); use compute_masks or prune_model.")


def phew_masks(model: Any, data: Any, sparsity: float, *, scope: str = "global", count_rule: str = "exact",
               seed: int | None = None, prunable: Prunable = None) -> dict[str, np.ndarray]:
    """Keep-masks from PHEW's walks (called by ``grasp_tf.criteria.masks``)."""
    if scope != "global":
        raise ValueError(f"Method 'phew' chooses weights over the whole network; it needs scope='global', "
                         f"got scope={scope!r}.")
    weights = prunable_weights(model, prunable)
    sizes = [int(np.prod(w.variable.shape)) for w in weights]
    offsets = dict(zip([w.key for w in weights], np.cumsum([0] + sizes[:-1]).tolist()))
    graph = Graph(model, {id(w.variable): w.key for w in weights})
    walked = {k.key for t in graph.order if t in graph.producer for k in graph.producer[t].kernels}
    missing = [w.key for w in weights if w.key not in walked]
    if missing:
        raise ValueError(f"PHEW walks only Dense/Conv kernels between the input and the output; prunable "
                         f"weight {missing[0]!r} is not one.")
    total = sum(sizes)
    budget = total - int(np.floor(total * sparsity))
    kept = _walk_until(_Walker(graph, offsets, np.random.default_rng(seed)), total, budget, len(walked),
                       count_rule)
    out, start = {}, 0
    for w, n in zip(weights, sizes):
        out[w.key], start = kept[start:start + n].reshape(tuple(w.variable.shape)), start + n
    return out


PHEW = Criterion("phew", phew_scores, remove_largest=False, needs_data=False, iterative_masks=phew_masks,
                 takes_sampling_options=False)

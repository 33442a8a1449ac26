"""The converged study's findings in words: beside each paper's own claim, Frankle et al.'s checks, and the compute.

Pure functions of the study's rows, summary and paired comparisons (``bench/study_report.py``).
GraSP's results are set beside the paper's Tables 1–2 (``train/paper_results.csv``, read by
``train.analyze.compare``); the ablations beside Frankle et al. (ICLR 2021); the later methods
(issue 19) beside their authors' claims. A claim "agrees" by the paired rule of
``study_report.paired``: a paired t-test over the seeds rejects equality at 5% (t quantiles
from ``scipy.stats``) and the difference is at least ``MIN_DIFFERENCE``.
"""
from __future__ import annotations

from typing import Any

from bench.study_report import NAMES, accuracy, methods_in, paired, pruned_cells
from train.analyze import compare  # the paper's published cells, as train.analyze compare reads them


def _paper(table: int, model: str = "resnet32") -> dict[tuple[str, str, float], float]:
    """The paper's mean top-1 accuracy (%) by (dataset, method, sparsity) for one table and model."""
    return {(dataset, method, sparsity): float(c["mean"])
            for (dataset, m, method, sparsity, _), cs in compare.paper_cells(compare.PAPER_RESULTS).items()
            for c in cs if m == model and c["table"] == str(table)}


def _verdict(c: dict[str, Any]) -> str:
    if not c["clear"]:
        return "no clear difference"
    return "a clear gain" if c["mean"] > 0 else "a clear loss"


def _points(c: dict[str, Any]) -> str:
    return f"{c['mean'] * 100:+.1f} ± {c['std'] * 100:.1f}"


def _against_paper(comps: list[dict[str, Any]], other: str, table: int) -> str:
    """GraSP − ``other`` per sparsity here, beside the paper's GraSP − ``other`` for ResNet32 (CIFAR-10/100)."""
    paper = _paper(table)
    parts, agree, total = [], 0, 0
    for c in comps:
        if c["a"][1:] != ("grasp", c["a"][2], None) or c["b"][1] != other or c["b"][3]:
            continue
        s = c["a"][2]
        theirs = [paper[(d, "grasp", s)] - paper[(d, other, s)] for d in ("cifar10", "cifar100")
                  if (d, "grasp", s) in paper and (d, other, s) in paper]
        if not theirs:
            continue
        total += 1
        expected_gain = min(theirs) >= 1.0
        agree += (c["clear"] and c["mean"] > 0) if expected_gain else not (c["clear"] and c["mean"] < 0)
        parts.append(f"{s * 100:g}%: paper {' / '.join(f'{d:+.1f}' for d in theirs)}, here {_points(c)} "
                     f"({_verdict(c)})")
    if not parts:
        return ""
    return (f"- **GraSP − {NAMES.get(other, other)}** (paper Table {table}, ResNet32, CIFAR-10 / CIFAR-100; here "
            f"resnet20 on Fashion-MNIST, paired by seed, points): {'; '.join(parts)}. Agrees with the paper (a "
            f"clear gain here where the paper's gap is ≥ 1 point on both datasets, otherwise no clear loss) at "
            f"{agree} of {total} sparsities.\n")


def _where_grasp_does_not_lead(summary: list[dict[str, Any]], comps: list[dict[str, Any]]) -> str:
    by = {(e["model"], e["method"], e["sparsity"]): e for e in summary if not e.get("ablation")}
    paired_with = {(c["a"][0], c["b"][1], c["a"][2]): c for c in comps if c["a"][1] == "grasp"
                   and not c["a"][3] and not c["b"][3]}
    behind, narrow = [], []
    for (model, method, s), e in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        grasp = by.get((model, "grasp", s))
        if method in ("grasp", "none") or grasp is None:
            continue
        c = paired_with.get((model, method, s))
        how = f" ({_points(c)} points, {_verdict(c)})" if c else ""
        if e["final_test_accuracy"] >= grasp["final_test_accuracy"]:
            behind.append(f"{NAMES.get(method, method)} at {s * 100:g}%{how}")
        elif c and not c["clear"]:
            narrow.append(f"{NAMES.get(method, method)} at {s * 100:g}%{how}")
    text = ("- **Where GraSP does not lead:** " + ("; ".join(behind) if behind else
                                                   "nowhere: it has the highest mean at every sparsity") + ".")
    if narrow:
        text += " GraSP's lead is within the seed spread over " + "; ".join(narrow) + "."
    return text + "\n"


def _gradient_norms(summary: list[dict[str, Any]]) -> str:
    """Which method's masks keep the largest gradient norm at init (GraSP's premise), per sparsity."""
    out = []
    for model in sorted({e["model"] for e in summary}):
        for s in sorted({e["sparsity"] for e in summary if e["model"] == model and e["method"] != "none"}):
            es = [e for e in summary if e["model"] == model and e["sparsity"] == s and not e.get("ablation")
                  and e["relative_gradient_norm"] is not None]
            if len(es) > 1:
                ranked = sorted(es, key=lambda e: (-e["relative_gradient_norm"], methods_in(es).index(e["method"])))
                out.append(f"{s * 100:g}%: " + " > ".join(
                    f"{NAMES.get(e['method'], e['method'])} {e['relative_gradient_norm']:.2f}" for e in ranked))
    return ("- **Gradient norm at initialization** (pruned / dense; GraSP's premise is that its masks keep it "
            "highest): " + "; ".join(out) + ".\n") if out else ""


FRANKLE_EXPECTED = {("shuffle", None): "no loss", ("reinit", None): "no loss", ("invert", "grasp"): "no loss",
                    ("invert", None): "loss"}  # Frankle et al. (ICLR 2021), sections 5-6


def _against_frankle(comps: list[dict[str, Any]]) -> str:
    words = {"shuffle": "shuffled layerwise", "invert": "inverted", "reinit": "reinitialized"}
    parts = []
    for c in comps:
        ablation, method = c["a"][3], c["a"][1]
        if not ablation:
            continue
        expected = FRANKLE_EXPECTED.get((ablation, method), FRANKLE_EXPECTED[(ablation, None)])
        agrees = (c["clear"] and c["mean"] < 0) if expected == "loss" else not (c["clear"] and c["mean"] < 0)
        parts.append(f"{NAMES.get(method, method)} {words[ablation]} at {c['a'][2] * 100:g}%: {_points(c)} points "
                     f"({_verdict(c)}; "
                     f"they found {expected}: {'agrees' if agrees else 'disagrees'})")
    if not parts:
        return ""
    return ("- **Sanity checks against Frankle et al. (2021)**, who found that shuffling each layer's mask or "
            "reinitializing the weights preserves or improves accuracy for SNIP, GraSP and SynFlow (so the "
            "per-layer densities carry the method), that inverting SNIP's scores loses badly, and that inverting "
            "GraSP's does not. Ablated − as scored, paired by seed: " + "; ".join(parts) + ".\n")


# Methods whose reference code refuses masks that prune a layer entirely, and where it does so.
REFUSES_EMPTY_LAYERS = {"prospr": "mil-ad/prospr's `keep_masks_health_check` asserts on such masks, so the "
                                  "reference would have stopped there"}
REFUSES_EMPTY_LAYERS["prospr_cli"] = REFUSES_EMPTY_LAYERS["prospr"]


def _empty_layers(summary: list[dict[str, Any]]) -> str:
    """Where a method's masks prune whole layers (the net then trains through the residual shortcuts alone)."""
    parts, refusing = [], []
    for e in pruned_cells(summary):
        counts = [c for c in e.get("empty_layers_seeds") or [] if c is not None]
        if any(counts):
            parts.append(f"{NAMES.get(e['method'], e['method'])} at {e['sparsity'] * 100:g}% "
                         f"({', '.join(map(str, counts))} layers by seed; test accuracy (%) {accuracy(e)})")
            if e["method"] in REFUSES_EMPTY_LAYERS and e["method"] not in refusing:
                refusing.append(e["method"])
    if not parts:
        return ""
    by_note: dict[str, list[str]] = {}
    for m in refusing:
        by_note.setdefault(REFUSES_EMPTY_LAYERS[m], []).append(NAMES.get(m, m))
    notes = "".join(f" {' and '.join(names)}: {note}; grasp_tf keeps the masks (docs/criteria.md)."
                    for note, names in by_note.items())
    return ("- **Masks that prune whole layers** (a ResNet then carries the signal past them on its shortcuts "
            "only): " + "; ".join(parts) + "." + notes + "\n")


def _blind_classes(summary: list[dict[str, Any]]) -> str:
    """Seeds whose masks leave classifier outputs without a weight, each beside its accuracy bound."""
    parts, clean = [], []
    for e in pruned_cells(summary):
        pairs = [(b, a) for b, a in zip(e.get("blind_classes_seeds") or [], e["final_test_accuracy_seeds"])
                 if b is not None]
        name = f"{NAMES.get(e['method'], e['method'])} at {e['sparsity'] * 100:g}%"
        clean += [(a, name) for b, a in pairs if b == 0]
        if any(b for b, _ in pairs):
            c = e["classes"]
            parts.append(f"{name}: {', '.join(str(b) for b, _ in pairs)} of {c} by seed, test accuracy "
                         f"{', '.join(f'{a * 100:.1f}' for _, a in pairs)}% (at most "
                         f"{', '.join(f'{min(c, c - b + 1) / c * 100:g}' for b, _ in pairs)}%)")
    if not parts:
        return ""
    lowest = ""
    if clean:
        low, where = min(clean)
        lowest = f" The lowest accuracy of a seed whose classifier keeps a weight for every class: {low * 100:.1f}% ({where})."
    return ("- **Classes the classifier cannot see**: where a seed's masks keep no weight into k of the "
            "classifier's C outputs, those k logits are constants (their biases), at most one of those classes "
            "is ever predicted, and on a class-balanced test set accuracy is at most (C − k + 1) / C. "
            + "; ".join(parts) + "." + lowest + "\n")


# Each later method's paper, its claim in words, the methods it claims to beat, and where a clear
# gain is expected: "extreme" = at the study's highest sparsity only (no clear loss below), "all" = everywhere.
CLAIMS = (
    ("force", "de Jorge et al. (ICLR 2021): FORCE stays trainable at extreme sparsity, where SNIP and GraSP fail",
     ("snip", "grasp"), "extreme"),
    ("iter_snip", "de Jorge et al. (ICLR 2021): pruning SNIP's way over several rounds (Iter-SNIP) beats one-shot "
     "SNIP at extreme sparsity", ("snip",), "extreme"),
    ("prospr", "Alizadeh et al. (ICLR 2022): ProsPr is ahead of the earlier methods", ("snip", "grasp", "synflow"),
     "all"),
    ("prospr_cli", "Alizadeh et al. (ICLR 2022): ProsPr is ahead of the earlier methods (here with its cli.py's "
     "inner lr 0.1, momentum 0, one batch)", ("snip", "grasp", "synflow"), "all"),
    ("ntk_sap", "Wang et al. (ICLR 2023): NTK-SAP is ahead of the earlier methods", ("snip", "grasp", "synflow"),
     "all"),
)


def _against_claims(rows: list[dict[str, Any]]) -> str:
    """Each later method against the methods its paper claims to beat, paired by seed, with the verdict."""
    out = []
    for method, claim, others, where in CLAIMS:
        for model in sorted({r["model"] for r in rows if r["method"] == method and not r.get("ablation")}):
            sparsities = sorted({r["sparsity"] for r in rows if r["model"] == model and r["method"] == method
                                 and not r.get("ablation")})
            parts, agree, total = [], 0, 0
            for other in others:
                found = []
                for s in sparsities:
                    c = paired(rows, (model, method, s, None), (model, other, s, None))
                    if c is None:
                        continue
                    gain_expected = where == "all" or s == max(sparsities)
                    total += 1
                    agree += (c["clear"] and c["mean"] > 0) if gain_expected else not (c["clear"] and c["mean"] < 0)
                    found.append(f"{s * 100:g}% {_points(c)} ({_verdict(c)})")
                if found:
                    parts.append(f"{NAMES[method]} − {NAMES.get(other, other)}: " + ", ".join(found))
            if not parts:
                continue
            top = max(sparsities) * 100
            expected = ("a clear gain at every sparsity" if where == "all" else
                        f"a clear gain at {top:g}% (the highest sparsity run) and no clear loss below")
            out.append(f"- **{NAMES[method]}**: {claim}. Expected here: {expected}. {model}, paired by seed (points): "
                       f"{'; '.join(parts)}. Agrees at {agree} of {total} comparisons.\n")
    return "".join(out)


def findings(summary: list[dict[str, Any]], comps: list[dict[str, Any]],
             rows: list[dict[str, Any]] | None = None) -> str:
    """The results beside the papers (GraSP's Tables 1–2, the later methods' claims from ``rows``) and
    Frankle et al., in words; '' before two seeds."""
    text = (_against_paper(comps, "random", 1) + _against_paper(comps, "snip", 2)
            + _where_grasp_does_not_lead(summary, comps) + _gradient_norms(summary) + _against_frankle(comps)
            + _empty_layers(summary) + _blind_classes(summary) + _against_claims(rows or []))
    return text if comps else ""


def dense_and_compute(rows: list[dict[str, Any]]) -> str:
    """The dense baseline per seed against the 88% bar, and the training compute of the finished cells.

    A row's ``wall_seconds`` sums every ``train.run`` attempt of its cell (a killed run and its
    resumption) when ``attempts`` says how many there were; rows without ``attempts`` finished
    before attempts were recorded, and count their last process only (said in the text).
    """
    dense = sorted((r["model"], r["seed"], r["final_test_accuracy"]) for r in rows if r["method"] == "none")
    hours = sum(r["wall_seconds"] for r in rows) / 3600
    per_seed = ", ".join(f"{m} seed {s}: {a * 100:.1f}%" for m, s, a in dense)
    bar = "every one ≥ 88%" if dense and all(a >= 0.88 for *_, a in dense) else "NOT all ≥ 88%"
    recorded = [r["attempts"] for r in rows if r.get("attempts")]
    unrecorded = len(rows) - len(recorded)
    old = (f" ({unrecorded} of them finished before attempts were recorded: for those, only the last process)"
           if unrecorded else "")
    attempts = f" in {sum(recorded)} attempts" if recorded and not unrecorded else ""
    return (f"Dense: {per_seed or 'not run yet'} ({bar}). Compute: {len(rows)} runs{attempts}, {hours:.1f} hours of "
            f"`train.run` wall time on 2 CPU cores ({hours * 60 / max(len(rows), 1):.1f} min per run), counting "
            f"every attempt of a resumed run{old}.\n")

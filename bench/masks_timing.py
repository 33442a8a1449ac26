"""Every method's time to masks (``python bench/scoring.py --parts=methods``): one fresh process per method and model.

Writes ``scoring_methods.{json,md}``; what is measured is described in bench/scoring.py's docstring.
"""
from __future__ import annotations

import json
import os

from bench import common


def method_variants() -> list[tuple[str, dict]]:
    """Every registered method with its defaults, and ``random`` at ERK densities: ``[(method, options)]``."""
    from grasp_tf import criteria

    variants = [(name, {}) for name in criteria.names()]
    return variants + [("random", {"densities": "erk"})]


def measure_masks(model_name: str, method: str, options: dict, sparsity: float = 0.98, steps: int = 5) -> dict:
    """One method's first ``compute_masks`` call in this process, against the warm step around it."""
    import keras

    import grasp_tf
    import models

    keras.utils.set_random_seed(0)
    model = models.build(model_name, 10, (32, 32, 3), seed=0)
    x, y = common.batch(100)
    initial = model.get_weights()
    step = common.gradient_step(model, x, y)
    step()  # trace the reference step
    before = [common.timed(step) for _ in range(steps)]
    model.set_weights(initial)  # the steps ran batch norm in training mode: score the untouched initialisation
    baseline = common.reset_peak_rss()
    masks: dict = {}
    first = common.timed(lambda: masks.update(grasp_tf.compute_masks(
        model, (x, y), sparsity, method, seed=0, verbose=False, **options)))
    peak = common.peak_rss_since(baseline)
    after = [common.timed(step) for _ in range(steps)]
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.size for m in masks.values())
    step_s = common.median(before + after)
    return {"model": model_name, "method": method, "options": options, "sparsity": sparsity,
            "first_s": first, "step_warm_s": step_s, "ratio_to_step": first / step_s, "peak_mib": peak,
            "steps_before_s": before, "steps_after_s": after, "kept": kept, "total": total}


def methods_table(rows: list[dict]) -> str:
    """Markdown: per model and method the time to masks, in seconds and in warm gradient steps."""
    def label(r: dict) -> str:
        return r["method"] + "".join(f" ({k}={v})" for k, v in r["options"].items())

    def cells(r: dict) -> list:
        if "error" in r:
            return [r["model"], label(r), "failed: " + r["error"], "", "", "", ""]
        return [r["model"], label(r), f"{r['first_s']:.1f}",
                f"{r['ratio_to_step']:.0f}" if r["ratio_to_step"] >= 1 else "< 1", f"{r['step_warm_s']:.3f}",
                f"{r['peak_mib']:.0f}", f"{r['kept']:,} / {r['total']:,}"]

    return common.markdown_table(
        ["model", "method", "time to masks (s)", "x one fwd+bwd", "fwd+bwd (s, median)", "peak RSS growth (MiB)",
         "kept / total"],
        [cells(r) for r in rows])


def run_methods(output_dir: str, methods: str, script: str) -> None:
    """Each model x method in a fresh process (``script --mask_worker``), the record saved after each.

    Resumable: rows already in ``scoring_methods.json`` are kept and not measured again. A method
    that fails on a model is recorded with its one-line error (and retried by the next run).
    """
    wanted = [m for m in methods.split(",") if m]
    path = os.path.join(output_dir, "scoring_methods.json")
    record = {"command": "python bench/scoring.py --parts=methods", "machine": common.machine(), "rows": []}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
        record["rows"] = [r for r in old["rows"] if "error" not in r]
        if record["rows"]:  # a resumed run: the first run's machine facts stay, each resumption is listed
            record["resumed"] = [*old.get("resumed", []), record["machine"]]
            record["machine"], now = old["machine"], record["machine"]
    todo = [(model, method, options) for model in common.MODELS for method, options in method_variants()
            if not (wanted and method not in wanted)
            and (model, method, json.dumps(options)) not in {(r["model"], r["method"], json.dumps(r["options"]))
                                                            for r in record["rows"]}]
    if not todo and "resumed" in record:  # nothing to measure: only the files are rewritten
        record["resumed"].remove(now)
    for model, method, options in todo:
        try:
            row = common.run_worker(script, ["--mask_worker", model, method, json.dumps(options)])
        except RuntimeError as e:
            row = {"model": model, "method": method, "options": options, "error": str(e).strip().splitlines()[-1]}
        record["rows"].append(row)
        save_methods(record, output_dir)
        print(methods_table([row]).splitlines()[-1], flush=True)
    save_methods(record, output_dir)


def save_methods(record: dict, output_dir: str) -> str:
    """Write ``scoring_methods.{json,md}``, rows in model and registry order; returns the table."""
    order = [(m, json.dumps(o)) for m, o in method_variants()]
    record["rows"].sort(key=lambda r: (common.MODELS.index(r["model"]), order.index((r["method"], json.dumps(r["options"])))))
    text = methods_table(record["rows"])
    resumed = "".join(f"; resumed {m['date']}" + ("" if m.get("loadavg_at_start") is None else
                                                   f" (load {m['loadavg_at_start']:.1f})")
                      for m in record.get("resumed", []))
    common.write_outputs("scoring_methods", record,
                         (f"Started {record['machine']['date']}{resumed}.\n\n" if resumed else "") + text, output_dir)
    return text

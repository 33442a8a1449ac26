"""Scoring speed and memory: GraSP and SNIP against one forward+backward, first call vs warm, chunked scaling.

For VGG19 and ResNet32x2 on one batch of 100 random 32x32x3 images (10 per class, in class
order), each measurement runs in a fresh Python process (a worker), which reports:

* ``first``: the first call as a user makes it in a new process (sampling, tracing and graph
  optimisation included);
* ``warm``: the median of ``--repeats`` later calls, interleaved with as many gradient steps
  (one forward+backward: the gradient of the mean loss w.r.t. the prunable weights, training
  mode, in a warm ``tf.function``), so that a ratio compares two medians taken under the
  same machine load;
* ``peak_mib``: the peak resident-memory growth of the first call, read from Linux's
  ``VmHWM`` after resetting it (``/proc/self/clear_refs``) just before the call; the baseline
  is the RSS after TensorFlow, the model and the data are loaded. ``tracemalloc`` cannot see
  TensorFlow's C++ allocations, hence RSS; a fresh process per measurement keeps one
  measurement's caches and allocator pools out of another's.

With ``--parts=methods``: every registered method's time to masks at 98% sparsity
(``grasp_tf.compute_masks`` on the same batch of 100 images; each method with its defaults, the
iterative ones with their published rounds; ``random`` also at ERK densities) on both models, a
fresh process per method. The time is the first call as a user makes it (tracing included),
divided by the warm median of one forward+backward measured in the same process (5 steps
before the call and 5 after, so that the ratio compares times taken under the same load).

Then GraSP with ``chunk_size`` on 100, 1,000 and 10,000 samples (``--scaling_model``, a smaller
net so the 10,000-sample run fits on a CPU): time should grow linearly, memory stay flat.

Then, with ``--streaming`` (``bench/streaming.py``): GraSP over 1 to 40 draws of 250
ImageNet-shaped images (224 px, through ``train.data.load("imagenet2012")`` on generated
data) with the sample spilled to disk, kept in memory or replayed: peak RSS must stay flat
when streamed, time linear; and GraSP on VGG16 / ResNet-50 pieces, to project the
reference ImageNet setting.

    python bench/scoring.py              # full run, writes bench/results/scoring.{json,md}
    python bench/scoring.py --parts=methods  # every method's time to masks, writes scoring_methods.{json,md}
    python bench/scoring.py --quick      # LeNet-300-100 only, in one process, < 1 minute
    python bench/scoring.py --streaming  # streamed sample, writes bench/results/scoring_streaming.{json,md}
    python bench/scoring.py --projection # VGG16 / ResNet-50 pieces, writes scoring_projection.{json,md}
"""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

if __package__ in (None, ""):  # run as `python bench/<script>.py`: bench/ is not installed, import it from here
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common, masks_timing, streaming  # noqa: E402

MODELS = common.MODELS
SCALING_SIZES = (100, 1000, 10000)
STREAM_RUNS = (("disk", 1), ("disk", 10), ("disk", 40), ("memory", 10), ("replay", 10))
PROJECTION_RUNS = (("resnet50", 4), ("resnet50", 8), ("vgg16_imagenet", 4), ("vgg16_imagenet", 8))


def measure(model_name: str, op: str, n: int, repeats: int, chunk_size: int | None) -> dict:
    """First call (time, peak memory) and warm median of ``op`` in this process, beside warm gradient steps."""
    import keras

    import grasp_tf
    import models

    keras.utils.set_random_seed(0)
    model = models.build(model_name, 10, (32, 32, 3), seed=0)
    x, y = common.batch(n)
    step = common.gradient_step(model, *common.batch(100))
    opts = {} if chunk_size is None else {"chunk_size": chunk_size}
    call = step if op == "step" else (lambda: grasp_tf.compute_scores(model, (x, y), op, **opts))
    baseline = common.reset_peak_rss()
    first = common.timed(call)
    peak = common.peak_rss_since(baseline)
    if op != "step":
        step()  # trace and warm the reference step
    ops, steps = [], []
    for _ in range(repeats):
        steps.append(common.timed(step))
        ops.append(common.timed(call) if op != "step" else steps[-1])
    warm, step_warm = common.median(ops), common.median(steps)
    return {"model": model_name, "op": op, "n": n, "chunk_size": chunk_size, "repeats": repeats,
            "first_s": first, "warm_s": warm, "step_warm_s": step_warm, "ratio_to_step": warm / step_warm,
            "first_over_warm": first / warm, "peak_mib": peak, "warm_all_s": ops, "step_all_s": steps}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="LeNet-300-100 only, in this process, under a minute")
    p.add_argument("--repeats", type=int, default=5, help="warm calls per measurement (median)")
    p.add_argument("--scaling_model", default="conv4")
    p.add_argument("--chunk_size", type=int, default=50)
    p.add_argument("--output_dir", default=common.RESULTS)
    p.add_argument("--parts", default="models,scaling",
                   help="models (VGG19/ResNet32 timings), scaling (chunked 100/1k/10k), or both; or methods "
                        "(every method's time to masks at 98%%)")
    p.add_argument("--methods", default="", help="with --parts=methods: only these (comma-separated; '' = all)")
    p.add_argument("--streaming", action="store_true",
                   help="streamed sample at ImageNet shape: 1-40 draws; disk, memory, replay (~12 min)")
    p.add_argument("--projection", action="store_true",
                   help="GraSP on VGG16 / ResNet-50 pieces of 4 and 8 images at 224 px, for the ImageNet projection")
    p.add_argument("--mask_worker", nargs=3, metavar=("MODEL", "METHOD", "OPTIONS"), help=argparse.SUPPRESS)
    p.add_argument("--worker", nargs=3, metavar=("MODEL", "OP", "N"), help=argparse.SUPPRESS)
    p.add_argument("--stream_worker", nargs=2, metavar=("STORAGE", "DRAWS"), help=argparse.SUPPRESS)
    p.add_argument("--piece_worker", nargs=2, metavar=("MODEL", "PIECE"), help=argparse.SUPPRESS)
    p.add_argument("--worker_chunk_size", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def table(rows: list[dict], scaling: list[dict]) -> str:
    """Markdown: per model the step, GraSP and SNIP times and ratios; then the chunked scaling."""
    out = "" if not rows else common.markdown_table(
        ["model", "op", "warm median (s)", "x one fwd+bwd (ratio of medians)", "x one fwd+bwd (median of per-call ratios)",
         "first call (s)", "first / warm", "peak RSS growth (MiB)"],
        [[r["model"], r["op"], f"{r['warm_s']:.3f}", f"{r['ratio_to_step']:.2f}",
          f"{common.median([o / s for o, s in zip(r['warm_all_s'], r['step_all_s'])]):.2f}", f"{r['first_s']:.2f}",
          f"{r['first_over_warm']:.2f}", f"{r['peak_mib']:.0f}"] for r in rows])
    if scaling:
        base = scaling[0]
        out += ("\n" if out else "") + common.markdown_table(
            ["model", "samples", "chunk_size", "first call (s)", "warm (s)", "warm / (n/100 x warm at 100)",
             "peak RSS growth (MiB)"],
            [[r["model"], r["n"], r["chunk_size"], f"{r['first_s']:.2f}", f"{r['warm_s']:.2f}",
              f"{r['warm_s'] / (r['n'] / base['n'] * base['warm_s']):.2f}", f"{r['peak_mib']:.0f}"]
             for r in scaling])
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.stream_worker or args.piece_worker:
        storage_or_model, n = args.stream_worker or args.piece_worker
        fn = streaming.measure if args.stream_worker else streaming.measure_piece
        print(json.dumps(fn(storage_or_model, int(n))))
        return
    if args.streaming or args.projection:
        run_streaming(args)
        return
    if args.mask_worker:
        model, method, options = args.mask_worker
        print(json.dumps(masks_timing.measure_masks(model, method, json.loads(options))))
        return
    if args.parts == "methods":
        masks_timing.run_methods(args.output_dir, args.methods, os.path.abspath(__file__))
        return
    if args.worker:
        model, op, n = args.worker
        print(json.dumps(measure(model, op, int(n), args.repeats, args.worker_chunk_size or None)))
        return
    script = os.path.abspath(__file__)
    parts = args.parts.split(",")
    command = "python bench/scoring.py" + (" --quick" if args.quick else f" --repeats={args.repeats}") + (
        "" if args.parts == "models,scaling" else f" --parts={args.parts}")
    stem = "scoring_quick" if args.quick else "scoring" + ("" if len(parts) == 2 else "_" + parts[0])
    rows: list[dict] = []
    scaling: list[dict] = []
    info = common.machine()

    def save() -> None:
        record = {"command": command, "machine": info, "rows": rows, "scaling": scaling}
        common.write_outputs(stem, record, table(rows, scaling), args.output_dir)
        print(table(rows, scaling), flush=True)

    if args.quick:
        rows += [measure("lenet300", op, 100, 2, None) for op in ("step", "grasp", "snip")]
        scaling += [measure("lenet300", "grasp", n, 1, args.chunk_size) for n in (100, 200)]
        save()
        return
    for model in MODELS if "models" in parts else ():  # saved after every measurement: a partial run keeps it
        for op in ("step", "grasp", "snip"):
            rows.append(common.run_worker(script, ["--worker", model, op, "100", f"--repeats={args.repeats}"]))
            save()
    for n in SCALING_SIZES if "scaling" in parts else ():
        repeats = max(1, min(args.repeats, 1000 // n))
        scaling.append(common.run_worker(script, ["--worker", args.scaling_model, "grasp", str(n),
                                                  f"--repeats={repeats}", f"--worker_chunk_size={args.chunk_size}"]))
        save()


def run_streaming(args: argparse.Namespace) -> None:
    """``--streaming`` / ``--projection``: every run in a fresh process, the record saved after each."""
    script = os.path.abspath(__file__)
    stem = "scoring_streaming" if args.streaming else "scoring_projection"
    record = {"command": f"python bench/scoring.py --{stem.split('_')[1]}", "machine": common.machine(),
              "rows": [], "pieces": []}

    def save() -> None:
        text = streaming.tables(record["rows"], record["pieces"])
        common.write_outputs(stem, record, text, args.output_dir)
        print(text, flush=True)

    for storage, draws in STREAM_RUNS if args.streaming else ():
        record["rows"].append(common.run_worker(script, ["--stream_worker", storage, str(draws)]))
        save()
    for model, piece in PROJECTION_RUNS if args.projection else ():
        record["pieces"].append(common.run_worker(script, ["--piece_worker", model, str(piece)]))
        save()


if __name__ == "__main__":
    main()

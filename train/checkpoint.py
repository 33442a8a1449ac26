"""Epoch checkpoints a crash cannot corrupt: weights and metrics rows committed together by one rename.

An epoch's checkpoint is two files in the backup folder:

* ``epoch-NNNN.weights.h5``: model and optimizer state (``model.save_weights``), written under
  a temporary name, fsynced, then renamed;
* ``epoch-NNNN.json``: the commit record, written the same way *after* the weights: the
  epoch, the weights file's size and SHA-256, and every ``metrics.csv`` row up to that epoch.

A checkpoint exists only once its record does, and the record vouches for the weights, so at
every instant the newest valid checkpoint is a complete one. ``metrics.csv`` is derived from
the record (never appended to), so no row can be lost or written twice. The two newest
checkpoints are kept: if the newest fails verification at start-up (a disk that lost data,
a file edited by hand), the run says so in one line and resumes from the one before.
Keras' ``BackupAndRestore(double_checkpoint=True)`` is not this: it copies the previous file,
then overwrites the current one in place, and writes its epoch record non-atomically.
"""
from __future__ import annotations

import glob
import json
import os
import re
from typing import Any, Callable

import keras
import numpy as np

from train import artifacts
from train.errors import UsageError

KEEP = 2
_RECORD = re.compile(r"epoch-(\d+)\.json$")


def _name(epoch: int) -> str:
    return f"epoch-{epoch:04d}"


def weights_bytes(model: keras.Model) -> int:
    """A generous bound on the size of ``model``'s weights file (with its optimizer state), for ``artifacts.reserve``."""
    variables = list(model.weights) + (list(model.optimizer.variables) if model.optimizer is not None else [])
    raw = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)
    return int(raw * 1.05) + 4096 * len(variables) + (1 << 20)


def check_masks(model: keras.Model, masks: dict[str, np.ndarray], epoch: int, masks_path: str) -> None:
    """``UsageError`` unless the restored checkpoint of ``epoch`` holds exactly the masks of ``masks_path``."""
    import grasp_tf

    held = grasp_tf.get_masks(model)
    differ = sorted(k for k in set(held) | set(masks)
                    if k not in held or k not in masks or not np.array_equal(held[k], np.asarray(masks[k], bool)))
    if differ:
        raise UsageError(f"{masks_path} disagrees with the checkpoint of epoch {epoch} (masks of {differ[0]}"
                         f"{f' and {len(differ) - 1} more' if len(differ) > 1 else ''}): the run directory was "
                         "modified; restore its masks.npz or start again with --overwrite")


class Checkpoints:
    """The checkpoints of one run, in ``directory`` (created on first save)."""

    def __init__(self, directory: str):
        self.directory = directory

    def epochs(self) -> list[int]:
        """Epochs with a commit record, newest first."""
        found = (_RECORD.search(p) for p in glob.glob(os.path.join(self.directory, "epoch-*.json")))
        return sorted((int(m.group(1)) for m in found if m), reverse=True)

    def save(self, model: keras.Model, epoch: int, rows: list[dict[str, Any]]) -> None:
        """Checkpoint ``model`` (weights and optimizer) after ``epoch`` with the metrics ``rows`` so far."""
        os.makedirs(self.directory, exist_ok=True)
        weights = os.path.join(self.directory, _name(epoch) + ".weights.h5")
        tmp = os.path.join(self.directory, ".tmp-" + _name(epoch) + ".weights.h5")
        newest = self.epochs()[:1]
        previous = os.path.join(self.directory, _name(newest[0]) + ".weights.h5") if newest else ""
        artifacts.reserve(weights, max(weights_bytes(model), os.path.getsize(previous) if os.path.exists(previous) else 0))
        try:
            model.save_weights(tmp, overwrite=True)
            artifacts.crash_point("backup_write", epoch)  # the weights are written, not yet renamed
            artifacts.commit_file(tmp, weights)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        artifacts.crash_point("backup_record", epoch)  # renamed, but no record vouches for them yet
        record = {"epoch": epoch, "weights": os.path.basename(weights), "bytes": os.path.getsize(weights),
                  "sha256": artifacts.sha256(weights), "rows": rows}
        artifacts.write_json(os.path.join(self.directory, _name(epoch) + ".json"), record)
        self._prune(keep=self.epochs()[:KEEP])

    def restore(self, model: keras.Model, warn: Callable[[str], None]) -> tuple[int, list[dict[str, Any]]]:
        """Load the newest valid checkpoint into ``model``; returns (its epoch, its rows), or (0, []).

        ``model`` must be compiled; its optimizer is built first so that its state loads too.
        A checkpoint that fails verification is reported through ``warn`` and skipped.
        """
        for epoch in self.epochs():
            problem, record = self._verify(epoch)
            if problem is None:
                if model.optimizer is not None and not model.optimizer.built:
                    model.optimizer.build(model.trainable_variables)
                try:
                    model.load_weights(os.path.join(self.directory, record["weights"]))
                    return epoch, record["rows"]
                except (OSError, ValueError) as e:
                    problem = f"its weights do not load ({str(e).splitlines()[0]})"
            warn(f"warning: the checkpoint of epoch {epoch} in {self.directory} is unusable ({problem}); "
                 "falling back to the one before")
        return 0, []

    def _verify(self, epoch: int) -> tuple[str | None, dict[str, Any]]:
        """(why the checkpoint of ``epoch`` cannot be used, or None if its record vouches for its weights; the record)."""
        record: dict[str, Any] = {}
        try:
            with open(os.path.join(self.directory, _name(epoch) + ".json")) as f:
                record = json.load(f)
            if [int(r["epoch"]) for r in record["rows"]] != list(range(1, epoch + 1)):
                return "its metrics rows are not epochs 1.." + str(epoch), record
            weights = os.path.join(self.directory, record["weights"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            return f"unreadable record: {e}", record
        if not os.path.exists(weights):
            return f"{record['weights']} is missing", record
        if os.path.getsize(weights) != record["bytes"]:
            return (f"{record['weights']} has {os.path.getsize(weights):,} bytes, the record says "
                    f"{record['bytes']:,}"), record
        if artifacts.sha256(weights) != record["sha256"]:
            return f"{record['weights']} does not match its SHA-256", record
        return None, record

    def _prune(self, keep: list[int]) -> None:
        """Remove checkpoints older than ``keep`` and files no record vouches for (a killed save's)."""
        wanted = {_name(e) + suffix for e in keep for suffix in (".json", ".weights.h5")}
        for name in os.listdir(self.directory):
            if name not in wanted:
                os.remove(os.path.join(self.directory, name))


class EpochCheckpoint(keras.callbacks.Callback):
    """After each epoch: its metrics row, a checkpoint vouching for both, then ``metrics.csv`` from it."""

    def __init__(self, checkpoints: Checkpoints, rows: list[dict[str, Any]], metrics_csv: str):
        super().__init__()
        self.checkpoints = checkpoints
        self.rows = list(rows)
        self.metrics_csv = metrics_csv

    def on_train_batch_end(self, batch, logs=None):
        if batch == 1:
            artifacts.crash_point("mid_epoch", len(self.rows) + 1)

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append({"epoch": epoch + 1, **{k: str(float(v)) for k, v in sorted(logs.items())}})
        self.checkpoints.save(self.model, epoch + 1, self.rows)
        artifacts.crash_point("after_backup", epoch + 1)
        artifacts.write_metrics(self.metrics_csv, self.rows)

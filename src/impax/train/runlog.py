"""Scalar logs of a training run: ``RUN/metrics.jsonl`` and TensorBoard events in ``RUN/tb/``.

``metrics.jsonl`` has one JSON object per log interval::

    {"step": 200, "stage": "vox16", "epoch": 3, "time": 1712345678.9,
     "loss": 0.021, "<metric>": ..., "learning_rate": 5e-05,
     "samples_per_sec": 812.4, "steps_per_sec": 25.4}

where ``loss`` and the user's metrics are means over the steps of the interval and ``step`` is
the global step count after the interval. TensorBoard gets the same numbers under the tags
``train/loss``, ``train/<metric>``, ``train/learning_rate`` (``train/learning_rate/<name>`` with
several optimisers), ``perf/samples_per_sec`` and ``perf/steps_per_sec``.

On resume from a checkpoint at step S, lines with ``step > S`` (written by the interrupted run
after its last checkpoint) are dropped from ``metrics.jsonl`` (the file is rewritten atomically)
and TensorBoard is told to purge events from step S+1 on, so both logs read as one uninterrupted
run. Only one process writes a run's logs: :func:`impax.train.fit` holds the run folder's lock.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from impax.data.safety import atomic_write_text

METRICS_FILE = "metrics.jsonl"
TB_DIR = "tb"
RESERVED = frozenset({"step", "stage", "epoch", "time", "samples_per_sec", "steps_per_sec"})


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``RUN/metrics.jsonl`` (for reports and plots)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class RunLog:
    """Writer for ``metrics.jsonl`` and TensorBoard scalars, resume-aware."""

    def __init__(self, run_dir: str | Path, resume_step: int, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / METRICS_FILE
        self._truncate(resume_step)
        self._file = self.path.open("a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            tb_dir = self.run_dir / TB_DIR
            had_events = tb_dir.is_dir() and any(tb_dir.iterdir())
            self._tb = SummaryWriter(str(tb_dir), purge_step=resume_step + 1 if had_events else None,
                                     flush_secs=30)

    def _truncate(self, resume_step: int) -> None:
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            if int(rec.get("step", 0)) <= resume_step:
                keep.append(line)
        # atomically: a run killed here must not lose the lines before the checkpoint
        atomic_write_text(self.path, "".join(k + "\n" for k in keep))

    def write(self, step: int, stage: str, epoch: int, scalars: Mapping[str, float],
              perf: Mapping[str, float]) -> dict[str, Any]:
        clash = RESERVED & set(scalars)
        if clash:
            raise ValueError(f"metric names {sorted(clash)} are reserved in metrics.jsonl")
        rec: dict[str, Any] = {"step": int(step), "stage": stage, "epoch": int(epoch),
                               "time": time.time()}
        rec.update({k: _num(v) for k, v in scalars.items()})
        rec.update({k: _num(v) for k, v in perf.items()})
        self._file.write(json.dumps(rec) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(f"train/{k}", float(v), step)
            for k, v in perf.items():
                self._tb.add_scalar(f"perf/{k}", float(v), step)
        return rec

    def flush(self) -> None:
        self._file.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _num(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None

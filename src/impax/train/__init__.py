"""impax.train: one training loop for IM-NET and SIF/LDIF.

Public API:

* :func:`fit` — train an ``nnx.Module`` through :class:`Stage` s with checkpoints, exact resume,
  TensorBoard/``metrics.jsonl`` logging, NaN stop (:class:`TrainingDiverged`) and data parallelism.
* :class:`TrainConfig` (IM-NET's Adam 5e-5, beta1 0.5 by default), :class:`Stage`,
  :class:`Position`, :class:`FitResult`.
* :func:`make_optimizer`, :func:`adam`, :func:`loss_step` — the optimiser(s) and standard step.
* :func:`load_model` — restore a run's model state into a module (inference, SVR's decoder).
* :func:`read_metrics` — the records of ``RUN/metrics.jsonl``.
"""

from impax.train.checkpoint import CheckpointStore, load_model, named_leaves
from impax.train.config import Position, Stage, TrainConfig
from impax.train.parallel import DataParallel, Prefetcher
from impax.train.runlog import read_metrics
from impax.train.trainer import (FitResult, TrainingDiverged, adam, fit, loss_step,
                                 make_optimizer)

__all__ = [
    "CheckpointStore", "DataParallel", "FitResult", "Position", "Prefetcher", "Stage",
    "TrainConfig", "TrainingDiverged", "adam", "fit", "load_model", "loss_step", "make_optimizer",
    "named_leaves", "read_metrics",
]

"""impax.train: one training loop for IM-NET and SIF/LDIF.

Public API (loaded on first use, so that light modules such as :mod:`impax.train.registry` can be
imported without JAX):

* :func:`fit` — train an ``nnx.Module`` through :class:`Stage` s with checkpoints, exact resume,
  TensorBoard/``metrics.jsonl`` logging, NaN stop (:class:`TrainingDiverged`) and data parallelism.
* :class:`TrainConfig` (IM-NET's Adam 5e-5, beta1 0.5 by default), :class:`Stage`,
  :class:`Position`, :class:`FitResult`.
* :func:`make_optimizer`, :func:`adam`, :func:`loss_step` — the optimiser(s) and standard step.
* :func:`load_model` — restore a run's model state into a module (inference, SVR's decoder).
* :func:`read_metrics` — the records of ``RUN/metrics.jsonl``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CheckpointStore": "checkpoint", "load_model": "checkpoint", "named_leaves": "checkpoint",
    "Position": "config", "Stage": "config", "TrainConfig": "config",
    "BatchSplitError": "parallel", "DataParallel": "parallel", "Prefetcher": "parallel", "read_metrics": "runlog",
    "FitResult": "trainer", "TrainingDiverged": "trainer", "adam": "trainer", "fit": "trainer",
    "loss_step": "trainer", "make_optimizer": "trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"impax.train.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'impax.train' has no attribute {name!r}")

"""Multi-process (multi-host) training with JAX's own distributed runtime.

impax has no launcher or parameter server of its own: every host runs the same ``impax train``
command, :func:`initialize` connects the processes with ``jax.distributed.initialize``, and
:func:`impax.train.fit` then trains data-parallel over the devices of *all* processes (a 1-D
``data`` mesh, parameters replicated, gradients all-reduced by the compiler). See
``docs/distributed.md`` for launch recipes (SLURM, plain multi-node command lines).

How the processes are found, first match wins:

1. explicit arguments / CLI flags ``--coordinator HOST:PORT --num-processes N --process-id I``;
2. the environment variables ``IMPAX_COORDINATOR``, ``IMPAX_NUM_PROCESSES``, ``IMPAX_PROCESS_ID``
   (and optionally ``IMPAX_LOCAL_DEVICE_IDS``, comma separated);
3. ``auto=True`` (CLI ``--distributed``): ``jax.distributed.initialize()`` with no arguments, i.e.
   JAX's cluster auto-detection (SLURM, Open MPI, Kubernetes, Cloud TPU) and its
   ``JAX_COORDINATOR_ADDRESS`` variable.

Nothing found: the run stays single-process (no-op).

How each process gets its data (the choice documented in ``docs/distributed.md``): every
process iterates the *same* deterministic loader (the loader contract makes batch ``b`` of epoch
``e`` a function of (seed, e, b)) and keeps its own contiguous block of rows of each global batch
(:func:`process_rows`); :meth:`impax.train.DataParallel.put_batch` assembles the global array with
``jax.make_array_from_process_local_data``. The global batch — and so the result, up to float
reduction order — is the same for any number of processes. A loader that already yields only its
process's rows sets the attribute ``process_local = True`` and is used as it is.

CPU collectives: jax 0.10.2 uses gloo by default (``jax_cpu_collectives_implementation ==
'gloo'``); :func:`initialize` only switches it on when it was set to ``'none'``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from impax.data.loader import process_rows

ENV_COORDINATOR = "IMPAX_COORDINATOR"
ENV_NUM_PROCESSES = "IMPAX_NUM_PROCESSES"
ENV_PROCESS_ID = "IMPAX_PROCESS_ID"
ENV_LOCAL_DEVICE_IDS = "IMPAX_LOCAL_DEVICE_IDS"


@dataclasses.dataclass(frozen=True)
class DistributedSpec:
    """Where the coordinator is and which process this is.

    ``coordinator``: ``HOST:PORT`` of process 0's coordination service; ``num_processes``: how
    many processes take part; ``process_id``: this one's index (0 is the coordinator and writes
    the logs); ``local_device_ids``: restrict this process to these local devices (``None``: all);
    ``auto``: let JAX detect the cluster (SLURM etc.) instead.
    """

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    local_device_ids: tuple[int, ...] | None = None
    auto: bool = False

    def __post_init__(self) -> None:
        if self.auto:
            return
        given = [self.coordinator is not None, self.num_processes is not None,
                 self.process_id is not None]
        if any(given) and not all(given):
            raise ValueError("multi-process training needs all of coordinator (HOST:PORT), "
                             "num_processes and process_id (or auto detection)")
        if all(given):
            if ":" not in str(self.coordinator):
                raise ValueError(f"coordinator must be HOST:PORT, got {self.coordinator!r}")
            if int(self.num_processes) < 1:  # type: ignore[arg-type]
                raise ValueError(f"num_processes must be >= 1, got {self.num_processes}")
            if not 0 <= int(self.process_id) < int(self.num_processes):  # type: ignore[arg-type]
                raise ValueError(f"process_id must be in [0, {self.num_processes}), "
                                 f"got {self.process_id}")

    @property
    def enabled(self) -> bool:
        return self.auto or self.coordinator is not None


def spec_from(coordinator: str | None = None, num_processes: int | None = None,
              process_id: int | None = None, auto: bool = False,
              env: Mapping[str, str] | None = None) -> DistributedSpec:
    """Merge explicit values (CLI flags) with the ``IMPAX_*`` environment variables.

    Explicit values win field by field; ``auto`` is used only when neither gives a coordinator.
    """
    env = os.environ if env is None else env
    coord = coordinator if coordinator is not None else env.get(ENV_COORDINATOR) or None
    nproc = num_processes if num_processes is not None else _int_env(env, ENV_NUM_PROCESSES)
    pid = process_id if process_id is not None else _int_env(env, ENV_PROCESS_ID)
    ids = env.get(ENV_LOCAL_DEVICE_IDS)
    local = tuple(int(x) for x in ids.split(",") if x.strip()) if ids else None
    if coord is None and nproc is None and pid is None:
        return DistributedSpec(auto=auto, local_device_ids=local)
    return DistributedSpec(coord, nproc, pid, local)


def _int_env(env: Mapping[str, str], name: str) -> int | None:
    v = env.get(name)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {v!r}") from None


def initialize(spec: DistributedSpec | None = None, *, timeout_s: int = 300) -> dict[str, int]:
    """Connect this process to the others (``jax.distributed.initialize``) as ``spec`` says.

    Must run before anything touches a JAX backend. ``spec`` ``None``: read the ``IMPAX_*``
    environment (:func:`spec_from`). A disabled spec is a no-op; calling again after a successful
    initialisation is a no-op too. Returns ``{"process_index", "process_count",
    "local_devices", "global_devices"}``.
    """
    import jax

    spec = spec_from() if spec is None else spec
    if spec.enabled and not is_initialized():
        if jax.config.jax_cpu_collectives_implementation in (None, "none"):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        if spec.auto:
            kw: dict[str, Any] = {}
            if spec.local_device_ids is not None:
                kw["local_device_ids"] = list(spec.local_device_ids)
            jax.distributed.initialize(initialization_timeout=timeout_s, **kw)
        else:
            jax.distributed.initialize(
                coordinator_address=spec.coordinator, num_processes=spec.num_processes,
                process_id=spec.process_id,
                local_device_ids=(list(spec.local_device_ids)
                                  if spec.local_device_ids is not None else None),
                initialization_timeout=timeout_s)
    return {"process_index": jax.process_index(), "process_count": jax.process_count(),
            "local_devices": jax.local_device_count(), "global_devices": jax.device_count()}


def is_initialized() -> bool:
    """True once ``jax.distributed.initialize`` has connected this process."""
    from jax._src import distributed as _dist  # the public API has no query for this

    return getattr(_dist.global_state, "client", None) is not None


def process_index() -> int:
    import jax

    return jax.process_index()


def process_count() -> int:
    import jax

    return jax.process_count()


def is_primary() -> bool:
    """Process 0: the one that writes logs, metrics and TensorBoard events."""
    return process_index() == 0


def local_part(batch: Any, index: int, count: int) -> Any:
    """This process's rows of every leaf of a global host batch (see :func:`process_rows`)."""
    import jax

    def cut(leaf: Any) -> Any:
        if not np.ndim(leaf):
            raise ValueError("batch leaves need a leading batch axis to be split over processes")
        return np.asarray(leaf)[process_rows(np.shape(leaf)[0], index, count)]

    return jax.tree.map(cut, batch)


def agree_any(flags: list[bool]) -> list[bool]:
    """Element-wise OR of boolean flags over all processes (one small collective).

    Used for the decisions that must be the same everywhere because they start collective
    work: a time-based checkpoint and a stop requested by a signal.
    """
    import jax

    if jax.process_count() == 1:
        return [bool(f) for f in flags]
    from jax.experimental import multihost_utils

    got = multihost_utils.process_allgather(np.asarray(flags, np.int32))
    return [bool(v) for v in np.asarray(got).reshape(-1, len(flags)).any(axis=0)]

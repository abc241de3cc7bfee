"""Data parallelism over local devices and batch prefetching.

A 1-D device mesh with a ``data`` axis: each batch is split along its leading axis
(``P('data')``), parameters and optimiser state are replicated (``P()``) and the compiler inserts
the gradient all-reduce, so the global batch size (and the result, up to float reduction order)
does not depend on the device count. The mesh uses ``AxisType.Auto``: jax 0.10's default
``Explicit`` axes reject the parameter gradients that contract over the sharded batch.

With one device there is no mesh and no sharding annotation at all: the step is a plain
``jax.jit`` and batches are put on the default device, so a single device costs nothing extra.

Several processes (after :func:`impax.train.distributed.initialize`): the mesh spans the first
``num_devices`` local devices of *every* process, ordered by process, so process ``i`` holds the
``i``-th contiguous block of each global batch. :meth:`DataParallel.put_batch` takes the global
host batch (every process loads the same one; each keeps its rows) or, with ``local=True``, only
this process's rows, and builds the global array with ``jax.make_array_from_process_local_data``.
Replicated state is built from host values that are the same on every process.

Batches that do not divide by the device count are refused, not padded: every row of a batch is
split evenly over the mesh (``P('data')`` needs equal shards), and padding with masked rows would
need every loss — including batch statistics such as LDIF's CBN and IM-GAN's critic — to take a
mask to keep the exact mean over the real rows. :func:`fit <impax.train.fit>` checks every stage's
loader (its ``batch_size`` and, without ``drop_last``, the short last batch) against the mesh
before the first step and stops with one line (:func:`batch_split_message`) naming the device
counts that divide the batch and the nearest batch sizes that divide by the device count
(``docs/distributed.md``).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


class BatchSplitError(ValueError):
    """A batch whose rows cannot be split evenly over the devices of the mesh (one-line message)."""


def batch_split_message(rows: int, num_devices: int, available: int | None = None,
                        process_count: int = 1) -> str | None:
    """``None`` when a batch of ``rows`` rows splits evenly over ``num_devices`` devices, else one
    line naming what would work: the device counts that divide ``rows`` (up to ``available``, the
    devices this process could use, ``train.num_devices`` being per process) and the nearest batch
    sizes that are multiples of ``num_devices``."""
    rows, num_devices = int(rows), int(num_devices)
    if num_devices <= 1 or rows % num_devices == 0:
        return None
    available = num_devices // max(1, process_count) if available is None else int(available)
    procs = max(1, int(process_count))
    counts = [d for d in range(1, available + 1) if rows % (d * procs) == 0]
    per = " per process" if procs > 1 else ""
    lower = rows // num_devices * num_devices
    sizes = " or ".join(str(b) for b in (lower, lower + num_devices) if b > 0)
    fix = (f"run on {', '.join(map(str, counts))} device(s){per} (--set train.num_devices={counts[-1]})"
           if counts else f"no device count{per} up to {available} divides it")
    return (f"a batch of {rows} rows cannot be split evenly over {num_devices} devices: {fix}, "
            f"or use a batch size that is a multiple of {num_devices} ({sizes})")


def loader_batch_rows(loader: Any) -> list[int]:
    """The batch sizes a loader yields, as far as its attributes say: ``batch_size`` and, when it
    keeps a short last batch (``drop_last`` false), ``n_items % batch_size``; ``[]`` when unknown.
    A process-local loader with ``shard = (i, n)`` yields ``1/n`` of each."""
    bs = getattr(loader, "batch_size", None)
    if not isinstance(bs, (int, np.integer)) or isinstance(bs, bool) or bs < 1:
        return []
    rows = [int(bs)]
    n = getattr(loader, "n_items", None)
    if getattr(loader, "drop_last", True) is False and isinstance(n, (int, np.integer)) and n % bs:
        rows.append(int(n % bs))
    shard = getattr(loader, "shard", None)
    if getattr(loader, "process_local", False) and isinstance(shard, tuple) and len(shard) == 2:
        rows = [r // int(shard[1]) for r in rows]
    return rows


class DataParallel:
    """Placement of batches and state on the first ``num_devices`` local devices of every process.

    ``num_devices`` is the total (global) device count of the mesh, ``local_num_devices`` this
    process's share; with one process they are equal.
    """

    def __init__(self, num_devices: int | None = None):
        devices = jax.local_devices()
        n = len(devices) if num_devices is None else int(num_devices)
        if n > len(devices):
            raise ValueError(f"asked for {n} devices but only {len(devices)} are available "
                             f"({devices[0].platform})")
        self.process_index = jax.process_index()
        self.process_count = jax.process_count()
        self.local_num_devices = n
        self.local_devices = devices[:n]
        if self.process_count == 1:
            self.devices = self.local_devices
        else:  # the first n local devices of every process, process by process
            by_proc: dict[int, list[Any]] = {}
            for d in sorted(jax.devices(), key=lambda d: (d.process_index, d.id)):
                by_proc.setdefault(d.process_index, []).append(d)
            short = {p: len(ds) for p, ds in by_proc.items() if len(ds) < n}
            if short:
                raise ValueError(f"asked for {n} devices per process but processes {short} have fewer")
            self.devices = [d for p in sorted(by_proc) for d in by_proc[p][:n]]
        self.num_devices = len(self.devices)
        if self.num_devices == 1:
            self.mesh = None
            self.batch_sharding: Any = self.devices[0]
            self.replicated: Any = self.devices[0]
        else:
            self.mesh = jax.make_mesh((self.num_devices,), (DATA_AXIS,),
                                      axis_types=(jax.sharding.AxisType.Auto,), devices=self.devices)
            self.batch_sharding = NamedSharding(self.mesh, P(DATA_AXIS))
            self.replicated = NamedSharding(self.mesh, P())

    @property
    def multi_process(self) -> bool:
        return self.process_count > 1

    def check_rows(self, rows: int, local: bool = False, what: str = "") -> None:
        """:class:`BatchSplitError` (:func:`batch_split_message`) unless a batch of ``rows`` rows
        (this process's rows with ``local``) splits evenly over the mesh."""
        n = self.local_num_devices if local else self.num_devices
        msg = batch_split_message(rows, n, len(jax.local_devices()), 1 if local else self.process_count)
        if msg is not None:
            raise BatchSplitError(f"{what}{msg}")

    def put_batch(self, batch: Any, local: bool = False) -> Any:
        """Host batch (dict of numpy arrays) → device arrays, split along axis 0 over the mesh.

        ``batch`` is the global batch (each process keeps its block of rows, see
        :func:`impax.data.loader.process_rows`) or, with ``local=True``, already this
        process's rows.
        """
        if self.num_devices > 1:
            for leaf in jax.tree.leaves(batch):
                if not np.ndim(leaf):
                    raise BatchSplitError(f"a batch leaf without a leading batch axis cannot be split over "
                                          f"{self.num_devices} devices")
                self.check_rows(np.shape(leaf)[0], local and self.multi_process,
                                "this process's batch: " if local and self.multi_process else "")
        if not self.multi_process:
            return jax.device_put(batch, self.batch_sharding)
        if not local:
            from impax.train.distributed import local_part

            batch = local_part(batch, self.process_index, self.process_count)
        return jax.tree.map(
            lambda x: jax.make_array_from_process_local_data(self.batch_sharding, np.asarray(x)),
            batch)

    def put_replicated(self, tree: Any) -> Any:
        """Copies of ``tree`` on every device of the mesh (the values must agree across processes)."""
        if not self.multi_process:
            return jax.device_put(tree, self.replicated)
        return jax.tree.map(self._replicate_global, tree)

    def _replicate_global(self, x: Any) -> Any:
        from impax.train.checkpoint import host_copy, is_key

        if is_key(x):
            impl = jax.random.key_impl(x)
            data = self._replicate_global(host_copy(x))
            return jax.random.wrap_key_data(data, impl=impl)
        host = host_copy(x) if isinstance(x, jax.Array) else np.asarray(x)
        return jax.make_array_from_callback(host.shape, self.replicated, lambda idx: host[idx])

    def jit(self, fn: Callable, donate_argnums: tuple[int, ...] = ()) -> Callable:
        """``jax.jit`` with outputs replicated over the mesh (plain jit on one device)."""
        if self.mesh is None:
            return jax.jit(fn, donate_argnums=donate_argnums)
        return jax.jit(fn, donate_argnums=donate_argnums, out_shardings=self.replicated)


_END = object()


class _Raised:
    def __init__(self, exc: BaseException):
        self.exc = exc


class Prefetcher:
    """Iterate ``put(item)`` for the items of ``iterable``, prepared ``size`` ahead on a thread.

    Order is preserved (one producer). ``size == 0`` runs synchronously in the caller's thread.
    Exceptions of the producer are re-raised by the consumer. Always :meth:`close` (or use as a
    context manager) so the thread stops when the consumer stops early.
    """

    def __init__(self, iterable: Iterable[Any], put: Callable[[Any], Any], size: int = 2):
        self._size = size
        self._stop = threading.Event()
        if size == 0:
            self._sync: Iterator[Any] | None = (put(x) for x in iterable)
            self._thread = None
            return
        self._sync = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=size)
        self._thread = threading.Thread(target=self._produce, args=(iterable, put), daemon=True,
                                        name="impax-prefetch")
        self._thread.start()

    def _offer(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, iterable: Iterable[Any], put: Callable[[Any], Any]) -> None:
        try:
            for x in iterable:
                if self._stop.is_set() or not self._offer(put(x)):
                    return
            self._offer(_END)
        except BaseException as exc:  # handed to the consumer
            self._offer(_Raised(exc))

    def __iter__(self) -> Iterator[Any]:
        if self._sync is not None:
            yield from self._sync
            return
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

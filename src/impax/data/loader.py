"""Training batches (shapes × points) from a :class:`~impax.data.store.ShapeStore` or an IM-NET HDF5 file.

The contract (docs/CONTRACTS.md, "Loaders"): ``len(loader)`` is the number of batches per epoch and
``loader.iterate(epoch, start=0)`` yields dicts of numpy arrays, deterministic in (seed, epoch); ``start``
skips the first batches exactly (resume), because every batch draws from its own generator seeded by
(seed, epoch, batch number) and the shape order of an epoch from (seed, epoch).

Batches are produced by a background thread into a bounded queue (``prefetch`` batches ahead), or by
``workers`` processes. Only the shapes of a batch are opened and only the sampled rows of their point
arrays are read; a store packed for training (:mod:`impax.data.pack`: depth at the model's size in
float16, point sets pre-shuffled so that a random subset is one contiguous read, no compression)
is read about 15x faster than a prepared one (``python -m benchmarks --only loader``).

* :class:`StoreLoader` — generic: ``arrays`` (whole per-shape arrays, stacked) and ``samples``
  (point groups → points per shape per step). Point groups (:data:`POINT_GROUPS`) keep the arrays of
  one sample set aligned (points with their sdf/occupancy, IM-NET points with their values).
* :func:`imnet_loader` — IM-NET AE batches: ``voxels`` uint8 [B,64,64,64,1] (cast on the device), ``points`` f32 [B,n,3] in
  IM-NET's box (``(p + 0.5) / 256 - 0.5``), ``values`` f32 [B,n,1]. IM-NET-pytorch's batching is the
  default: 32 shapes × 4096 points, at level 64 one random contiguous quarter of the 16384 points
  (``point_mode="chunk"``, ``modelAE.py::train``). Optionally part of the points are the record's
  near-surface samples with their exact labels (``near_points``).
* :func:`ldif_loader` — LDIF batches: 1024 of the 100k uniform and 1024 of the 100k near-surface
  samples per shape per step (``spc=1024``), the 32^3 SDF grid, and the depth images or surface points.
* :class:`IMNetHdf5Loader` — the same IM-NET batches from an official ``all_vox256_img_*.hdf5`` file,
  held in memory like IM-NET-pytorch does (or read lazily with ``in_memory=False``).

Damaged data: a store loader leaves out the records that are missing or whose size differs from
``index.json`` (a truncated file), with one warning line on stderr naming them, before the epoch
order is fixed; a record that turns out unreadable while batches are read is a
:class:`~impax.data.store.RecordError` naming the file. An IM-NET HDF5 file that cannot be read is a
``ValueError`` naming it.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from impax.data import transport
from impax.data.store import RecordError, ShapeStore, read_rows

#: Point sample sets: group name → aligned datasets of a record.
POINT_GROUPS: dict[str, tuple[str, ...]] = {
    "uniform": ("uniform_points", "uniform_sdf", "uniform_occupancy"),
    "near": ("near_points", "near_sdf", "near_occupancy"),
    "surface": ("surface_points", "surface_normals"),
    "occ": ("occ_points", "occ_values"),
    "imnet16": ("points_16", "values_16"),
    "imnet32": ("points_32", "values_32"),
    "imnet64": ("points_64", "values_64"),
}

Batch = dict[str, np.ndarray]


def _rows(n: int, k: int, mode: str, rng: np.random.Generator) -> np.ndarray | slice:
    """Which rows of an ``n``-row set a shape contributes: ``k`` random distinct rows or one random chunk."""
    if k > n:
        raise ValueError(f"asked for {k} points per shape but the set has only {n}")
    if k == n:
        return slice(0, n)
    if mode == "chunk":
        j = int(rng.integers(n // k))
        return slice(j * k, (j + 1) * k)
    if mode == "random":
        return rng.choice(n, size=k, replace=False)
    if mode == "window":  # a pre-shuffled set (impax pack): k consecutive rows from a random start
        j = int(rng.integers(n - k + 1))
        return slice(j, j + k)
    raise ValueError(f"point_mode must be 'random', 'chunk' or 'window', got {mode!r}")


class BatchLoader:
    """Shared core: epoch order, per-batch generators, background prefetch. Subclasses define :meth:`load`.

    ``workers``: 0 reads batches on one background thread of this process; ``N > 0`` reads them in
    ``N`` worker processes (``spawn``ed once per loader, killed with their parent; a subclass says
    which part runs there: :meth:`load_raw`, and which here: :meth:`_finish`). Batches come back in
    order and are the same either way: batch ``b`` of ``epoch`` is a function of (seed, epoch, b).
    """

    def __init__(self, n_items: int, batch_size: int, seed: int = 0, shuffle: bool = True,
                 drop_last: bool = True, prefetch: int = 2, workers: int = 0) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if n_items < (batch_size if drop_last else 1):
            raise ValueError(f"{n_items} shapes cannot fill one batch of {batch_size}")
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers!r}")
        self.n_items, self.batch_size, self.seed = int(n_items), int(batch_size), int(seed)
        self.shuffle, self.drop_last, self.prefetch = shuffle, drop_last, max(1, int(prefetch))
        self.workers = int(workers)
        self._pool: Any = None

    def __len__(self) -> int:
        q, r = divmod(self.n_items, self.batch_size)
        return q if self.drop_last or r == 0 else q + 1

    def order(self, epoch: int) -> np.ndarray:
        """The item order of an epoch (a permutation, or identity without shuffling)."""
        if not self.shuffle:
            return np.arange(self.n_items)
        return np.random.default_rng([self.seed, int(epoch), 0]).permutation(self.n_items)

    def batch_items(self, epoch: int, b: int) -> np.ndarray:
        return self.order(epoch)[b * self.batch_size:(b + 1) * self.batch_size]

    def batch(self, epoch: int, b: int) -> Batch:
        """Batch ``b`` of ``epoch`` (synchronously, in this process)."""
        return self._finish(self._read(epoch, b))

    def _read(self, epoch: int, b: int) -> Any:
        """The part of :meth:`batch` a worker process runs (default: all of it)."""
        if not 0 <= b < len(self):
            raise IndexError(f"batch {b} of {len(self)}")
        items = self.batch_items(epoch, b)
        return self.load_raw(items, np.random.default_rng([self.seed, int(epoch), 1, b]))

    def _finish(self, raw: Any) -> Batch:
        """The part of :meth:`batch` that runs in this process on what :meth:`_read` returned."""
        return raw

    def load_raw(self, items: np.ndarray, rng: np.random.Generator) -> Any:
        """What :meth:`_read` returns for ``items`` (default: the whole :meth:`load`)."""
        return self.load(items, rng)

    def load(self, items: np.ndarray, rng: np.random.Generator) -> Batch:  # pragma: no cover - abstract
        raise NotImplementedError

    def iterate(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Batches ``start, start+1, ...`` of ``epoch``, prepared ``prefetch`` ahead by a background
        thread (``workers == 0``) or by the worker processes (``workers + prefetch`` ahead)."""
        if self.workers:
            return self._iterate_workers(epoch, start)
        return self._iterate_thread(epoch, start)

    def _iterate_thread(self, epoch: int, start: int) -> Iterator[Batch]:
        stop = threading.Event()
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        end = object()

        def work() -> None:
            try:
                for b in range(start, len(self)):
                    item = self.batch(epoch, b)
                    while not stop.is_set():
                        try:
                            q.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                q.put(end)
            except BaseException as e:  # handed to the consumer
                q.put(e)

        t = threading.Thread(target=work, name="impax-loader", daemon=True)
        t.start()
        try:
            while True:
                item = q.get()
                if item is end:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while t.is_alive():
                try:
                    q.get_nowait()
                except queue.Empty:
                    t.join(0.05)

    def _iterate_workers(self, epoch: int, start: int) -> Iterator[Batch]:
        pool = self._worker_pool()
        pending: deque = deque()
        nxt, ahead = start, self.workers + self.prefetch
        try:
            while nxt < len(self) or pending:
                while nxt < len(self) and len(pending) < ahead:
                    pending.append(pool.apply_async(_worker_read, (epoch, nxt)))
                    nxt += 1
                yield self._finish(transport.receive(pending.popleft().get()))
        finally:  # reads of an abandoned iteration: free their shared memory once they land
            for result in pending:
                result.wait(10)
                if result.ready() and result.successful():
                    transport.discard(result.get())

    def _worker_pool(self) -> Any:
        if self._pool is None:
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")  # never fork a process that runs JAX
            self._pool = ctx.Pool(self.workers, initializer=_worker_init, initargs=(self, os.getpid()))
            weakref.finalize(self, self._pool.terminate)
        return self._pool

    def close(self) -> None:
        """Stop the worker processes (a later :meth:`iterate` starts new ones)."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None

    def __getstate__(self) -> dict[str, Any]:
        """What a worker process gets: the loader without its pool (subclasses drop more)."""
        state = dict(self.__dict__)
        state["_pool"] = None
        return state


_WORKER: Any = None


def _worker_init(loader: BatchLoader, parent: int) -> None:
    """A loader worker process: dies with its parent, leaves interrupts to the parent."""
    import signal

    from impax.data.safety import die_with_parent

    global _WORKER
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER = loader


def _worker_read(epoch: int, b: int) -> Any:
    """Batch ``b`` of ``epoch``, handed over in shared memory (:mod:`impax.data.transport`)."""
    return transport.share(_WORKER._read(epoch, b))


def process_rows(global_rows: int, index: int, count: int) -> slice:
    """The contiguous block of a global batch's rows that process ``index`` of ``count`` holds.

    The device mesh orders devices by process, so process ``i`` owns rows
    ``[i * B / count, (i + 1) * B / count)`` (:mod:`impax.train.distributed` uses the same split).
    """
    if global_rows % count:
        raise ValueError(f"a global batch of {global_rows} rows cannot be split over {count} "
                         "processes: the batch size must be a multiple of the process count")
    per = global_rows // count
    return slice(index * per, (index + 1) * per)


class StoreLoader(BatchLoader):
    """Batches of whole arrays and point subsets from a :class:`ShapeStore`.

    ``arrays``: dataset names stacked whole (``"voxels"``, ``"sdf_grid"``, ``"depth"``, ...).
    ``samples``: point group (:data:`POINT_GROUPS`) → points per shape per step; every dataset of
    the group appears in the batch as [B, k, ...]. ``point_mode``: ``"random"`` (k distinct random
    rows, LDIF) or ``"chunk"`` (one random aligned block of k rows, IM-NET-pytorch). On a packed
    store (:mod:`impax.data.pack`), whose point sets are stored in a random order, ``"random"``
    reads ``k`` consecutive rows from a random start (``"window"``: one contiguous read, the same
    distribution of each subset).
    ``postprocess`` maps the raw batch (plus ``shape_index`` [B], positions in ``ids``) to the output.
    ``ids`` are the shapes asked for; ``usable`` the positions of those whose record is present and
    of the size ``index.json`` gives (the others are left out with a warning, see the module doc);
    an epoch covers the usable ones.
    ``cache_mb``: each shape's datasets are kept in memory after their first read while the cache
    stays under this many MiB (0: read the files every time; ``None``: :func:`default_cache_mb`, a
    quarter of the memory available; with worker processes each keeps ``1/workers`` of it).
    Batches are the same either way.
    ``workers``: see :class:`BatchLoader`. ``shard=(i, n)``: this is process ``i`` of ``n`` of a
    multi-process run; it reads only its own contiguous block of each global batch's rows (the
    rows :func:`process_rows` gives it) and sets ``process_local``. The
    sample rows of every shape are drawn as for the whole batch, so the ``n`` blocks together are
    exactly the global batch.
    """

    def __init__(self, store: ShapeStore | str | Path, ids: Sequence[str] | None = None, *, split: str | None = None,
                 batch_size: int = 32, arrays: Sequence[str] = (), samples: Mapping[str, int] | None = None,
                 point_mode: str = "random", seed: int = 0, shuffle: bool = True, drop_last: bool = True,
                 prefetch: int = 2, postprocess: Callable[[Batch], Batch] | None = None,
                 cache_mb: float | None = None, workers: int = 0, shard: tuple[int, int] | None = None) -> None:
        self.store = store if isinstance(store, ShapeStore) else ShapeStore(store)
        self.ids = list(ids) if ids is not None else self.store.ids(split)
        keep = set(usable_ids(self.store, self.ids))
        self.usable = np.array([k for k, sid in enumerate(self.ids) if sid in keep], dtype=np.int64)
        self.arrays = tuple(arrays)
        self.samples = dict(samples or {})
        unknown = set(self.samples) - set(POINT_GROUPS)
        if unknown:
            raise ValueError(f"unknown point groups {sorted(unknown)}; known: {sorted(POINT_GROUPS)}")
        if point_mode not in ("random", "chunk", "window"):
            raise ValueError(f"point_mode must be 'random', 'chunk' or 'window', got {point_mode!r}")
        self.point_mode = point_mode
        self.shuffled_groups = frozenset(self.store.layout().get("shuffled_groups", ()))
        self.postprocess = postprocess
        if cache_mb is None:
            cache_mb = default_cache_mb()
        if cache_mb < 0:
            raise ValueError(f"cache_mb must be >= 0, got {cache_mb!r}")
        self.cache_bytes = int(cache_mb * 2 ** 20)
        self._cache: dict[int, dict[str, np.ndarray]] = {}
        self._cached_bytes = 0
        self._cache_lock = threading.Lock()
        self._shapes = _index_field(self.store, "arrays")
        self._direct = _index_field(self.store, "direct")
        super().__init__(len(self.usable), batch_size, seed, shuffle, drop_last, prefetch, workers)
        self.shard = None if shard is None else (int(shard[0]), int(shard[1]))
        self.process_local = self.shard is not None
        if self.shard is not None:
            i, n = self.shard
            if not 0 <= i < n:
                raise ValueError(f"shard {i} of {n}: the process index must be in [0, {n})")
            if batch_size % n or (not drop_last and self.n_items % batch_size % n):
                raise ValueError(f"a batch of {batch_size} shapes cannot be split over {n} processes: use a "
                                 f"batch size that is a multiple of {n}" + ("" if drop_last else " (and drop_last)"))
            self.local_batch_size = batch_size // n

    def point_mode_of(self, group: str) -> str:
        """How the rows of ``group`` are drawn (``"window"`` for a group a packed store shuffled)."""
        return "window" if self.point_mode == "random" and group in self.shuffled_groups else self.point_mode

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.update(_cache={}, _cached_bytes=0, _cache_lock=None, postprocess=None,
                     cache_bytes=self.cache_bytes // max(1, self.workers))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cache_lock = threading.Lock()

    @contextmanager
    def _open(self, i: int) -> Iterator[Any]:
        """Shape ``i``'s record, open; a file h5py cannot open is a :class:`RecordError` naming it."""
        import h5py

        path = self.store.path(self.ids[i])
        try:
            f = h5py.File(path, "r")
        except (OSError, RuntimeError) as e:
            raise RecordError(path, _corrupt(e)) from None
        try:
            yield f
        finally:
            f.close()

    def _datasets(self, i: int) -> Mapping[str, Sequence[int]]:
        """Dataset name → shape of shape ``i``'s record (from ``index.json``, else the file)."""
        known = self._shapes.get(self.ids[i])
        if known is not None:
            return known
        with self._open(i) as f:
            return _read_or_name(self.store.path(self.ids[i]), lambda: {k: f[k].shape for k in f.keys()})

    def _plan(self, i: int, rng: np.random.Generator) -> dict[str, tuple[list[str], slice | np.ndarray]]:
        """Which rows of which datasets shape ``i`` contributes: group → (dataset names, rows)."""
        shapes = self._datasets(i)
        plan = {}
        for group, k in self.samples.items():
            names = [n for n in POINT_GROUPS[group] if n in shapes]
            if not names:
                raise KeyError(f"shape {self.ids[i]} has no {group} samples")
            plan[group] = (names, _rows(int(shapes[names[0]][0]), k, self.point_mode_of(group), rng))
        return plan

    def _shape_data(self, i: int, names: Sequence[str]) -> dict[str, np.ndarray] | None:
        """The datasets ``names`` of shape ``i``, from the cache or read whole into it; ``None``
        when the cache is off or full (then :meth:`load_raw` reads the rows from the file)."""
        with self._cache_lock:
            hit = self._cache.get(i)
        if hit is not None or self.cache_bytes == 0 or self._cached_bytes >= self.cache_bytes:
            return hit
        with self._open(i) as f:
            data = _read_or_name(self.store.path(self.ids[i]), lambda: {n: f[n][()] for n in names})
        size = sum(a.nbytes for a in data.values())
        with self._cache_lock:
            if self._cached_bytes + size <= self.cache_bytes:
                self._cache[i] = data
                self._cached_bytes += size
        return data

    def _gather(self, per: dict[str, list[np.ndarray]], src: Any, plan: Mapping[str, Any],
                take: Callable[[Any, Any], np.ndarray]) -> None:
        for name in self.arrays:
            per.setdefault(name, []).append(src[name][()])
        for names, rows in plan.values():
            for name in names:
                per.setdefault(name, []).append(take(src[name], rows))

    def _direct_ok(self, i: int, names: Sequence[str], plan: Mapping[str, Any]) -> bool:
        """Whether shape ``i``'s reads are all row ranges of uncompressed contiguous datasets
        (a packed store: ``index.json`` has their offsets), read with ``pread`` instead of h5py."""
        direct = self._direct.get(self.ids[i])
        return bool(direct) and all(n in direct for n in names) and all(
            isinstance(rows, slice) and rows.step in (None, 1) for _, rows in plan.values())

    def _read_direct(self, per: dict[str, list[np.ndarray]], i: int, plan: Mapping[str, Any]) -> None:
        sid = self.ids[i]
        path, direct, shapes = self.store.path(sid), self._direct[sid], self._shapes[sid]
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise RecordError(path, _corrupt(e)) from None
        try:
            def get(name: str, rows: slice | None) -> np.ndarray:
                offset, dtype = direct[name]
                dtype, shape = np.dtype(dtype), tuple(shapes[name])
                start, stop = (0, shape[0]) if rows is None else (rows.start or 0, rows.stop)
                row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
                want = (stop - start) * row
                buf = os.pread(fd, want, int(offset) + start * row)
                if len(buf) != want:
                    raise RecordError(path, f"corrupt record: {name} ends early (truncated?); rerun `impax pack`")
                return np.frombuffer(buf, dtype).reshape((stop - start, *shape[1:]))

            for name in self.arrays:
                per.setdefault(name, []).append(get(name, None))
            for names, rows in plan.values():
                for name in names:
                    per.setdefault(name, []).append(get(name, rows))
        except OSError as e:
            raise RecordError(path, _corrupt(e)) from None
        finally:
            os.close(fd)

    def _mine(self, n: int) -> range:
        """Positions of a batch of ``n`` rows this process reads (all without a shard)."""
        rows = slice(0, n) if self.shard is None else process_rows(n, *self.shard)
        return range(rows.start, rows.stop)

    def load_raw(self, items: np.ndarray, rng: np.random.Generator) -> Batch:
        """The batch of ``items`` before ``postprocess`` (this process's rows of it with a shard)."""
        items = self.usable[np.asarray(items, dtype=np.int64)]  # positions in ``ids``
        plans = [self._plan(int(i), rng) for i in items]  # drawn for the whole batch, in order
        per: dict[str, list[np.ndarray]] = {}
        mine = self._mine(len(items))
        for pos in mine:
            i, plan = int(items[pos]), plans[pos]
            names = list(self.arrays) + [n for ns, _ in plan.values() for n in ns]
            data = self._shape_data(i, names)
            if data is not None:
                self._gather(per, data, plan, lambda a, rows: a[rows])
                continue
            if self._direct_ok(i, names, plan):
                self._read_direct(per, i, plan)
                continue
            with self._open(i) as f:
                _read_or_name(self.store.path(self.ids[i]), lambda: self._gather(per, f, plan, read_rows))
        out = {k: np.stack(v) for k, v in per.items()}
        out["shape_index"] = items[mine.start:mine.stop].astype(np.int64)
        return out

    def load(self, items: np.ndarray, rng: np.random.Generator) -> Batch:
        return self._finish(self.load_raw(items, rng))

    def _finish(self, raw: Batch) -> Batch:
        return self.postprocess(raw) if self.postprocess else raw


def default_cache_mb(fraction: float = 0.25) -> float:
    """The loader cache's default size: ``fraction`` of the memory available now (``MemAvailable``
    of /proc/meminfo, else the physical memory), in MiB."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return fraction * int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return fraction * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 20
    except (OSError, ValueError, AttributeError):
        return 1024.0


def _index_field(store: ShapeStore, key: str) -> dict[str, dict[str, Any]]:
    """Shape id → the ``key`` mapping of its ``index.json`` entry (``"arrays"``: dataset → shape;
    ``"direct"``: dataset → [offset, dtype] of a packed store's uncompressed contiguous datasets,
    readable with one ``pread``); empty when the index cannot be read."""
    try:
        return {e["id"]: dict(e[key]) for e in store.entries() if isinstance(e.get(key), dict)}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _corrupt(e: BaseException) -> str:
    return (f"unreadable record ({' '.join(str(e).split())[:160]}); rerun `impax prepare` on its folder "
            "to prepare it again")


def _read_or_name(path: Path, read: Callable[[], Any]) -> Any:
    """``read()``, with an h5py failure turned into a :class:`RecordError` naming ``path``."""
    try:
        return read()
    except KeyError:
        raise
    except (OSError, RuntimeError) as e:
        raise RecordError(path, _corrupt(e)) from None


def usable_ids(store: ShapeStore, ids: Sequence[str]) -> list[str]:
    """``ids`` without the records that are missing or whose size differs from ``index.json``
    (truncated), with one warning line on stderr naming them."""
    try:
        sizes = {e["id"]: e.get("bytes") for e in store.entries()}
    except (OSError, ValueError):
        sizes = {}
    keep, bad = [], []
    for sid in ids:
        p = store.path(sid)
        try:
            size = p.stat().st_size
        except OSError:
            bad.append(f"{p} (missing)")
            continue
        want = sizes.get(sid)
        if want is not None and int(want) != size:
            bad.append(f"{p} ({size} bytes, the index says {want})")
            continue
        keep.append(sid)
    if bad:
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        print(f"warning: {len(bad)} damaged record(s) left out of training: {shown}; rerun `impax prepare` "
              f"on {store.root} to prepare them again", file=sys.stderr)
    return keep


def _imnet_post(level: int, near_maps: np.ndarray | None = None) -> Callable[[Batch], Batch]:
    def post(b: Batch) -> Batch:
        points, values = [], []
        if f"points_{level}" in b:
            points.append((b[f"points_{level}"].astype(np.float32) + 0.5) / 256.0 - 0.5)
            values.append(b[f"values_{level}"].astype(np.float32))
        if near_maps is not None:  # GAPS frame -> IM-NET box, per shape: q = A p + t
            m = near_maps[b["shape_index"]]
            q = np.einsum("bij,bnj->bni", m[:, :3, :3], b["near_points"].astype(np.float64)) + m[:, None, :3, 3]
            points.append(q.astype(np.float32))
            values.append(b["near_occupancy"].astype(np.float32)[..., None])
        out = {"points": np.concatenate(points, axis=1), "values": np.concatenate(values, axis=1),
               "shape_index": b["shape_index"]}
        if "voxels" in b:  # uint8: 4x fewer bytes to the device, where the encoder casts them
            v = b["voxels"]
            out["voxels"] = v if v.ndim == 5 else v[..., None]
        if "views" in b:
            out["views"] = b["views"]
        return out

    return post


def imnet_loader(store: ShapeStore | str | Path, split: str | None = "train", level: int = 64, batch_size: int = 32,
                 points: int = 4096, seed: int = 0, point_mode: str = "chunk", views: bool = False,
                 near_points: int = 0, **kw) -> StoreLoader:
    """IM-NET AE (or SVR, ``views=True``) batches from a store; see the module doc.

    ``near_points`` > 0: that many of each shape's ``points`` are drawn from the record's
    near-surface samples instead of the level's (random rows, exact inside labels from
    ``near_occupancy``, mapped into IM-NET's box by :meth:`ShapeStore.frame_map`); they follow the level's
    points in ``points`` / ``values``."""
    store = store if isinstance(store, ShapeStore) else ShapeStore(store)
    near = int(near_points)
    if not 0 <= near <= points:
        raise ValueError(f"near_points must be in [0, points={points}], got {near_points!r}")
    samples = {f"imnet{level}": points - near} if near < points else {}
    if near:
        samples["near"] = near
    loader = StoreLoader(store, split=split, batch_size=batch_size, arrays=("voxels",) + (("views",) if views else ()),
                         samples=samples, point_mode=point_mode, seed=seed, **kw)
    maps = None
    if near:
        maps = np.full((len(loader.ids), 4, 4), np.nan)  # rows of records left out stay unused
        for i in loader.usable:
            maps[i] = store.frame_map(loader.ids[int(i)], "gaps", "imnet").as_matrix()
    loader.postprocess = _imnet_post(level, maps)
    return loader


def ldif_loader(store: ShapeStore | str | Path, split: str | None = "train", batch_size: int = 24,
                n_uniform: int = 1024, n_near: int = 1024, inputs: str = "depth", n_surface: int = 10_000,
                seed: int = 0, **kw) -> StoreLoader:
    """LDIF batches: uniform + near-surface samples (random subsets), ``sdf_grid``/``world2grid``, and
    ``depth`` images (``inputs="depth"``) or ``n_surface`` surface points with normals (``"surface"``)."""
    if inputs not in ("depth", "surface"):
        raise ValueError(f"inputs must be 'depth' or 'surface', got {inputs!r}")
    arrays = ("sdf_grid", "world2grid") + (("depth",) if inputs == "depth" else ())
    samples = {"uniform": n_uniform, "near": n_near}
    if inputs == "surface":
        samples["surface"] = n_surface
    return StoreLoader(store, split=split, batch_size=batch_size, arrays=arrays, samples=samples,
                       point_mode="random", seed=seed, **kw)


class IMNetHdf5Loader(BatchLoader):
    """IM-NET batches (as :func:`imnet_loader`) from an IM-NET HDF5 file, e.g. the official
    ``all_vox256_img_train.hdf5``; loaded into memory unless ``in_memory=False``."""

    def __init__(self, path: str | Path, level: int = 64, batch_size: int = 32, points: int = 4096, seed: int = 0,
                 point_mode: str = "chunk", pixels: bool = False, in_memory: bool = True, shuffle: bool = True,
                 drop_last: bool = True, prefetch: int = 2) -> None:
        from impax.data.imnet_hdf5 import IMNetHdf5

        try:
            self.file = IMNetHdf5(path)
            self.level, self.points, self.point_mode, self.pixels = level, int(points), point_mode, pixels
            self.names = self.file.names
            keys = ["voxels", f"points_{level}", f"values_{level}"] + (["pixels"] if pixels else [])
            self._data = {k: self.file.dataset(k)[()] if in_memory else self.file.dataset(k) for k in keys}
            self._n = self.file.n_points(level)
        except (OSError, RuntimeError) as e:
            raise ValueError(f"{path}: cannot read this IM-NET HDF5 file ({' '.join(str(e).split())[:160]}); "
                             "it may be truncated or corrupt") from None
        if self.points > self._n:
            raise ValueError(f"{self.points} points per shape requested, the file has {self._n} at level {level}")
        super().__init__(len(self.file), batch_size, seed, shuffle, drop_last, prefetch)

    def load(self, items: np.ndarray, rng: np.random.Generator) -> Batch:
        idx = np.asarray(items, dtype=np.int64)
        d = self._data
        pts, vals, vox, pix = [], [], [], []
        for i in idx:
            rows = _rows(self._n, self.points, self.point_mode, rng)
            pts.append(read_rows_any(d[f"points_{self.level}"], int(i), rows))
            vals.append(read_rows_any(d[f"values_{self.level}"], int(i), rows))
            vox.append(d["voxels"][int(i)])
            if self.pixels:
                pix.append(d["pixels"][int(i)])
        out = {"voxels": np.stack(vox),
               "points": (np.stack(pts).astype(np.float32) + 0.5) / 256.0 - 0.5,
               "values": np.stack(vals).astype(np.float32), "shape_index": idx}
        if self.pixels:
            out["pixels"] = np.stack(pix)
        return out


def read_rows_any(a, i: int, rows: slice | np.ndarray) -> np.ndarray:
    """Rows of shape ``i`` of a [N, n, ...] array (numpy in memory, or an h5py dataset)."""
    if isinstance(a, np.ndarray):
        return a[i, rows]
    if isinstance(rows, slice):
        return a[i, rows]
    uniq, inv = np.unique(rows, return_inverse=True)
    return a[i, uniq][inv.reshape(-1)]

"""Training batches (shapes × points) from a :class:`~impax.data.store.ShapeStore` or an IM-NET HDF5 file.

The contract (docs/CONTRACTS.md, "Loaders"): ``len(loader)`` is the number of batches per epoch and
``loader.iterate(epoch, start=0)`` yields dicts of numpy arrays, deterministic in (seed, epoch); ``start``
skips the first batches exactly (resume), because every batch draws from its own generator seeded by
(seed, epoch, batch number) and the shape order of an epoch from (seed, epoch).

Batches are produced by a background thread into a bounded queue (``prefetch`` batches ahead). Only
the shapes of a batch are opened and only the sampled rows of their point arrays are read.

* :class:`StoreLoader` — generic: ``arrays`` (whole per-shape arrays, stacked) and ``samples``
  (point groups → points per shape per step). Point groups (:data:`POINT_GROUPS`) keep the arrays of
  one sample set aligned (points with their sdf/occupancy, IM-NET points with their values).
* :func:`imnet_loader` — IM-NET AE batches: ``voxels`` f32 [B,64,64,64,1], ``points`` f32 [B,n,3] in
  IM-NET's box (``(p + 0.5) / 256 - 0.5``), ``values`` f32 [B,n,1]. IM-NET-pytorch's batching is the
  default: 32 shapes × 4096 points, at level 64 one random contiguous quarter of the 16384 points
  (``point_mode="chunk"``, ``modelAE.py::train``).
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

import queue
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

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
    raise ValueError(f"point_mode must be 'random' or 'chunk', got {mode!r}")


class BatchLoader:
    """Shared core: epoch order, per-batch generators, background prefetch. Subclasses define :meth:`load`."""

    def __init__(self, n_items: int, batch_size: int, seed: int = 0, shuffle: bool = True,
                 drop_last: bool = True, prefetch: int = 2) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if n_items < (batch_size if drop_last else 1):
            raise ValueError(f"{n_items} shapes cannot fill one batch of {batch_size}")
        self.n_items, self.batch_size, self.seed = int(n_items), int(batch_size), int(seed)
        self.shuffle, self.drop_last, self.prefetch = shuffle, drop_last, max(1, int(prefetch))

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
        """Batch ``b`` of ``epoch`` (synchronously)."""
        if not 0 <= b < len(self):
            raise IndexError(f"batch {b} of {len(self)}")
        items = self.batch_items(epoch, b)
        return self.load(items, np.random.default_rng([self.seed, int(epoch), 1, b]))

    def load(self, items: np.ndarray, rng: np.random.Generator) -> Batch:  # pragma: no cover - abstract
        raise NotImplementedError

    def iterate(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Batches ``start, start+1, ...`` of ``epoch``, prepared ``prefetch`` ahead by a background thread."""
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


class StoreLoader(BatchLoader):
    """Batches of whole arrays and point subsets from a :class:`ShapeStore`.

    ``arrays``: dataset names stacked whole (``"voxels"``, ``"sdf_grid"``, ``"depth"``, ...).
    ``samples``: point group (:data:`POINT_GROUPS`) → points per shape per step; every dataset of
    the group appears in the batch as [B, k, ...]. ``point_mode``: ``"random"`` (k distinct random
    rows, LDIF) or ``"chunk"`` (one random aligned block of k rows, IM-NET-pytorch).
    ``postprocess`` maps the raw batch (plus ``shape_index`` [B], positions in ``ids``) to the output.
    ``ids`` are the shapes asked for; ``usable`` the positions of those whose record is present and
    of the size ``index.json`` gives (the others are left out with a warning, see the module doc);
    an epoch covers the usable ones.
    ``cache_mb``: each shape's datasets are kept in memory after their first read while the cache
    stays under this many MiB (0: read the files every time). Batches are the same either way;
    with the cache an epoch after the first reads no file (measured: an IM-NET level-64 batch of
    8 shapes × 2048 points 67 ms from the gzip'd files, most of it decompression).
    """

    def __init__(self, store: ShapeStore | str | Path, ids: Sequence[str] | None = None, *, split: str | None = None,
                 batch_size: int = 32, arrays: Sequence[str] = (), samples: Mapping[str, int] | None = None,
                 point_mode: str = "random", seed: int = 0, shuffle: bool = True, drop_last: bool = True,
                 prefetch: int = 2, postprocess: Callable[[Batch], Batch] | None = None,
                 cache_mb: float = 1024.0) -> None:
        self.store = store if isinstance(store, ShapeStore) else ShapeStore(store)
        self.ids = list(ids) if ids is not None else self.store.ids(split)
        keep = set(usable_ids(self.store, self.ids))
        self.usable = np.array([k for k, sid in enumerate(self.ids) if sid in keep], dtype=np.int64)
        self.arrays = tuple(arrays)
        self.samples = dict(samples or {})
        unknown = set(self.samples) - set(POINT_GROUPS)
        if unknown:
            raise ValueError(f"unknown point groups {sorted(unknown)}; known: {sorted(POINT_GROUPS)}")
        if point_mode not in ("random", "chunk"):
            raise ValueError(f"point_mode must be 'random' or 'chunk', got {point_mode!r}")
        self.point_mode = point_mode
        self.postprocess = postprocess
        if cache_mb < 0:
            raise ValueError(f"cache_mb must be >= 0, got {cache_mb!r}")
        self.cache_bytes = int(cache_mb * 2 ** 20)
        self._cache: dict[int, dict[str, np.ndarray]] = {}
        self._cached_bytes = 0
        self._cache_lock = threading.Lock()
        super().__init__(len(self.usable), batch_size, seed, shuffle, drop_last, prefetch)

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

    def _group_names(self, src: Any, i: int, group: str) -> list[str]:
        """The datasets of point group ``group`` that shape ``i``'s file (or cached data) has."""
        names = [n for n in POINT_GROUPS[group] if n in src]
        if not names:
            raise KeyError(f"shape {self.ids[i]} has no {group} samples")
        return names

    def _shape_data(self, i: int) -> dict[str, np.ndarray] | None:
        """All datasets this loader reads of shape ``i``, from the cache or read whole into it;
        ``None`` when the cache is off or full (then :meth:`load` reads the rows from the file)."""
        with self._cache_lock:
            hit = self._cache.get(i)
        if hit is not None or self.cache_bytes == 0 or self._cached_bytes >= self.cache_bytes:
            return hit
        with self._open(i) as f:
            names = list(self.arrays) + [n for g in self.samples for n in self._group_names(f, i, g)]
            data = _read_or_name(self.store.path(self.ids[i]), lambda: {n: f[n][()] for n in names})
        size = sum(a.nbytes for a in data.values())
        with self._cache_lock:
            if self._cached_bytes + size <= self.cache_bytes:
                self._cache[i] = data
                self._cached_bytes += size
        return data

    def _gather(self, per: dict[str, list[np.ndarray]], src: Any, i: int, rng: np.random.Generator,
                take: Callable[[Any, Any], np.ndarray]) -> None:
        """Append shape ``i``'s whole arrays and its point rows (``take(dataset, rows)``) from ``src``
        (the open file or the cached dict) to ``per``."""
        for name in self.arrays:
            per.setdefault(name, []).append(src[name][()])
        for group, k in self.samples.items():
            names = self._group_names(src, i, group)
            rows = _rows(src[names[0]].shape[0], k, self.point_mode, rng)
            for name in names:
                per.setdefault(name, []).append(take(src[name], rows))

    def load(self, items: np.ndarray, rng: np.random.Generator) -> Batch:
        per: dict[str, list[np.ndarray]] = {}
        items = self.usable[np.asarray(items, dtype=np.int64)]  # positions in ``ids``
        for i in map(int, items):
            data = self._shape_data(i)
            if data is not None:
                self._gather(per, data, i, rng, lambda a, rows: a[rows])
                continue
            with self._open(i) as f:
                _read_or_name(self.store.path(self.ids[i]), lambda: self._gather(per, f, i, rng, read_rows))
        out = {k: np.stack(v) for k, v in per.items()}
        out["shape_index"] = items.astype(np.int64)
        return self.postprocess(out) if self.postprocess else out


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


def _imnet_post(level: int) -> Callable[[Batch], Batch]:
    def post(b: Batch) -> Batch:
        out = {"points": (b[f"points_{level}"].astype(np.float32) + 0.5) / 256.0 - 0.5,
               "values": b[f"values_{level}"].astype(np.float32),
               "shape_index": b["shape_index"]}
        if "voxels" in b:
            v = b["voxels"].astype(np.float32)
            out["voxels"] = v if v.ndim == 5 else v[..., None]
        if "views" in b:
            out["views"] = b["views"]
        return out

    return post


def imnet_loader(store: ShapeStore | str | Path, split: str | None = "train", level: int = 64, batch_size: int = 32,
                 points: int = 4096, seed: int = 0, point_mode: str = "chunk", views: bool = False,
                 **kw) -> StoreLoader:
    """IM-NET AE (or SVR, ``views=True``) batches from a store; see the module doc."""
    return StoreLoader(store, split=split, batch_size=batch_size, arrays=("voxels",) + (("views",) if views else ()),
                       samples={f"imnet{level}": points}, point_mode=point_mode, seed=seed,
                       postprocess=_imnet_post(level), **kw)


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
        out = {"voxels": np.stack(vox).astype(np.float32),
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

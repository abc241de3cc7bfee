"""The per-shape store: one HDF5 file per shape plus an ``index.json``.

Layout of a store root::

    <root>/shapes/<shape_id>.h5     one record per shape (written atomically: *.tmp, then os.replace)
    <root>/index.json               the list of shapes (id, class, split, array shapes, size in bytes,
                                    sha256; for uncompressed contiguous datasets their file offset
                                    and dtype, ``direct``) — built by :meth:`ShapeStore.build_index`
                                    (the prepare job's merge step)
    <root>/pack.json                only in a store packed for training (:mod:`impax.data.pack`)

Datasets of a record (all optional; :data:`SCHEMA` documents each; frames: see :mod:`impax.conventions`):

* LDIF side, GAPS frame (``process_mesh_local.sh`` of google/ldif): ``uniform_points/sdf/occupancy``
  (100k uniform in [-0.7, 0.7]^3), ``near_points/sdf/occupancy`` (100k near-surface),
  ``surface_points/normals`` (100k), ``sdf_grid`` [32,32,32] + ``world2grid`` [4,4], ``depth`` [20,224,224].
* IM-NET side, IM-NET frame: ``voxels`` [64,64,64] (uint8), ``points_R``/``values_R`` per level
  (uint8, 256-grid units, exactly the official HDF5 rows), ``views`` [24,137,137] uint8 (SVR input),
  ``occ_points``/``occ_values`` (uniform occupancy samples in IM-NET's box, OccNet-style, for IoU).

Attributes (root of the file, stored in sorted order, JSON strings for structured values):
``shape_id``, ``model_id``, ``class``, ``split``, ``source`` (path relative to the source folder),
``imnet_transform`` and ``gaps_transform`` (JSON of :class:`impax.conventions.Transform`,
original → frame), ``config`` (JSON of the preparation config).

Records prepared from OccNet's data (``impax prepare --from-occnet``,
:func:`impax.data.occnet.prepare_occnet_shape`) hold the LDIF side only, in the GAPS frame, with
``*_occupancy`` but no ``*_sdf``, an approximate ``sdf_grid``, and no depth images or IM-NET
datasets; their attributes add ``source_format = "occnet"``, ``source_frame = "occnet"`` and
``occnet_transform`` (original → OccNet's frame, from ``loc``/``scale``), and their
``gaps_transform`` is estimated from the surface samples. ``prepare.json`` records
``"source_format": "occnet"`` (:meth:`ShapeStore.source_format`).

Files are written deterministically — sorted dataset and attribute order, no timestamps
(``track_times=False``), fixed chunking (rows per chunk from the row size only) and fixed compression
(gzip 4 + shuffle) — so the same data always gives the same bytes and checksums.
Reads are lazy: :meth:`ShapeStore.read` reads one array or a slice/row subset of it, never the record.

Integrity: a record is encoded in memory (HDF5's core driver) and written with
:func:`impax.data.safety.atomic_write_bytes` (free space checked first, the owner's temp file, then
``os.replace``), so a full disk or a file-size limit is one :class:`~impax.data.safety.WriteError`
naming the path and never a half-written record; HDF5 itself never writes to the file system.
:meth:`ShapeStore.verify` checks a record against the size and sha256 of ``index.json`` (or, for a
record not in the index yet, opens it and reads every dataset); a record that fails is a
:class:`RecordError` naming its file. :meth:`ShapeStore.build_index` leaves such records out (and
reports them) instead of stopping.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from impax.conventions import Transform
from impax.data.safety import atomic_write_bytes, atomic_write_text, check_free_space, remove_stale_tmp, tmp_path

INDEX_FORMAT = "impax-store/1"
PACK_JSON = "pack.json"

#: Every dataset a record can hold: dtype and meaning.
SCHEMA: dict[str, str] = {
    "uniform_points": "float32 [n,3] uniform in the GAPS box [-0.7,0.7]^3 (LDIF uniform_points.sdf)",
    "uniform_sdf": "float32 [n] signed distance, negative inside",
    "uniform_occupancy": "uint8 [n] 1 inside (winding number > 0.5)",
    "near_points": "float32 [n,3] surface samples + N(0, sigma^2) offsets, GAPS frame (nss_points.sdf)",
    "near_sdf": "float32 [n]",
    "near_occupancy": "uint8 [n]",
    "surface_points": "float32 [n,3] area-weighted surface samples, GAPS frame",
    "surface_normals": "float32 [n,3] unit face normals",
    "sdf_grid": "float32 [32,32,32] coarse SDF on the GAPS box (coarse_grid.grd)",
    "world2grid": "float32 [4,4] GAPS world -> grid index of sdf_grid",
    "depth": "float32|float16 [20,224,224] dodecahedron depth images of the GAPS-frame mesh, 0 = miss",
    "voxels": "uint8 [64,64,64] IM-NET input voxels (max-pooled), index order (x, y, z)",
    "points_16": "uint8 [4096,3] IM-NET samples on the 256 grid", "values_16": "uint8 [4096,1]",
    "points_32": "uint8 [4096,3]", "values_32": "uint8 [4096,1]",
    "points_64": "uint8 [16384,3]", "values_64": "uint8 [16384,1]",
    "views": "uint8 [24,137,137] grayscale views on white (IM-NET SVR 'pixels')",
    "occ_points": "float32 [n,3] uniform in IM-NET's box [-0.5,0.5]^3", "occ_values": "uint8 [n]",
}

_CHUNK_BYTES = 1 << 18
#: Record compressions: gzip 4 + shuffle (prepared stores), LZF + shuffle (fast to decode), or none
#: (``None``: contiguous datasets, a row range is one read; packed stores, :mod:`impax.data.pack`).
COMPRESSIONS: dict[str | None, dict[str, Any]] = {
    "gzip": dict(compression="gzip", compression_opts=4, shuffle=True),
    "lzf": dict(compression="lzf", shuffle=True),
    None: {},
}


def _chunks(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...] | None:
    if len(shape) == 0 or 0 in shape:
        return None
    row = int(np.prod(shape[1:], dtype=np.int64)) * itemsize
    rows = max(1, min(shape[0], _CHUNK_BYTES // max(row, 1)))
    return (rows, *shape[1:])


_IMAGE_COUNTER = iter(range(1 << 62))


def encode_record(arrays: dict[str, np.ndarray], attrs: dict[str, Any], compression: str | None = "gzip") -> bytes:
    """The bytes of one record file (deterministic: see the module doc), built in memory;
    ``compression``: a key of :data:`COMPRESSIONS`."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {sorted(map(str, COMPRESSIONS))}, got {compression!r}")
    name = f"impax-record-{os.getpid()}-{next(_IMAGE_COUNTER)}.h5"
    f = h5py.File(name, "w", driver="core", backing_store=False)
    try:
        for key in sorted(arrays):
            a = np.asarray(arrays[key])
            if a.dtype == bool:
                a = a.astype(np.uint8)
            if a.ndim == 0 or compression is None:
                f.create_dataset(key, data=a, track_times=False)
            else:
                f.create_dataset(key, data=a, chunks=_chunks(a.shape, a.dtype.itemsize),
                                 track_times=False, **COMPRESSIONS[compression])
        for key in sorted(attrs):
            f.attrs[key] = _attr_value(attrs[key])
        f.flush()
        return bytes(f.id.get_file_image())
    finally:
        f.close()


def write_record(path: str | Path, arrays: dict[str, np.ndarray], attrs: dict[str, Any],
                 compression: str | None = "gzip") -> Path:
    """Write one shape record atomically and deterministically (the owner's temp file, then
    ``os.replace``); a failed write raises :class:`~impax.data.safety.WriteError` and leaves
    ``path`` as it was."""
    return atomic_write_bytes(path, encode_record(arrays, attrs, compression))


def _attr_value(v: Any) -> Any:
    if isinstance(v, Transform):
        return v.to_json()
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True)
    if isinstance(v, Path):
        return v.as_posix()
    return v


def _decode_attr(v: Any) -> Any:
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    return v


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class RecordError(ValueError):
    """A record file that is missing, truncated or corrupt; ``str()`` is one line naming it."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path, self.reason = str(path), " ".join(str(reason).split())
        super().__init__(f"{self.path}: {self.reason}")

    def __reduce__(self) -> tuple[Any, ...]:  # survives a loader worker process's pickling
        return (type(self), (self.path, self.reason))


def check_record(path: str | Path, sha256: str | None = None, size: int | None = None,
                 read_all: bool = False) -> str:
    """Check one record file; returns its sha256. ``size``/``sha256``: what the index says;
    ``read_all``: open it and read every dataset (for a record the index does not know yet).
    Raises :class:`RecordError`."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise RecordError(path, "record missing") from None
    if size is not None and st.st_size != int(size):
        raise RecordError(path, f"corrupt record: {st.st_size} bytes, the index says {int(size)} (truncated?)")
    digest = file_sha256(path)
    if sha256 is not None and digest != sha256:
        raise RecordError(path, "corrupt record: its sha256 differs from the index")
    if read_all:
        try:
            with h5py.File(path, "r") as f:
                for key in f.keys():
                    f[key][()]
                dict(f.attrs)
        except Exception as e:  # h5py raises OSError/KeyError/RuntimeError for broken files
            raise RecordError(path, f"corrupt record ({' '.join(str(e).split())[:160]})") from None
    return digest


class ShapeStore:
    """A folder of per-shape HDF5 records (see the module docstring for the layout)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.shapes_dir = self.root / "shapes"
        self._index: dict[str, Any] | None = None

    # ------------------------------------------------------------------ writing
    def path(self, shape_id: str) -> Path:
        return self.shapes_dir / f"{shape_id}.h5"

    def has(self, shape_id: str) -> bool:
        return self.path(shape_id).is_file()

    def write(self, shape_id: str, arrays: dict[str, np.ndarray], attrs: dict[str, Any],
              compression: str | None = "gzip") -> Path:
        """Write (or replace) one record atomically; ``attrs`` gets ``shape_id`` added."""
        return write_record(self.path(shape_id), arrays, {**attrs, "shape_id": shape_id}, compression)

    def remove_stale_tmp(self, exclusive: bool = False) -> int:
        """Delete ``*.tmp`` leftovers of interrupted writes whose owner is gone (all of them with
        ``exclusive``: the caller holds the store's exclusive lock); returns how many."""
        n = remove_stale_tmp(self.shapes_dir, exclusive)
        return n + remove_stale_tmp(self.root, exclusive)

    def verify(self, shape_id: str, read_all: bool | None = None) -> str:
        """Check record ``shape_id`` against ``index.json`` (size and sha256) — or, when the index
        does not list it (or ``read_all``), by reading every dataset. Returns its sha256; raises
        :class:`RecordError` naming the file."""
        entry = self._entry_of(shape_id)
        full = entry is None if read_all is None else read_all
        return check_record(self.path(shape_id), entry.get("sha256") if entry else None,
                            entry.get("bytes") if entry else None, read_all=full)

    def _entry_of(self, shape_id: str) -> dict[str, Any] | None:
        try:
            entries = self.index(build=False)["shapes"]
        except (ValueError, OSError):
            return None
        for e in entries:
            if e.get("id") == shape_id:
                return e
        return None

    # ------------------------------------------------------------------ index
    def build_index(self, known: Mapping[str, str] | None = None,
                    problems: list[dict[str, str]] | None = None,
                    exclude: Collection[str] = ()) -> dict[str, Any]:
        """Scan the records, write ``index.json`` (sorted by id, deterministic) and return it.

        ``known``: ``{id: sha256}`` of records already checked (not hashed again). A record that
        cannot be read is left out of the index with a warning on stderr, and appended to
        ``problems`` as ``{"id", "path", "reason"}``; ``exclude``: ids left out without a word
        (records found bad by the caller)."""
        entries = []
        for p in sorted(self.shapes_dir.glob("*.h5")) if self.shapes_dir.is_dir() else []:
            if p.stem in exclude:
                continue
            try:
                with h5py.File(p, "r") as f:
                    attrs = {k: _decode_attr(v) for k, v in f.attrs.items()}
                    arrays = {k: list(f[k].shape) for k in sorted(f.keys())}
                    direct = _direct_reads(f)
                digest = (known or {}).get(p.stem) or file_sha256(p)
                size = p.stat().st_size
            except Exception as e:  # a truncated or corrupt file: h5py raises OSError and others
                err = RecordError(p, f"corrupt record, left out of the index ({' '.join(str(e).split())[:160]})")
                print(f"warning: {err}", file=sys.stderr)
                if problems is not None:
                    problems.append({"id": p.stem, "path": str(p.relative_to(self.root)), "reason": err.reason})
                continue
            entries.append({
                "id": p.stem,
                "class": attrs.get("class", ""),
                "split": attrs.get("split", ""),
                "source": attrs.get("source", ""),
                "arrays": arrays,
                "bytes": int(size),
                "sha256": digest,
                **({"direct": direct} if direct else {}),
            })
        splits: dict[str, int] = {}
        for e in entries:
            splits[e["split"]] = splits.get(e["split"], 0) + 1
        index = {"format": INDEX_FORMAT, "count": len(entries), "splits": dict(sorted(splits.items())),
                 "shapes": entries}
        atomic_write_text(self.root / "index.json", json.dumps(index, indent=1, sort_keys=True) + "\n")
        self._index = index
        return index

    def index(self, build: bool = True) -> dict[str, Any]:
        """The parsed ``index.json`` (built on the fly, without writing, when it does not exist;
        ``build=False``: ``FileNotFoundError`` then). A truncated or corrupt file is a ``ValueError``
        naming it."""
        if self._index is None:
            p = self.root / "index.json"
            if p.is_file():
                try:
                    index = json.loads(p.read_text())
                    if not isinstance(index, dict) or not isinstance(index.get("shapes"), list):
                        raise ValueError("no list of shapes")
                except (ValueError, UnicodeDecodeError) as e:
                    raise ValueError(f"{p}: corrupt index ({' '.join(str(e).split())[:120]}); rebuild it with "
                                     f"`impax prepare --merge {self.root}`") from None
                self._index = index
            elif build:
                return self.build_index()
            else:
                raise FileNotFoundError(f"{p} does not exist")
        return self._index

    def entries(self, split: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.index()["shapes"] if split is None or e["split"] == split]

    def ids(self, split: str | None = None) -> list[str]:
        """Shape ids (sorted), optionally of one split."""
        return [e["id"] for e in self.entries(split)]

    def __len__(self) -> int:
        return len(self.index()["shapes"])

    def source_format(self) -> str:
        """``"occnet"`` for a store prepared from OccNet's ``points.npz``/``pointcloud.npz``
        (``impax prepare --from-occnet``; ``prepare.json`` says so), else ``"mesh"``."""
        try:
            return str(json.loads((self.root / "prepare.json").read_text()).get("source_format", "mesh"))
        except (OSError, ValueError, AttributeError):
            return "mesh"

    def require(self, names: Sequence[str], split: str | None, needed_by: str, hint: str = "") -> None:
        """Raise a one-line ``ValueError`` when some shape of ``split`` (all when ``None``) lacks one
        of the datasets ``names`` (from ``index.json``): it names the dataset, how many shapes lack
        it, ``needed_by`` and ``hint`` — and, for a store prepared from OccNet data, what such a
        store cannot hold."""
        entries = self.entries(split)
        for name in names:
            lacking = [e["id"] for e in entries if name not in e.get("arrays", {})]
            if lacking:
                where = f"split {split!r}" if split is not None else "the store"
                why = (" (it was prepared from OccNet data, which has no meshes: no depth images, signed "
                       "distances, IM-NET voxels, points or views)") if self.source_format() == "occnet" else ""
                raise ValueError(f"{self.root}: {needed_by} needs {name!r}, which {len(lacking)} of the "
                                 f"{len(entries)} shapes of {where} lack (e.g. {lacking[0]}){why}"
                                 + (f"; {hint}" if hint else ""))

    def layout(self) -> dict[str, Any]:
        """How the records are laid out for training: ``pack.json`` of a store written by
        :func:`impax.data.pack.pack_store` (``shuffled_groups``, ``depth_size``, ...), else ``{}``."""
        p = self.root / PACK_JSON
        try:
            info = json.loads(p.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise ValueError(f"{p}: unreadable ({' '.join(str(e).split())[:120]}); pack the store again") from None
        if not isinstance(info, dict):
            raise ValueError(f"{p}: not a JSON object; pack the store again")
        return info

    def prepare_config(self) -> dict[str, Any]:
        """The :class:`~impax.data.pipeline.PrepareConfig` fields the store was prepared with
        (``prepare.json``), or ``{}`` for a store without that file."""
        p = self.root / "prepare.json"
        try:
            return dict(json.loads(p.read_text()).get("config", {}))
        except (OSError, ValueError, AttributeError):
            return {}

    # ------------------------------------------------------------------ reading
    @contextmanager
    def open(self, shape_id: str) -> Iterator[h5py.File]:
        """The record as an open read-only h5py file (lazy datasets)."""
        f = h5py.File(self.path(shape_id), "r")
        try:
            yield f
        finally:
            f.close()

    def read(self, shape_id: str, name: str, rows: slice | Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """One array of one record, or only ``rows`` of it (a slice or indices along axis 0)."""
        with self.open(shape_id) as f:
            return read_rows(f[name], rows)

    def arrays(self, shape_id: str) -> list[str]:
        with self.open(shape_id) as f:
            return sorted(f.keys())

    def attrs(self, shape_id: str) -> dict[str, Any]:
        """Record attributes, JSON values decoded; transforms as :class:`Transform`."""
        with self.open(shape_id) as f:
            out = {k: _decode_attr(v) for k, v in f.attrs.items()}
        for key in ("imnet_transform", "gaps_transform", "occnet_transform"):
            if isinstance(out.get(key), dict):
                out[key] = Transform.from_dict(out[key])
        return out

    def frame_map(self, shape_id: str, source: str = "gaps", target: str = "imnet") -> Transform:
        """The map from record ``shape_id``'s ``source`` frame to its ``target`` frame: its
        ``<source>_transform`` inverted, then its ``<target>_transform`` (both start from the original
        mesh). A record without both is a ``ValueError`` naming its file."""
        attrs = self.attrs(shape_id)
        a, b = attrs.get(f"{source}_transform"), attrs.get(f"{target}_transform")
        if not isinstance(a, Transform) or not isinstance(b, Transform):
            raise ValueError(f"{self.path(shape_id)}: the record lacks {source}_transform/{target}_transform, "
                             f"needed to map its {source}-frame samples into the {target} frame; rerun `impax prepare`")
        return a.inverse().then(b)


def _direct_reads(f: h5py.File) -> dict[str, list[Any]]:
    """``{name: [file offset, dtype]}`` of the uncompressed, contiguous datasets (ndim >= 1) of an
    open record — those a loader may read with one ``pread`` (packed stores, :mod:`impax.data.pack`);
    empty for a prepared (chunked, gzip'd) record."""
    out = {}
    for k in sorted(f.keys()):
        ds = f[k]
        if ds.ndim == 0 or ds.chunks is not None or ds.compression is not None:
            continue
        off = ds.id.get_offset()
        if off is not None:
            out[k] = [int(off), ds.dtype.str]
    return out


def read_rows(ds: h5py.Dataset, rows: slice | Sequence[int] | np.ndarray | None) -> np.ndarray:
    """Read ``rows`` of a dataset along axis 0, in the order given (duplicates allowed).

    Indices are read with one sorted, unique h5py selection (only the chunks they touch are
    decompressed) and reordered in numpy.
    """
    if rows is None:
        return ds[()]
    if isinstance(rows, slice):
        return ds[rows]
    idx = np.asarray(rows, dtype=np.int64)
    uniq, inv = np.unique(idx, return_inverse=True)
    if len(uniq) * 4 >= ds.shape[0]:  # most chunks are touched anyway: one contiguous read is faster
        block = ds[int(uniq[0]):int(uniq[-1]) + 1]
        return block[idx - uniq[0]]
    return ds[uniq][inv.reshape(-1)]


def export_imnet_hdf5(store: ShapeStore, split: str | None, out_path: str | Path,
                      pixels: bool | None = None) -> Path:
    """Write the official IM-NET layout (``voxels``, ``points/values_R``, ``pixels``) + ``.txt`` names.

    Shapes of ``split`` (all when None) in id order; names are ``<class>/<model id>`` like the
    official lists. ``pixels`` defaults to "when every shape has 24 views of 137^2".
    """
    from impax.data.imnet_hdf5 import IMNetHdf5Writer

    ids = store.ids(split)
    if not ids:
        raise ValueError(f"no shapes in split {split!r} of {store.root}")
    entries = {e["id"]: e for e in store.entries(split)}
    levels = sorted(int(k.split("_")[1]) for k in entries[ids[0]]["arrays"] if k.startswith("points_"))
    if not levels or "voxels" not in entries[ids[0]]["arrays"]:
        raise ValueError(f"{store.root}: shapes have no IM-NET data (voxels/points_R)")
    counts = {lv: entries[ids[0]]["arrays"][f"points_{lv}"][0] for lv in levels}
    from impax.data.imnet_hdf5 import IMNET_PIXEL_SHAPE

    has_views = all(tuple(entries[i]["arrays"].get("views", ())) == IMNET_PIXEL_SHAPE for i in ids)
    if pixels is None:
        pixels = has_views
    elif pixels and not has_views:
        raise ValueError(f"not every shape has views of shape {IMNET_PIXEL_SHAPE} (the official 'pixels')")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # uncompressed rows: voxels, points (3 B) and values (1 B) per level, views
    per_shape = 64 ** 3 + sum(4 * int(counts[lv]) for lv in levels) + (int(np.prod(IMNET_PIXEL_SHAPE)) if pixels else 0)
    check_free_space(out_path.parent, len(ids) * per_shape + (1 << 20), out_path)
    tmp = tmp_path(out_path)
    try:
        with IMNetHdf5Writer(tmp, levels, counts, pixels=pixels) as w:
            for sid in ids:
                with store.open(sid) as f:
                    a = {k: _decode_attr(v) for k, v in f.attrs.items()}
                    name = f"{a['class']}/{a.get('model_id', sid)}" if a.get("class") else str(a.get("model_id", sid))
                    w.append(name, f["voxels"][()],
                             {lv: f[f"points_{lv}"][()] for lv in levels},
                             {lv: f[f"values_{lv}"][()] for lv in levels},
                             f["views"][()] if pixels else None)
        os.replace(tmp, out_path)
        txt = tmp.with_suffix(".txt")
        if txt.is_file():
            os.replace(txt, out_path.with_suffix(".txt"))
    finally:
        for p in (tmp, tmp.with_suffix(".txt")):
            if p.exists():
                p.unlink()
    return out_path


def data_kind(path: str | Path, strict: bool = False) -> str | None:
    """``"store"`` for a prepared store folder (``index.json``), ``"hdf5"`` for an IM-NET
    ``.hdf5``/``.h5`` file, else ``None`` (``strict``: ``FileNotFoundError`` naming the path)."""
    p = Path(path)
    if (p / "index.json").is_file():
        return "store"
    if p.is_file() and p.suffix in (".hdf5", ".h5"):
        return "hdf5"
    if strict:
        raise FileNotFoundError(f"{path}: neither a prepared store (index.json) nor an IM-NET .hdf5 file")
    return None

"""The preparation job: a folder of meshes → a :class:`~impax.data.store.ShapeStore`, in parallel, resumable.

Output folder ``OUT``::

    OUT/prepare.json        the run's settings (config, seed, split rule); a rerun must match it
    OUT/shapes/<id>.h5      one record per good shape (atomic: written as *.tmp, then os.replace)
    OUT/failed/<id>.json    one marker per bad input: {"id", "path", "reason"} (removed on success)
    OUT/index.json          the store index (merge step)
    OUT/report.json         totals, status and every failure with its reason (merge step)
    OUT/failed.txt          "PATH: REASON" per failure (merge step)

Guarantees:

* **Resume**: shapes whose final record exists are skipped, so a run killed at any moment (even by
  SIGKILL) and rerun ends with the same bytes as an uninterrupted run: every file is a
  deterministic function of (source file, config, seed, shape id) — per-shape seeds, HDF5 written
  without timestamps in a fixed order — and nothing records times, worker counts or output paths.
* **Shards**: ``shard=(i, n)`` prepares the shapes whose id hashes to shard ``i``
  (:func:`impax.data.sources.shard_of`); shards can run on different machines into the same
  folder (or folders copied together); :func:`merge` then writes the index and report. Sharded-then-merged
  output is identical to a single run.
* **Bad input never stops the run**: each bad file gets one ``skipped PATH: REASON`` line and a
  marker; exit status 0 = complete, 3 = partial success, 1 = nothing usable.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import multiprocessing as mp
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from impax.configs import to_dict
from impax.data.pipeline import PrepareConfig, prepare_shape
from impax.data.sources import DEFAULT_SPLIT_FRACTIONS, SourceShape, assign_splits, discover, shard_of
from impax.data.store import ShapeStore

EXIT_COMPLETE, EXIT_FAILURE, EXIT_PARTIAL = 0, 1, 3


@dataclasses.dataclass
class PrepareResult:
    """Summary of a run (or of a merge)."""

    out: Path
    total: int  # shapes considered (this shard's, for a shard run)
    prepared: int  # newly written in this run
    skipped: int  # already present (resume)
    failures: list[dict[str, str]]
    status: int

    @property
    def ok(self) -> int:
        return self.prepared + self.skipped

    def summary(self) -> str:
        word = {EXIT_COMPLETE: "complete", EXIT_PARTIAL: "partial", EXIT_FAILURE: "failed"}[self.status]
        return (f"{word}: {self.ok}/{self.total} shapes usable ({self.prepared} prepared now, "
                f"{self.skipped} already present), {len(self.failures)} failed -> {self.out}")


def _status(n_ok: int, n_failed: int) -> int:
    if n_ok == 0:
        return EXIT_FAILURE
    return EXIT_PARTIAL if n_failed else EXIT_COMPLETE


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _settings(cfg: PrepareConfig, seed: int, fractions: Sequence[float], lists: Mapping[str, str | Path] | None,
              ) -> dict[str, Any]:
    split = ({"lists": {k: Path(v).read_text().splitlines() for k, v in sorted(lists.items())}} if lists
             else {"fractions": [float(f) for f in fractions]})
    return {"config": to_dict(cfg), "seed": int(seed), "split": split}


def _run_one(shape: SourceShape, cfg: PrepareConfig, seed: int, out: str) -> tuple[str, str | None]:
    """Prepare and write one shape; returns (id, failure reason or None). Runs in a worker."""
    from impax.geometry.mesh_io import MeshError

    store = ShapeStore(out)
    marker = Path(out) / "failed" / f"{shape.shape_id}.json"
    try:
        arrays, attrs = prepare_shape(shape.path, cfg, seed, shape.shape_id)
    except MeshError as e:
        reason = e.reason
    except MemoryError:
        reason = "out of memory while preparing this shape"
    except Exception as e:  # noqa: BLE001 - any failure of one shape must not stop the run
        reason = " ".join(f"{type(e).__name__}: {e}".split())
    else:
        attrs.update({"class": shape.cls, "model_id": shape.model_id, "split": shape.split, "source": shape.rel})
        store.write(shape.shape_id, arrays, attrs)
        marker.unlink(missing_ok=True)
        return shape.shape_id, None
    _write_json(marker, {"id": shape.shape_id, "path": shape.rel, "reason": reason})
    return shape.shape_id, reason


def _mp_context():
    methods = mp.get_all_start_methods()
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


def prepare(src: str | Path, out: str | Path, cfg: PrepareConfig = PrepareConfig(), workers: int | None = None,
            shard: tuple[int, int] | None = None, seed: int = 0,
            split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
            split_lists: Mapping[str, str | Path] | None = None, progress: bool = True) -> PrepareResult:
    """Prepare every mesh under ``src`` into the store ``out`` (see the module doc).

    ``workers`` processes (default ``os.cpu_count()``; 1 runs in this process). A full run
    (``shard=None``) ends with :func:`merge`; a shard run does not (call :func:`merge` once all
    shards are done).
    """
    from tqdm import tqdm

    out = Path(out)
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    if shard is not None:
        i, n = shard
        if not (n >= 1 and 0 <= i < n):
            raise ValueError(f"bad shard {i}/{n}: need 0 <= i < n")
    settings = _settings(cfg, seed, split_fractions, split_lists)
    sfile = out / "prepare.json"
    if sfile.is_file():
        if json.loads(sfile.read_text()) != json.loads(json.dumps(settings, sort_keys=True)):
            raise ValueError(f"{out} was prepared with other settings ({sfile}); use a new output folder")
    else:
        _write_json(sfile, settings)
    store = ShapeStore(out)
    store.remove_stale_tmp()
    shapes = assign_splits(discover(src), split_fractions, split_lists)
    if shard is not None:
        shapes = [s for s in shapes if shard_of(s.shape_id, shard[1]) == shard[0]]
    todo = [s for s in shapes if not store.has(s.shape_id)]
    skipped = len(shapes) - len(todo)
    failures: list[dict[str, str]] = []
    bar = tqdm(total=len(todo), unit="shape", disable=not progress or not todo, file=sys.stderr,
               dynamic_ncols=True, smoothing=0.1)

    def done(shape: SourceShape, reason: str | None) -> None:
        if reason is not None:
            failures.append({"id": shape.shape_id, "path": shape.rel, "reason": reason})
            bar.write(f"skipped {shape.rel}: {reason}", file=sys.stderr)
        bar.update(1)

    try:
        if workers == 1 or len(todo) <= 1:
            for s in todo:
                done(s, _run_one(s, cfg, seed, str(out))[1])
        else:
            with cf.ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=_mp_context()) as pool:
                futs = {pool.submit(_run_one, s, cfg, seed, str(out)): s for s in todo}
                try:
                    for fut in cf.as_completed(futs):
                        s = futs[fut]
                        try:
                            reason = fut.result()[1]
                        except Exception as e:  # a crashed worker (e.g. killed by the OOM killer)
                            reason = " ".join(f"worker crashed: {type(e).__name__}: {e}".split())
                            _write_json(out / "failed" / f"{s.shape_id}.json",
                                        {"id": s.shape_id, "path": s.rel, "reason": reason})
                        done(s, reason)
                except KeyboardInterrupt:
                    for f in futs:
                        f.cancel()
                    raise
    finally:
        bar.close()
    failures.sort(key=lambda f: f["id"])
    if shard is None:
        merged = merge(out)
        return dataclasses.replace(merged, prepared=len(todo) - len(failures), skipped=skipped)
    return PrepareResult(out, len(shapes), len(todo) - len(failures), skipped, failures,
                         _status(len(shapes) - len(failures), len(failures)))


def merge(out: str | Path) -> PrepareResult:
    """Finalise a store folder: ``index.json``, ``report.json`` and ``failed.txt`` from its records and markers."""
    out = Path(out)
    store = ShapeStore(out)
    store.remove_stale_tmp()
    index = store.build_index()
    good = {e["id"] for e in index["shapes"]}
    failures = []
    fdir = out / "failed"
    for p in sorted(fdir.glob("*.json")) if fdir.is_dir() else []:
        rec = json.loads(p.read_text())
        if rec["id"] in good:  # a later run succeeded: the marker is stale
            p.unlink()
            continue
        failures.append(rec)
    failures.sort(key=lambda f: f["id"])
    status = _status(len(good), len(failures))
    report = {
        "status": {EXIT_COMPLETE: "complete", EXIT_PARTIAL: "partial", EXIT_FAILURE: "failed"}[status],
        "exit_code": status,
        "total": len(good) + len(failures),
        "prepared": len(good),
        "failed": failures,
        "splits": index["splits"],
    }
    _write_json(out / "report.json", report)
    (out / "failed.txt").write_text("".join(f"{f['path']}: {f['reason']}\n" for f in failures))
    return PrepareResult(out, report["total"], 0, len(good), failures, status)

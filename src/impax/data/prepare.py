"""The preparation job: a folder of meshes → a :class:`~impax.data.store.ShapeStore`, in parallel, resumable.

Output folder ``OUT``::

    OUT/prepare.json        the run's settings (config, seed, split rule); a rerun must match it
    OUT/shapes/<id>.h5      one record per good shape (atomic: the owner's temp file, then os.replace)
    OUT/failed/<id>.json    one marker per bad input: {"id", "path", "reason"} (removed on success)
    OUT/journal/*.jsonl     sha256 and size of each record written since the last merge (merge removes them)
    OUT/index.json          the store index (merge step): per record its size and sha256
    OUT/report.json         totals, status and every failure with its reason (merge step)
    OUT/failed.txt          "PATH: REASON" per failure (merge step)
    OUT/.impax.lock         the folder's lock (see "One writer" below)

The source may also be OccNet's preprocessed data (a :class:`~impax.data.occnet.OccNetPrepareConfig`
as the config: one job per ``<class>/<model>/`` folder, see :func:`prepare`); everything below holds
for it alike.

Guarantees:

* **Validation first**: the source folder, the split fractions or lists, the shard and every
  setting are checked before anything is written to ``OUT`` (``prepare.json`` included), so a
  typo never leaves a folder that refuses the corrected command.
* **Resume**: shapes whose record exists and checks out are skipped, so a run killed at any moment
  (even by SIGKILL) and rerun ends with the same bytes as an uninterrupted run: every file is a
  deterministic function of (source file, config, seed, shape id) — per-shape seeds, HDF5 written
  without timestamps in a fixed order — and nothing records times, worker counts or output paths.
* **Integrity**: on resume every existing record of the run is checked — against the size and
  sha256 that ``index.json`` or the journal holds for it, or, for a record neither knows, by
  reading every dataset. A record that fails is named on stderr, deleted and prepared again.
* **Isolation**: each file is prepared in a worker process (``workers`` of them, one file at a
  time each) under per-file limits (:class:`Limits`): address space (``RLIMIT_AS``), wall time, and
  a face count read from the file's header before it is loaded (above it the file is refused with
  the reason; impax never simplifies a mesh behind your back). A worker that crashes — a segfault,
  the OOM killer's SIGKILL — or runs out of time fails only the file it was preparing, which is
  named in ``report.json``; a new worker takes the remaining files. Workers die with the job:
  each asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``) and also watches its
  parent and its job pipe, so none outlives ``impax prepare``, even one killed by SIGKILL.
* **One writer**: a full run and ``--merge`` hold ``OUT/.impax.lock`` exclusively; a shard run
  holds it shared plus ``OUT/.impax-shard-i-of-n.lock`` exclusively, so shards of one job may run
  at once (on one host or several, over a shared file system) while a second process on the same
  folder, or the same shard, is refused with one line. Temp files are named after their owner
  (host and pid) and removed only when their owner is gone (:mod:`impax.data.safety`).
* **Write errors**: a full disk, a file-size limit or a read-only folder stops the job with one
  :class:`~impax.data.safety.WriteError` naming the path; records already written stay intact and
  a rerun resumes.
* **Shards**: ``shard=(i, n)`` prepares the shapes whose id hashes to shard ``i``
  (:func:`impax.data.sources.shard_of`); :func:`merge` then writes the index and report.
  Sharded-then-merged output is identical to a single run.
* **Bad input never stops the run**: each bad file gets one ``skipped PATH: REASON`` line and a
  marker; exit status 0 = complete, 3 = partial success (some inputs failed, in this run or an
  earlier one, and are listed in ``report.json``), 1 = nothing usable.
"""

from __future__ import annotations

import dataclasses
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from impax.configs import to_dict
from impax.data.occnet import OccNetPrepareConfig, discover_occnet
from impax.data.pipeline import PrepareConfig, prepare_shape
from impax.data.safety import (FolderLock, WriteError, atomic_write_bytes, atomic_write_json, die_with_parent,
                               is_write_error, owner_tag, tmp_path, write_error)
from impax.data.sources import DEFAULT_SPLIT_FRACTIONS, SourceShape, assign_splits, discover, hash_split, shard_of
from impax.data.store import RecordError, ShapeStore, check_record

EXIT_COMPLETE, EXIT_FAILURE, EXIT_PARTIAL = 0, 1, 3

#: Default per-file limits (see :class:`Limits`).
DEFAULT_TIME_LIMIT = 1800.0
DEFAULT_MAX_FACES = 2_000_000


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-file resource limits of the workers (not part of the data: they may change on resume).

    * ``max_memory``: bytes of address space a worker may take beyond what it holds when idle
      (``RLIMIT_AS``; a file that needs more fails with "out of memory"). ``None``: the default,
      3/4 of the machine's memory (or of the cgroup's limit) divided by the number of workers,
      at least 1 GiB. ``0``: no limit.
    * ``time_limit``: seconds one file may take; the worker is then killed and the file fails.
      ``None`` or ``0``: no limit. Default 1800 s (a 1.3M-face mesh takes about a minute).
    * ``max_faces``: files whose header announces more faces (PLY, OFF, STL, OBJ ``f`` lines),
      or whose loaded mesh has more, are refused with the reason. ``None`` or ``0``: no cap.
      Default 2,000,000.
    """

    max_memory: int | None = None
    time_limit: float | None = DEFAULT_TIME_LIMIT
    max_faces: int | None = DEFAULT_MAX_FACES

    def __post_init__(self) -> None:
        if self.max_memory is not None and self.max_memory < 0:
            raise ValueError(f"the memory limit must be >= 0, got {self.max_memory}")
        if self.time_limit is not None and self.time_limit < 0:
            raise ValueError(f"the time limit must be >= 0 seconds, got {self.time_limit}")
        if self.max_faces is not None and self.max_faces < 0:
            raise ValueError(f"the face limit must be >= 0, got {self.max_faces}")

    def memory_bytes(self, workers: int) -> int | None:
        """The per-worker address-space budget in bytes (``None``: unlimited)."""
        if self.max_memory == 0:
            return None
        if self.max_memory is not None:
            return int(self.max_memory)
        return max(1 << 30, int(0.75 * machine_memory() / max(1, workers)))


def machine_memory() -> int:
    """Physical memory in bytes, or the cgroup's memory limit when lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for p in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(p).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return int(total)


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
    atomic_write_json(path, data)


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Three non-negative split fractions (train, val, test) with a positive sum, else ``ValueError``."""
    try:
        f = tuple(float(x) for x in fractions)
    except (TypeError, ValueError):
        raise ValueError(f"split fractions must be 3 numbers TRAIN,VAL,TEST, got {list(fractions)!r}") from None
    if len(f) != 3 or min(f) < 0 or sum(f) <= 0 or any(x != x for x in f):
        raise ValueError(f"split fractions must be 3 non-negative numbers TRAIN,VAL,TEST with a positive sum, "
                         f"got {','.join(str(x) for x in fractions)}")
    return f  # type: ignore[return-value]


def _settings(cfg: PrepareConfig, seed: int, fractions: Sequence[float], lists: Mapping[str, str | Path] | None,
              ) -> dict[str, Any]:
    if lists:
        split: dict[str, Any] = {"lists": {}}
        for k, v in sorted(lists.items()):
            try:
                split["lists"][k] = Path(v).read_text().splitlines()
            except OSError as e:
                raise FileNotFoundError(f"split list {k}={v}: {e.strerror or e}") from None
    else:
        split = {"fractions": [float(f) for f in fractions]}
    return {"config": to_dict(cfg), "seed": int(seed), "split": split}


def _settle_settings(out: Path, settings: dict[str, Any]) -> None:
    """Write ``OUT/prepare.json`` if absent (atomically, first writer wins), then require it to match."""
    sfile = out / "prepare.json"
    want = json.loads(json.dumps(settings, sort_keys=True))
    if not sfile.is_file():
        tmp = tmp_path(sfile)
        atomic_write_bytes(tmp, (json.dumps(settings, indent=1, sort_keys=True) + "\n").encode())
        try:
            os.link(tmp, sfile)  # atomic "create if absent": concurrent shards agree on one file
        except FileExistsError:
            pass
        except OSError as e:
            raise (write_error(e, sfile) if is_write_error(e) else e) from None
        finally:
            tmp.unlink(missing_ok=True)
    try:
        have = json.loads(sfile.read_text())
    except ValueError:
        raise ValueError(f"{sfile} is corrupt; restore it or use a new output folder") from None
    if have != want:
        raise ValueError(f"{out} was prepared with other settings ({sfile}); use a new output folder")


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {out} exists and is not a folder")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"output folder {out}: {parent} is not a folder")
            break


def _job_locks(out: Path, shard: tuple[int, int] | None) -> list[FolderLock]:
    if shard is None:
        return [FolderLock(out, what="impax prepare")]
    i, n = shard
    return [FolderLock(out, shared=True, what="impax prepare (a full run or a merge)"),
            FolderLock(out, f".impax-shard-{i}-of-{n}.lock", what=f"impax prepare --shard {i}/{n}", remove=True)]


class _Held:
    """Acquire locks in order, release in reverse (also on errors)."""

    def __init__(self, locks: list[FolderLock]) -> None:
        self.locks, self.got = locks, []

    def __enter__(self) -> _Held:
        try:
            for lk in self.locks:
                self.got.append(lk.acquire())
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        while self.got:
            self.got.pop().release()


# -------------------------------------------------------------------------------------- journal

JOURNAL_DIR = "journal"


#: Per-shape measurements a journal line and ``report.json``'s ``shapes`` carry: wall seconds of
#: preparing the file, and the peak resident memory (MiB) of the worker process up to it.
SHAPE_STATS = ("seconds", "peak_rss_mb")


def read_journals(out: Path) -> dict[str, dict[str, Any]]:
    """``{id: {"sha256", "bytes"}}`` of the records the journals list (a torn last line is ignored)."""
    known: dict[str, dict[str, Any]] = {}
    jdir = out / JOURNAL_DIR
    for p in sorted(jdir.glob("*.jsonl")) if jdir.is_dir() else []:
        try:
            lines = p.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                rec = json.loads(line)
                known[str(rec["id"])] = {"sha256": str(rec["sha256"]), "bytes": int(rec["bytes"]),
                                         **{k: float(rec[k]) for k in SHAPE_STATS if k in rec}}
            except (ValueError, KeyError, TypeError):
                continue
    return known


class _Journal:
    """This process's journal file: one JSON line per record written (best effort)."""

    def __init__(self, out: Path) -> None:
        self.path = out / JOURNAL_DIR / f"{owner_tag()}.jsonl"
        self._f = None

    def add(self, shape_id: str, sha256: str, size: int, **stats: float) -> None:
        try:
            if self._f is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._f = open(self.path, "a", encoding="utf-8")
            self._f.write(json.dumps({"id": shape_id, "sha256": sha256, "bytes": int(size), **stats}) + "\n")
            self._f.flush()
        except OSError:
            pass  # the journal only saves re-reading records on resume

    def close(self) -> None:
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass
            self._f = None


def _known_records(out: Path) -> dict[str, dict[str, Any]]:
    """What the index and the journals say about each record (journals win: they are newer)."""
    known: dict[str, dict[str, Any]] = {}
    try:
        for e in ShapeStore(out).index(build=False)["shapes"]:
            if "sha256" in e:
                known[e["id"]] = {"sha256": e["sha256"], "bytes": e.get("bytes")}
    except (OSError, ValueError) as e:
        if not isinstance(e, FileNotFoundError):
            print(f"warning: {e}; records are checked by reading them", file=sys.stderr)
    known.update(read_journals(out))
    return known


def _verify_existing(store: ShapeStore, shapes: Sequence[SourceShape], known: Mapping[str, Mapping[str, Any]],
                     warn: Any) -> tuple[dict[str, str], list[SourceShape]]:
    """Check the existing records of ``shapes``: ``({id: sha256} of good ones, shapes to prepare)``.
    A record that fails is named through ``warn``, deleted, and prepared again."""
    good: dict[str, str] = {}
    todo: list[SourceShape] = []
    for s in shapes:
        p = store.path(s.shape_id)
        if not p.is_file():
            todo.append(s)
            continue
        k = known.get(s.shape_id)
        try:
            good[s.shape_id] = check_record(p, k.get("sha256") if k else None, k.get("bytes") if k else None,
                                            read_all=k is None)
        except RecordError as e:
            warn(f"{e}; preparing {s.rel} again")
            p.unlink(missing_ok=True)
            todo.append(s)
    return good, todo


# -------------------------------------------------------------------------------------- workers

def _job(shape: SourceShape) -> dict[str, Any]:
    return {"id": shape.shape_id, "path": str(shape.path), "rel": shape.rel, "cls": shape.cls,
            "model_id": shape.model_id, "split": shape.split}


def _prepare_one(job: Mapping[str, Any], cfg: Any, seed: int, out: str,
                 max_faces: int | None) -> dict[str, Any]:
    """Prepare and write one shape (a mesh file with a :class:`PrepareConfig`, an OccNet shape
    folder with an :class:`~impax.data.occnet.OccNetPrepareConfig`). Returns ``{"id", "sha256",
    "bytes"}`` on success, ``{"id", "reason"}`` for a bad input, ``{"id", "fatal", "errno", "path"}``
    for a write error."""
    from impax.data.occnet import OccNetPrepareConfig, prepare_occnet_shape
    from impax.data.store import encode_record
    from impax.geometry.mesh_io import MeshError

    sid = job["id"]
    t0 = time.perf_counter()
    try:
        if isinstance(cfg, OccNetPrepareConfig):
            arrays, attrs = prepare_occnet_shape(job["path"], cfg, seed, sid)
        else:
            arrays, attrs = prepare_shape(job["path"], cfg, seed, sid, max_faces=max_faces or None)
    except MeshError as e:
        return {"id": sid, "reason": e.reason}
    except MemoryError:
        return {"id": sid, "reason": "out of memory while preparing this file (see --max-memory)", "restart": True}
    except Exception as e:  # noqa: BLE001 - any failure of one shape must not stop the run
        return {"id": sid, "reason": " ".join(f"{type(e).__name__}: {e}".split())}
    attrs.update({"class": job["cls"], "model_id": job["model_id"], "split": job["split"], "source": job["rel"],
                  "shape_id": sid})
    store = ShapeStore(out)
    try:
        data = encode_record(arrays, attrs)
    except MemoryError:
        return {"id": sid, "reason": "out of memory while encoding this record (see --max-memory)", "restart": True}
    try:
        atomic_write_bytes(store.path(sid), data)
    except OSError as e:
        if is_write_error(e):
            w = write_error(e, store.path(sid))
            return {"id": sid, "fatal": str(w), "errno": w.errno, "path": w.path, "reason": w.reason}
        return {"id": sid, "reason": " ".join(f"{type(e).__name__}: {e}".split())}
    import hashlib

    import resource

    # ru_maxrss: KiB on Linux; the peak of this process so far (a worker prepares one file at a time)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"id": sid, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "seconds": round(time.perf_counter() - t0, 3), "peak_rss_mb": round(peak, 1)}


def _address_space() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def worker_main() -> None:
    """A prepare worker: one JSON setup line on stdin, then one job per line; one JSON result line
    per job on the original stdout (stdout itself is pointed at stderr, so that nothing a library
    prints can garble the replies). Exits at the end of its input or when its parent dies."""
    parent = int(os.environ.get("IMPAX_PREPARE_PARENT", "0") or 0)
    if parent:
        die_with_parent(parent)
    reply = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what an interrupt does
    import faulthandler

    faulthandler.enable()  # a native crash prints the Python stack of the worker
    setup = json.loads(sys.stdin.readline() or "{}")
    if not setup:
        return
    from impax.configs import from_dict
    from impax.data.occnet import OccNetPrepareConfig

    cfg = from_dict(OccNetPrepareConfig if setup.get("format") == "occnet" else PrepareConfig, setup["config"])
    # import what every file needs before measuring the idle address space
    import impax.geometry.inside  # noqa: F401
    import impax.geometry.mesh_io  # noqa: F401
    import impax.geometry.sampling  # noqa: F401
    import impax.geometry.voxels  # noqa: F401
    if getattr(cfg, "depth", False) or getattr(cfg, "views", False):
        import impax.geometry.render  # noqa: F401
    budget = setup.get("max_memory")
    if budget:
        import resource

        base = _address_space() or 0
        limit = base + int(budget)
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ValueError, OSError):
            pass
    reply.write(json.dumps({"ready": os.getpid()}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        res = _prepare_one(job, cfg, int(setup["seed"]), setup["out"], setup.get("max_faces"))
        reply.write(json.dumps(res) + "\n")
        if res.get("restart") or res.get("fatal"):
            return


class _Worker:
    """One worker process of :func:`prepare` and the job it is running."""

    def __init__(self, setup: str, env: Mapping[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from impax.data.prepare import worker_main; worker_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=dict(env), start_new_session=True, close_fds=True)
        self.ready = False
        self.job: SourceShape | None = None
        self.started = 0.0
        self.buf = b""
        self.dead = False
        self.send(setup)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died: seen when its output ends

    def assign(self, shape: SourceShape) -> None:
        self.job, self.started = shape, time.monotonic()
        self.send(json.dumps(_job(shape)))

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()  # type: ignore[union-attr]
            except OSError:
                pass
        self.dead = True


def _crash_reason(w: _Worker, memory: int | None) -> str:
    rc = w.proc.returncode
    pid = w.proc.pid
    limited = (f" (likely out of memory: native code fails this way when it hits the per-file limit of "
               f"{memory / 2 ** 30:.3g} GiB, --max-memory)") if memory else ""
    if rc is not None and rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        if -rc == signal.SIGKILL:
            hint = " (out of memory? the kernel's OOM killer sends SIGKILL)"
        else:
            hint = limited if -rc in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS) else ""
        return f"worker crashed while preparing this file: pid {pid} killed by {name}{hint}"
    return f"worker crashed while preparing this file: pid {pid} exited with status {rc}{limited}"


def _run_workers(todo: list[SourceShape], n: int, setup: dict[str, Any], limits: Limits,
                 done: Any) -> None:
    """Prepare ``todo`` on ``n`` worker processes; ``done(shape, result dict)`` per file."""
    # MALLOC_ARENA_MAX: glibc reserves 64 MB of address space per thread arena, which RLIMIT_AS
    # would count as if it were used; two arenas keep the limit about memory actually used.
    env = {"MALLOC_ARENA_MAX": "2", **os.environ, "IMPAX_PREPARE_PARENT": str(os.getpid())}
    setup_line = json.dumps(setup)
    pending = deque(todo)
    workers: list[_Worker] = []
    sel = selectors.DefaultSelector()
    time_limit = limits.time_limit or None
    starts_without_job = 0

    def start() -> None:
        w = _Worker(setup_line, env)
        workers.append(w)
        sel.register(w.proc.stdout, selectors.EVENT_READ, w)  # type: ignore[arg-type]

    def retire(w: _Worker) -> None:
        try:
            sel.unregister(w.proc.stdout)  # type: ignore[arg-type]
        except (KeyError, ValueError):
            pass
        w.kill()
        workers.remove(w)

    try:
        while pending or any(w.job is not None for w in workers):
            while len(workers) < min(n, len(pending) + sum(w.job is not None for w in workers)):
                start()
            for w in workers:
                if w.ready and w.job is None and pending:
                    w.assign(pending.popleft())
            timeout = 1.0
            if time_limit:
                busy = [w.started + time_limit - time.monotonic() for w in workers if w.job is not None]
                if busy:
                    timeout = max(0.0, min(timeout, min(busy)))
            for key, _ in sel.select(timeout):
                w = key.data
                chunk = os.read(w.proc.stdout.fileno(), 1 << 16)
                if not chunk:  # its output ended: the worker exited
                    w.proc.wait()
                    shape = w.job
                    retire(w)
                    if shape is not None:
                        done(shape, {"id": shape.shape_id, "reason": _crash_reason(w, setup.get("max_memory"))})
                    elif not w.ready:
                        starts_without_job += 1
                        if starts_without_job >= 3:
                            raise RuntimeError(f"prepare workers fail to start (exit status {w.proc.returncode}); "
                                               "see the messages above")
                    continue
                w.buf += chunk
                while b"\n" in w.buf:
                    line, w.buf = w.buf.split(b"\n", 1)
                    msg = json.loads(line)
                    if "ready" in msg:
                        w.ready = True
                        starts_without_job = 0
                        continue
                    shape, w.job = w.job, None
                    if shape is None:
                        continue
                    if msg.get("fatal"):
                        raise WriteError(msg.get("path") or shape.rel, msg.get("errno"), msg.get("reason") or "")
                    done(shape, msg)
                    if msg.get("restart"):
                        retire(w)
                        break
            if time_limit:
                now = time.monotonic()
                for w in list(workers):
                    if w.job is not None and now - w.started > time_limit:
                        shape = w.job
                        retire(w)
                        done(shape, {"id": shape.shape_id,
                                     "reason": f"took longer than the per-file time limit of {time_limit:g} s "
                                               "(--time-limit); the worker was stopped"})
    finally:
        for w in list(workers):
            w.send("")  # nothing more
            retire(w)
        sel.close()


def prepare(src: str | Path, out: str | Path, cfg: Any = PrepareConfig(), workers: int | None = None,
            shard: tuple[int, int] | None = None, seed: int = 0,
            split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
            split_lists: Mapping[str, str | Path] | None = None, progress: bool = True,
            limits: Limits | None = None) -> PrepareResult:
    """Prepare every mesh under ``src`` into the store ``out`` (see the module doc).

    ``workers`` processes (default ``os.cpu_count()``), each preparing one file at a time under
    ``limits`` (default :class:`Limits`); ``workers=0`` prepares in this process, without isolation
    or limits (for debugging). A full run (``shard=None``) ends with :func:`merge`; a shard run
    does not (call :func:`merge` once all shards are done).

    With an :class:`~impax.data.occnet.OccNetPrepareConfig` as ``cfg``, ``src`` is an OccNet dataset
    (``<class>/<model>/points.npz`` + ``pointcloud.npz``) and each shape folder is prepared with
    :func:`~impax.data.occnet.prepare_occnet_shape`. The splits are OccNet's
    ``<class>/{train,val,test}.lst`` (``split_lists``, when given, replace them; a class without
    lists is split by hash); ``prepare.json`` records ``"source_format": "occnet"`` and the lists'
    sha256, so a rerun after the lists changed is refused like any change of settings.
    """
    from tqdm import tqdm

    out, src = Path(out), Path(src)
    limits = limits or Limits()
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if shard is not None:
        i, n = shard
        if not (n >= 1 and 0 <= i < n):
            raise ValueError(f"bad shard {i}/{n}: need 0 <= i < n")
    fractions = check_fractions(split_fractions) if not split_lists else tuple(split_fractions)
    # everything is checked before OUT is touched
    settings = _settings(cfg, seed, fractions, split_lists)
    occnet = isinstance(cfg, OccNetPrepareConfig)
    if occnet:
        shapes, lists_sha = discover_occnet(src)
        if split_lists:
            shapes = assign_splits(shapes, fractions, split_lists)
        else:
            shapes = [s if s.split else dataclasses.replace(s, split=hash_split(s.shape_id, fractions))
                      for s in shapes]
            settings["split"]["occnet_lists_sha256"] = lists_sha
        settings["source_format"] = "occnet"
    else:
        shapes = assign_splits(discover(src), fractions, split_lists)
    _check_out(out)
    if shard is not None:
        shapes = [s for s in shapes if shard_of(s.shape_id, shard[1]) == shard[0]]

    with _Held(_job_locks(out, shard)):
        _settle_settings(out, settings)
        store = ShapeStore(out)
        store.remove_stale_tmp(exclusive=shard is None)
        failures: list[dict[str, str]] = []
        journal = _Journal(out)
        bar = None
        try:
            good, todo = _verify_existing(store, shapes, _known_records(out),
                                          lambda msg: print(f"warning: {msg}", file=sys.stderr))
            skipped = len(shapes) - len(todo)
            # the bar counts this run's files only, so its rate and ETA come from shapes finished now
            bar = tqdm(total=len(todo), unit="shape", disable=not progress or not todo, file=sys.stderr,
                       dynamic_ncols=True, smoothing=0.3,
                       desc=f"prepare ({skipped} already present)" if skipped else "prepare")
            prepared = 0

            def done(shape: SourceShape, res: Mapping[str, Any]) -> None:
                nonlocal prepared
                marker = out / "failed" / f"{shape.shape_id}.json"
                if res.get("reason") is None:
                    good[shape.shape_id] = res["sha256"]
                    journal.add(shape.shape_id, res["sha256"], res["bytes"],
                                **{k: res[k] for k in SHAPE_STATS if k in res})
                    marker.unlink(missing_ok=True)
                    prepared += 1
                else:
                    reason = str(res["reason"])
                    _write_json(marker, {"id": shape.shape_id, "path": shape.rel, "reason": reason})
                    failures.append({"id": shape.shape_id, "path": shape.rel, "reason": reason})
                    bar.write(f"skipped {shape.rel}: {reason}", file=sys.stderr)
                bar.update(1)

            if workers == 0:
                for s in todo:
                    res = _prepare_one(_job(s), cfg, seed, str(out), limits.max_faces)
                    if res.get("fatal"):
                        raise WriteError(res["path"], res.get("errno"), res["reason"])
                    done(s, res)
            elif todo:
                setup = {"config": to_dict(cfg), "seed": int(seed), "out": str(out.absolute()),
                         "format": "occnet" if occnet else "mesh",
                         "max_faces": limits.max_faces or None, "max_memory": limits.memory_bytes(workers)}
                _run_workers(todo, min(workers, len(todo)), setup, limits, done)
        finally:
            journal.close()
            if bar is not None:
                bar.close()
        failures.sort(key=lambda f: f["id"])
        if shard is None:
            merged = merge(out, trusted=good, current={s.shape_id for s in shapes})
            return dataclasses.replace(merged, prepared=prepared, skipped=skipped)
    return PrepareResult(out, len(shapes), prepared, skipped, failures,
                         _status(len(shapes) - len(failures), len(failures)))


def merge(out: str | Path, trusted: Mapping[str, str] | None = None,
          current: set[str] | None = None) -> PrepareResult:
    """Finalise a store folder: ``index.json``, ``report.json`` and ``failed.txt`` from its records and markers.

    Every record is checked against its journal entry (size, sha256) unless ``trusted`` already
    holds its checksum; a record that fails is left out of the index and reported. ``current``:
    the ids of the source files of this run; markers of files no longer in the source are removed.
    Holds the folder's exclusive lock (so it refuses to run while shards are still writing).
    """
    out = Path(out)
    if not out.is_dir():
        raise FileNotFoundError(f"{out} is not a prepared folder (it does not exist)")
    with FolderLock(out, what="impax prepare"):
        store = ShapeStore(out)
        store.remove_stale_tmp(exclusive=True)
        journal = read_journals(out)
        verified = dict(trusted or {})
        problems: list[dict[str, str]] = []
        for p in sorted(store.shapes_dir.glob("*.h5")) if store.shapes_dir.is_dir() else []:
            sid = p.stem
            if sid in verified or sid not in journal:
                continue
            try:
                verified[sid] = check_record(p, journal[sid]["sha256"], journal[sid]["bytes"])
            except RecordError as e:
                print(f"warning: {e}; left out of the index (rerun `impax prepare` to prepare it again)",
                      file=sys.stderr)
                problems.append({"id": sid, "path": str(p.relative_to(out)), "reason": e.reason})
        bad_ids = {q["id"] for q in problems}
        index = store.build_index(known=verified, problems=problems, exclude=bad_ids)
        good = {e["id"] for e in index["shapes"]}
        failures = []
        fdir = out / "failed"
        for p in sorted(fdir.glob("*.json")) if fdir.is_dir() else []:
            try:
                rec = json.loads(p.read_text())
                rid = rec["id"]
            except (ValueError, KeyError, TypeError, OSError):
                rec, rid = {"id": p.stem, "path": p.name, "reason": "unreadable failure marker"}, p.stem
            if rid in good or (current is not None and rid not in current):
                p.unlink()  # a later run succeeded, or the file is no longer in the source
                continue
            failures.append(rec)
        known_failed = {f["id"] for f in failures}
        failures += [q for q in problems if q["id"] not in known_failed]
        failures.sort(key=lambda f: f["id"])
        status = _status(len(good), len(failures))
        try:  # measurements of shapes prepared by earlier runs (their journals are folded away)
            earlier = json.loads((out / "report.json").read_text()).get("shapes", {})
            earlier = earlier if isinstance(earlier, dict) else {}
        except (OSError, ValueError, AttributeError):
            earlier = {}
        stats = {sid: ({k: journal[sid][k] for k in SHAPE_STATS if k in journal[sid]} if sid in journal
                       else earlier.get(sid)) for sid in sorted(good)}
        report = {
            "status": {EXIT_COMPLETE: "complete", EXIT_PARTIAL: "partial", EXIT_FAILURE: "failed"}[status],
            "exit_code": status,
            "total": len(good) + len(failures),
            "prepared": len(good),
            "failed": failures,
            "splits": index["splits"],
            # per shape: seconds, peak_rss_mb; every prepared shape is listed, with {} where a kill
            # between its record and its journal line lost the measurements
            "shapes": {sid: (v or {}) for sid, v in stats.items()},
        }
        _write_json(out / "report.json", report)
        atomic_write_bytes(out / "failed.txt", "".join(f"{f['path']}: {f['reason']}\n" for f in failures).encode())
        jdir = out / JOURNAL_DIR
        if jdir.is_dir():  # folded into index.json
            for p in jdir.glob("*.jsonl"):
                p.unlink(missing_ok=True)
            try:
                jdir.rmdir()
            except OSError:
                pass
    return PrepareResult(out, report["total"], 0, len(good), failures, status)

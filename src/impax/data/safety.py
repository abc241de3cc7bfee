"""Writing output folders safely: one writer per folder, owned temp files, clear write errors.

* :class:`FolderLock` — an advisory ``fcntl.flock`` lock on a file inside an output folder
  (``OUT/.impax.lock`` for ``impax prepare``, ``RUN/.impax.lock`` for ``impax train``). A second
  process asking for the same lock gets :class:`FolderLocked` at once, whose message is one line
  naming the folder and, when known, the holder (pid and host, written into the lock file while it
  is held exclusively and cleared on release). Locks are re-entrant inside one process (the
  ``impax train`` command and :func:`impax.train.fit` take the same one). The kernel drops a lock
  when its holder dies, even by SIGKILL, so a stale lock file never blocks anyone. On NFS, Linux
  implements ``flock`` with POSIX byte-range locks, so it also works between hosts.
* Temp files carry their owner: ``NAME.<host>.<pid>.tmp`` (:func:`tmp_path`). :func:`remove_stale_tmp`
  removes only those whose owner is provably gone — a process of this host that no longer exists —
  or every one when the caller holds the folder's exclusive lock (then nobody else can be writing).
* :func:`atomic_write_bytes` / :func:`atomic_write_text`: write to the owner's temp file, then
  ``os.replace``; the old file stays intact on any error. ``ENOSPC``, ``EFBIG``, ``EROFS``,
  ``EDQUOT`` and permission errors become :class:`WriteError`, whose message is one line with the
  path, and the temp file is removed. :func:`check_free_space` refuses a write that cannot fit.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

#: errno values of a write that cannot succeed by retrying (disk full, file too large, read-only...).
WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM}


class FolderLocked(RuntimeError):
    """Another process holds the lock of a folder; ``str()`` is one line."""

    def __init__(self, folder: Path, what: str, holder: str = "") -> None:
        self.folder, self.holder = Path(folder), holder
        by = f" (held by {holder})" if holder else ""
        super().__init__(f"{folder} is in use by another {what}{by}; wait for it to finish or use "
                         "another folder")


class WriteError(OSError):
    """A write that failed for lack of space, a size limit or permissions; ``str()`` is one line
    ``PATH: reason``. ``errno`` is the original error number."""

    def __init__(self, path: str | Path, err: int | None, reason: str) -> None:
        super().__init__(err, reason)
        self.path = str(path)
        self.reason = " ".join(str(reason).split())

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.reason}"


def write_error(e: OSError, path: str | Path) -> WriteError:
    """``e`` as a :class:`WriteError` naming ``path`` (``e`` itself if it already is one)."""
    if isinstance(e, WriteError):
        return e
    reason = os.strerror(e.errno) if e.errno else str(e)
    if e.errno == errno.ENOSPC:
        reason = "no space left on device"
    elif e.errno == errno.EFBIG:
        reason = "file too large (the file-size limit, ulimit -f, or the file system's)"
    elif e.errno == errno.EROFS:
        reason = "read-only file system"
    elif e.errno == errno.EDQUOT:
        reason = "disk quota exceeded"
    return WriteError(path, e.errno, reason)


def is_write_error(e: BaseException) -> bool:
    return isinstance(e, WriteError) or (isinstance(e, OSError) and e.errno in WRITE_ERRNOS)


# ---------------------------------------------------------------------------------------- owners

def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname() or "host")[:64] or "host"


def owner_tag() -> str:
    """``<host>.<pid>`` of this process (what temp files are tagged with)."""
    return f"{_host()}.{os.getpid()}"


def tmp_path(path: str | Path) -> Path:
    """The temp file this process writes ``path`` through: ``path.<host>.<pid>.tmp``."""
    path = Path(path)
    return path.with_name(f"{path.name}.{owner_tag()}.tmp")


_TMP = re.compile(r"\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.tmp$")


def tmp_owner(path: str | Path) -> tuple[str, int] | None:
    """``(host, pid)`` of an owned temp file name, else ``None``."""
    m = _TMP.search(Path(path).name)
    return (m["host"], int(m["pid"])) if m else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def owner_gone(path: str | Path) -> bool:
    """Whether the owner of a temp file is provably gone: a process of this host that no longer
    exists. Files of other hosts, and old-style names without an owner, are never "gone"."""
    owner = tmp_owner(path)
    if owner is None:
        return False
    host, pid = owner
    return host == _host() and not pid_alive(pid)


def remove_stale_tmp(folder: str | Path, exclusive: bool = False, pattern: str = "*.tmp") -> int:
    """Delete the temp files in ``folder`` whose owner is gone (every one with ``exclusive``:
    the caller holds the folder's exclusive lock). Returns how many were removed."""
    folder = Path(folder)
    n = 0
    if not folder.is_dir():
        return 0
    for p in folder.glob(pattern):
        if p.is_file() and (exclusive or owner_gone(p)):
            p.unlink(missing_ok=True)
            n += 1
    return n


# ---------------------------------------------------------------------------------------- writes

def check_free_space(folder: str | Path, need: int, path: str | Path | None = None) -> None:
    """Raise :class:`WriteError` (ENOSPC) naming ``path`` when ``folder``'s file system has fewer
    than ``need`` bytes free for this user."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return  # no answer: let the write itself report
    free = st.f_bavail * st.f_frsize
    if free < need:
        raise WriteError(path or folder, errno.ENOSPC,
                         f"no space left on device ({free / 2**20:.1f} MiB free, {need / 2**20:.1f} MiB needed)")


def atomic_write_bytes(path: str | Path, data: bytes, check_space: bool = True) -> Path:
    """Write ``data`` to ``path`` through this process's temp file and ``os.replace``; on any
    error the temp file is removed, ``path`` is left as it was, and write failures are raised as
    :class:`WriteError`."""
    path = Path(path)
    tmp = tmp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if check_space:
            check_free_space(path.parent, len(data), path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        _unlink_quiet(tmp)
        raise (write_error(e, path) if is_write_error(e) else e) from None
    except BaseException:
        _unlink_quiet(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """Sorted, indented JSON (deterministic bytes), written atomically."""
    return atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def _unlink_quiet(p: Path) -> None:
    try:
        p.unlink()
    except OSError:
        pass


def ensure_folder(folder: str | Path, what: str = "output folder") -> Path:
    """Create ``folder`` (and parents) or raise a one-line error: ``ValueError`` when it exists as
    something else than a folder, :class:`WriteError` when it cannot be created."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{what} {folder} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ValueError(f"{what} {folder}: a part of the path is a file") from None
    except NotADirectoryError:
        raise ValueError(f"{what} {folder}: a part of the path is a file") from None
    except OSError as e:
        raise write_error(e, folder) from None
    return folder


# ---------------------------------------------------------------------------------------- locks

LOCK_NAME = ".impax.lock"

_held_lock = threading.Lock()
_held: dict[tuple[str, str], list[Any]] = {}  # (real folder, name) -> [fd, count, shared, pid]


class FolderLock:
    """An advisory lock on ``folder`` (``fcntl.flock`` on ``folder/name``), as a context manager.

    ``shared``: a shared lock (several holders, e.g. shards of one prepare job), else exclusive.
    ``what``: how the refusal names the other process ("impax prepare"). ``remove``: delete the
    lock file on release (only for exclusive per-task locks whose name is not permanent; the
    acquire loop re-checks the file's identity, so deleting a held lock file is safe).
    Creating the lock file creates ``folder``.
    """

    def __init__(self, folder: str | Path, name: str = LOCK_NAME, *, shared: bool = False,
                 what: str = "impax process", remove: bool = False) -> None:
        self.folder, self.name = Path(folder), name
        self.path = self.folder / name
        self.shared, self.what, self.remove = shared, what, remove
        self._key: tuple[str, str] | None = None

    def acquire(self) -> FolderLock:
        ensure_folder(self.folder)
        key = (os.path.realpath(self.folder), self.name)
        with _held_lock:
            rec = _held.get(key)
            if rec is not None and rec[3] == os.getpid():
                if rec[2] and not self.shared:
                    raise FolderLocked(self.folder, self.what, "this process, shared")
                rec[1] += 1
                self._key = key
                return self
            fd = self._lock_fd()
            _held[key] = [fd, 1, self.shared, os.getpid()]
            self._key = key
        return self

    def _lock_fd(self) -> int:
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        for _ in range(100):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                raise (write_error(e, self.path) if is_write_error(e) else e) from None
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise FolderLocked(self.folder, self.what, holder) from None
            except OSError:
                os.close(fd)
                raise
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # removed (and maybe re-created) by its last holder meanwhile: retry
                os.close(fd)
                continue
            if not self.shared:
                info = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
                try:
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, info.encode(), 0)
                except OSError:
                    pass  # the lock itself is what matters
            return fd
        raise RuntimeError(f"could not lock {self.path}: it keeps being replaced")

    def release(self) -> None:
        key, self._key = self._key, None
        if key is None:
            return
        with _held_lock:
            rec = _held.get(key)
            if rec is None:
                return
            rec[1] -= 1
            if rec[1] > 0:
                return
            del _held[key]
            fd = rec[0]
            try:
                if not rec[2]:
                    try:
                        os.ftruncate(fd, 0)
                    except OSError:
                        pass
                    if self.remove:
                        try:
                            self.path.unlink()
                        except OSError:
                            pass
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return ""
    if not isinstance(info, dict) or "pid" not in info:
        return ""
    return f"pid {info['pid']} on {info.get('host', '?')}"


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when ``parent`` dies: PR_SET_PDEATHSIG on Linux, and a watcher thread
    (every platform) that exits once the parent process is gone."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="impax-parent-watch", daemon=True).start()

"""Helpers of the fault tests: run the CLI, make inputs, look at processes, mount file systems."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

#: ``impax prepare`` flags for small, quick records.
QUICK = ("--quick", "--fast-voxels", "--skip", "depth,views", "--quiet")
#: ``impax train imnet-gan`` on latent codes: a real training run of a few seconds.
GAN = ("--preset", "quick", "--set", "batch_size=4", "--set", "train.checkpoint_every_steps=5",
       "--set", "train.log_every_steps=5", "--no-progress")


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k != "IMPAX_DEBUG"}
    e.update({"JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}, **extra)
    return e


def cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "impax", *map(str, args)]


def impax(*args: str, timeout: float = 600, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd(*args), capture_output=True, text=True, timeout=timeout, env=env(**extra))


def start(*args: str, **extra: str) -> subprocess.Popen:
    """``impax ARGS`` in the background (its own session, so a test can signal it alone)."""
    return subprocess.Popen(cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(**extra), start_new_session=True)


def one_line_error(res: subprocess.CompletedProcess, code: int = 1) -> str:
    """The single error line of a failed command (warnings aside); no traceback."""
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == code, (res.returncode, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("impax "), lines[0]
    return lines[0]


def write_meshes(root: Path, n: int, start: int = 0) -> list[Path]:
    """``n`` small closed meshes (boxes and spheres of different sizes) in class folders."""
    import trimesh

    out = []
    for k in range(start, start + n):
        m = (trimesh.creation.box(extents=(0.6 + 0.05 * k, 0.4, 0.3 + 0.02 * k)) if k % 2 == 0
             else trimesh.creation.icosphere(subdivisions=2, radius=0.4 + 0.03 * k))
        p = root / ("box" if k % 2 == 0 else "ball") / f"m{k:02d}.ply"
        p.parent.mkdir(parents=True, exist_ok=True)
        m.export(p)
        out.append(p)
    return out


def write_big_sphere(path: Path, subdivisions: int = 7) -> int:
    """An icosphere (subdivisions 7: 327,680 faces, ~8 s to prepare quick); returns its faces."""
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=subdivisions)
    path.parent.mkdir(parents=True, exist_ok=True)
    m.export(path)
    return len(m.faces)


def write_huge_ply(path: Path, rows: int = 1620, cols: int = 1620) -> int:
    """A closed binary PLY tube of ``2 * rows * cols`` triangles (default 5,248,800), written with
    numpy; returns the face count."""
    i, j = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    theta = 2 * np.pi * j / cols
    z = i / (rows - 1) - 0.5
    v = np.stack([0.3 * np.cos(theta), 0.3 * np.sin(theta), z], -1).reshape(-1, 3).astype("<f4")
    a = (i * cols + j)[:-1]
    b = (i * cols + (j + 1) % cols)[:-1]
    c, d = a + cols, b + cols
    tri = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    faces = np.empty(len(tri), dtype=[("n", "u1"), ("v", "<i4", (3,))])
    faces["n"], faces["v"] = 3, tri
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(v)}\nproperty float x\n"
              f"property float y\nproperty float z\nelement face {len(faces)}\n"
              "property list uchar int vertex_indices\nend_header\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(header)
        f.write(v.tobytes())
        f.write(faces.tobytes())
    return len(faces)


def write_codes(path: Path, n: int = 16, dim: int = 8) -> Path:
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("zs", data=np.random.default_rng(0).uniform(size=(n, dim)).astype(np.float32))
    return path


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def cpu_ticks(pid: int) -> int:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])
    except (OSError, IndexError, ValueError):
        return -1


def busy_child(pid: int, timeout: float = 120) -> int:
    """A child of ``pid`` that is computing (its CPU time grows), once the parent has one."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for c in children(pid):
            t0 = cpu_ticks(c)
            time.sleep(0.3)
            if t0 >= 0 and cpu_ticks(c) > t0:
                return c
        time.sleep(0.05)
    raise AssertionError(f"no busy child of {pid} within {timeout} s")


def wait_for(pred, timeout: float = 120, what: str = "condition") -> None:
    deadline = time.time() + timeout
    while not pred():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative posix path → bytes; ``report.json``'s per-shape
    measurements reduced to the ids measured: seconds and memory differ from run to run)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            rel, data = p.relative_to(root).as_posix(), p.read_bytes()
            if rel.endswith("report.json"):
                try:
                    rep = json.loads(data)
                    rep["shapes"] = sorted(rep.get("shapes", {}))
                    data = json.dumps(rep, sort_keys=True).encode()
                except (ValueError, AttributeError):
                    pass
            out[rel] = data
    return out


def mount_tmpfs(path: Path, size: str, read_only: bool = False) -> bool:
    """Mount a tmpfs of ``size`` at ``path`` (root only); ``False`` when this machine refuses."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    opts = f"size={size}" + (",ro" if read_only else "")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True)
    return res.returncode == 0


def remount(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


class ReadOnlyDir:
    """A folder nobody can write to, even root: a read-only tmpfs (root), else ``chmod 555``
    (not root), else ``chattr +i``. Context manager; raises if this machine offers none."""

    def __init__(self, path: Path) -> None:
        self.path, self.how = path, None

    def __enter__(self) -> Path:
        if mount_tmpfs(self.path, "1m", read_only=True):
            self.how = "tmpfs"
        elif os.geteuid() != 0:
            self.path.chmod(0o555)
            self.how = "chmod"
        elif subprocess.run(["chattr", "+i", str(self.path)], capture_output=True).returncode == 0:
            self.how = "chattr"
        else:
            raise AssertionError("cannot make a read-only folder here (no mount, no chattr)")
        return self.path

    def __exit__(self, *exc) -> None:
        if self.how == "tmpfs":
            umount(self.path)
        elif self.how == "chmod":
            self.path.chmod(0o755)
        elif self.how == "chattr":
            subprocess.run(["chattr", "-i", str(self.path)], capture_output=True)

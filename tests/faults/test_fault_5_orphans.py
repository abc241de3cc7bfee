"""Issue 15, item 5: workers never outlive ``impax prepare`` — SIGKILL the parent and every worker
is gone within seconds, writing nothing more."""

from __future__ import annotations

import os
import signal
import time

from faults.faultlib import alive, busy_child, children, start, wait_for, write_meshes


def test_sigkill_of_prepare_leaves_no_worker(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    write_meshes(src, 8)
    proc = start("prepare", src, out, "--quick", "--fast-voxels", "--skip", "views", "--quiet", "--workers", "2")
    busy_child(proc.pid)  # the workers are computing
    workers = children(proc.pid)
    assert len(workers) == 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t0 = time.time()
    wait_for(lambda: not any(alive(w) for w in workers), timeout=10, what="the workers to die")
    gone_after = time.time() - t0
    written = sorted(p.name for p in (out / "shapes").glob("*")) if (out / "shapes").is_dir() else []
    time.sleep(1.5)
    assert (sorted(p.name for p in (out / "shapes").glob("*")) if (out / "shapes").is_dir() else []) == written
    assert gone_after < 10

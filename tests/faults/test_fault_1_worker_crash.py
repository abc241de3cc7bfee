"""Issue 15, item 1: a crashed worker fails only its own file (named); per-file limits on faces,
memory and time, with only the offending file refused."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from faults.faultlib import (QUICK, busy_child, impax, report, start, wait_for, write_big_sphere, write_huge_ply,
                             write_meshes)

from impax.data.store import ShapeStore


@pytest.mark.slow
def test_sigkill_of_a_worker_fails_only_its_file(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    write_meshes(src, 11)
    # depth images on: a few seconds per file, so a worker is caught mid-file
    proc = start("prepare", src, out, "--quick", "--fast-voxels", "--skip", "views", "--quiet", "--workers", "2")
    wait_for(lambda: len(list((out / "shapes").glob("*.h5"))) >= 1 or proc.poll() is not None, what="a record")
    victim = busy_child(proc.pid)
    os.kill(victim, signal.SIGKILL)  # as the OOM killer would
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 3, stderr
    rep = report(out)
    assert len(rep["failed"]) == 1 and rep["prepared"] == 10, rep
    failed = rep["failed"][0]
    assert f"pid {victim} killed by SIGKILL" in failed["reason"] and failed["path"].endswith(".ply")
    assert f"skipped {failed['path']}: worker crashed" in stderr
    assert len(ShapeStore(out).ids()) == 10
    # the file itself is fine: a rerun prepares it and the folder is complete
    rerun = impax("prepare", src, out, "--quick", "--fast-voxels", "--skip", "views", "--quiet", "--workers", "2")
    assert rerun.returncode == 0, rerun.stderr
    assert "1 prepared now, 10 already present" in rerun.stdout and report(out)["failed"] == []


def test_huge_mesh_is_refused_by_face_count_and_the_others_finish(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    write_meshes(src, 2)
    n = write_huge_ply(src / "huge" / "tube.ply")
    assert n >= 5_000_000
    t0 = time.perf_counter()
    res = impax("prepare", src, out, *QUICK, "--workers", "2", "--time-limit", "300", "--max-memory", "2")
    elapsed = time.perf_counter() - t0
    assert res.returncode == 3, res.stderr
    rep = report(out)
    assert rep["prepared"] == 2 and [f["path"] for f in rep["failed"]] == ["huge/tube.ply"]
    assert f"{n:,} faces, more than the limit of 2,000,000 (--max-faces)" in rep["failed"][0]["reason"]
    assert elapsed < 120, elapsed  # refused from its header: nothing of it was loaded
    # the cap can be raised or switched off (0): then the limits that remain apply
    assert "--max-faces N" in impax("prepare", "--help").stdout


@pytest.mark.slow
def test_memory_and_time_limits_fail_only_the_big_file(tmp_path):
    src = tmp_path / "src"
    write_meshes(src, 1)
    write_big_sphere(src / "big" / "sphere.ply")  # 327,680 faces: ~0.55 GB more address space, ~8 s
    mem = impax("prepare", src, tmp_path / "m", *QUICK, "--workers", "1", "--max-memory", "0.35")
    assert mem.returncode == 3, mem.stderr
    (failed,) = report(tmp_path / "m")["failed"]
    assert failed["path"] == "big/sphere.ply" and "memory" in failed["reason"], failed
    slow = impax("prepare", src, tmp_path / "t", *QUICK, "--workers", "1", "--max-memory", "0", "--time-limit", "2")
    assert slow.returncode == 3, slow.stderr
    (failed,) = report(tmp_path / "t")["failed"]
    assert failed["path"] == "big/sphere.ply" and "time limit of 2 s" in failed["reason"], failed
    assert json.loads((tmp_path / "t" / "index.json").read_text())["count"] == 1

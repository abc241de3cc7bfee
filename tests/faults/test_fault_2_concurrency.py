"""Issue 15, item 2: one writer per output folder (prepare OUT, training run), shards of one job
share a folder safely, and temp files are removed only when their owner is gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from faults.faultlib import GAN, QUICK, files, impax, one_line_error, start, wait_for, write_meshes

from impax.data.safety import FolderLock, FolderLocked, owner_tag, remove_stale_tmp


def _held(lock_file) -> bool:
    try:
        return "pid" in json.loads(lock_file.read_text() or "{}")
    except (OSError, ValueError):
        return False


@pytest.mark.slow
def test_second_prepare_is_refused_and_the_first_finishes(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    write_meshes(src, 4)
    first = start("prepare", src, out, "--quick", "--fast-voxels", "--skip", "views", "--quiet", "--workers", "1")
    wait_for(lambda: _held(out / ".impax.lock") or first.poll() is not None, what="the first run's lock")
    assert first.poll() is None, "the first run ended before the second could start"
    # Held still while the second one starts (a Python start can outlast 4 quick meshes on a busy
    # machine): a stopped process is a live owner, as a slow one is.
    os.kill(first.pid, signal.SIGSTOP)
    try:
        second = impax("prepare", src, out, "--quick", "--fast-voxels", "--skip", "views", "--quiet", "--workers", "1")
    finally:
        os.kill(first.pid, signal.SIGCONT)
    line = one_line_error(second)
    assert f"{out} is in use by another impax prepare (held by pid {first.pid}" in line
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err  # none of its temp files was taken away
    ref = tmp_path / "ref"
    assert impax("prepare", src, ref, "--quick", "--fast-voxels", "--skip", "views", "--quiet", "--workers", "1").returncode == 0
    assert files(out) == files(ref)


@pytest.mark.slow
def test_shards_share_a_folder_and_duplicates_are_refused(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    write_meshes(src, 16)
    args = ("--quick", "--fast-voxels", "--skip", "views", "--quiet", "--workers", "1")
    a = start("prepare", src, out, *args, "--shard", "0/2")
    b = start("prepare", src, out, *args, "--shard", "1/2")
    wait_for(lambda: (out / ".impax-shard-0-of-2.lock").exists() and (out / ".impax-shard-1-of-2.lock").exists()
             or a.poll() is not None or b.poll() is not None, what="both shards running")
    others = [start("prepare", src, out, *args, "--shard", "0/2"), start("prepare", src, out, *args),
              start("prepare", "--merge", out)]
    results = []
    for p in others:
        stdout, stderr = p.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    for res in results:
        one_line_error(res)
    dup, full, merge = (r.stderr for r in results)
    assert "another impax prepare --shard 0/2" in dup and "in use" in full and "in use" in merge
    for p in (a, b):
        p.communicate(timeout=600)
        assert p.returncode == 0
    # the shards were still running when the others were refused
    assert not (out / "index.json").exists()
    assert impax("prepare", "--merge", out).returncode == 0
    ref = tmp_path / "ref"
    assert impax("prepare", src, ref, *args[:-1], "2").returncode == 0
    assert files(out) == files(ref)  # sharded, concurrently, then merged == one run


def test_temp_files_are_removed_only_when_their_owner_is_gone(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        host = owner_tag().rsplit(".", 1)[0]
        mine = tmp_path / f"a.h5.{owner_tag()}.tmp"
        theirs = tmp_path / f"b.h5.{host}.{live.pid}.tmp"
        gone = tmp_path / f"c.h5.{host}.{dead.pid}.tmp"
        other_host = tmp_path / f"d.h5.elsewhere-host.{dead.pid}.tmp"
        for p in (mine, theirs, gone, other_host):
            p.write_bytes(b"x")
        assert remove_stale_tmp(tmp_path) == 1
        assert mine.exists() and theirs.exists() and other_host.exists() and not gone.exists()
        assert remove_stale_tmp(tmp_path, exclusive=True) == 3  # the holder of the exclusive lock
    finally:
        live.kill()
        live.wait()


def test_folder_lock_between_processes_and_reentrant_in_one(tmp_path):
    code = ("import sys, time; from impax.data.safety import FolderLock; "
            "l = FolderLock(sys.argv[1], what='test'); l.acquire(); print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderLocked, match=f"held by pid {holder.pid}"):
            FolderLock(tmp_path, what="test").acquire()
        holder.send_signal(signal.SIGKILL)  # the kernel drops a dead holder's lock
        holder.wait()
        with FolderLock(tmp_path) as lk, FolderLock(tmp_path):  # re-entrant within one process
            assert json.loads(lk.path.read_text())["pid"] == os.getpid()
        assert lk.path.read_text() == ""  # cleared on release
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_second_training_on_one_run_is_refused(tmp_path, codes):
    run = tmp_path / "run"
    first = start("train", "imnet-gan", "--data", codes, "--out", run, *GAN, "--max-steps", "100000")
    wait_for(lambda: (run / "metrics.jsonl").is_file() or first.poll() is not None, what="the first training")
    second = impax("train", "imnet-gan", "--data", codes, "--out", run, *GAN, "--max-steps", "100000")
    line = one_line_error(second)
    assert f"{run} is in use by another impax train (held by pid {first.pid}" in line
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=300)
    assert first.returncode == 130
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # one writer: no interleaved or repeated lines

"""Issue 15, item 3: a full disk (ENOSPC) or a file-size limit (EFBIG) stops ``impax prepare`` with
one line naming the path and exit status 1 — no segfault — and the records written before stay
intact, so a rerun with room resumes to the same bytes as an undisturbed run."""

from __future__ import annotations

import errno
import os
import subprocess

from faults.faultlib import (QUICK, cmd, env, files, impax, mount_tmpfs, one_line_error, remount, umount,
                             write_meshes)

from impax.data.store import ShapeStore, check_record


def _intact(out) -> int:
    n = 0
    for p in sorted((out / "shapes").glob("*.h5")):
        check_record(p, read_all=True)  # raises if any record is damaged
        n += 1
    assert not list((out / "shapes").glob("*.tmp"))
    return n


def test_full_disk_is_one_line_and_earlier_records_survive(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write_meshes(src, 6)
    ref = tmp_path / "ref"
    assert impax("prepare", src, ref, *QUICK, "--workers", "1").returncode == 0
    disk = tmp_path / "disk"
    if mount_tmpfs(disk, "700k"):  # a real full file system
        try:
            out = disk / "out"
            res = impax("prepare", src, out, *QUICK, "--workers", "1")
            line = one_line_error(res)
            assert f"cannot write {out}" in line and "no space left on device" in line, line
            done = _intact(out)
            assert 0 < done < 6
            remount(disk, "64m")
            rerun = impax("prepare", src, out, *QUICK, "--workers", "1")
            assert rerun.returncode == 0 and f"{done} already present" in rerun.stdout, rerun.stderr
            assert files(out) == files(ref)
        finally:
            umount(disk)
    else:  # no mount here (not root): the same error injected where the bytes are written
        _injected_enospc(src, tmp_path / "out", monkeypatch)


def _injected_enospc(src, out, monkeypatch) -> None:
    from impax.data import prepare as P
    from impax.data import safety

    real, calls = os.write, []

    def write(fd, data):
        calls.append(fd)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(safety.os, "write", write)
    try:
        P.prepare(src, out, P.PrepareConfig.quick(depth=False, views=False, voxels_256=False), workers=0, progress=False)
    except safety.WriteError as e:
        assert "no space left on device" in str(e) and str(out) in str(e)
    else:
        raise AssertionError("no WriteError")
    monkeypatch.undo()
    assert 0 < _intact(out) < 6


def test_file_size_limit_is_one_line(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    write_meshes(src, 2)
    # ulimit -f 200: no file above 200 KiB (a quick record is ~300 KiB): the kernel says EFBIG
    shell = " ".join(f"'{a}'" for a in cmd("prepare", src, out, *QUICK, "--workers", "1"))
    res = subprocess.run(["bash", "-c", f"ulimit -f 200; exec {shell}"], capture_output=True, text=True,
                         timeout=300, env=env())
    line = one_line_error(res)
    assert f"cannot write {out}" in line and "file too large" in line, line
    assert res.returncode != 139 and _intact(out) == 0
    assert ShapeStore(out).shapes_dir.is_dir()

"""The prepare job: bad inputs, SIGKILL + resume byte-identity, shards + merge, CLI exit codes."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from impax.data.pipeline import PrepareConfig
from impax.data.prepare import merge, prepare
from impax.data.store import ShapeStore

sys.path.insert(0, str(Path(__file__).parent))
from _meshes import BAD, all_files, write_bad, write_good  # noqa: E402

# Small sizes; rendering is exercised by the geometry tests, the data plumbing here.
CFG = PrepareConfig.quick(depth=False, views=False, voxels_256=False, n_uniform=1024, n_near=1024, n_surface=512, n_occupancy=512)
LDIF_ONLY = dataclasses.replace(CFG, imnet=False)


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("src")
    write_good(root)
    return root


def test_bad_inputs_are_reported_and_good_ones_complete(tmp_path, src):
    mixed = tmp_path / "mixed"
    for rel in ("chair/ball.ply", "chair/box.obj", "plane/torus.ply"):  # three good ones, IM-NET data on
        (mixed / rel).parent.mkdir(parents=True, exist_ok=True)
        (mixed / rel).write_bytes((src / rel).read_bytes())
    write_bad(mixed)
    out = tmp_path / "out"
    res = prepare(mixed, out, CFG, workers=2, progress=False)  # process pool path
    assert res.status == 3
    report = json.loads((out / "report.json").read_text())
    assert report["exit_code"] == 3 and report["prepared"] == 3 and report["total"] == 9
    reasons = {f["path"]: f["reason"] for f in report["failed"]}
    assert set(reasons) == set(BAD)
    for path, words in BAD.items():
        assert words in reasons[path], (path, reasons[path])
    # per-shape measurements: wall seconds and the worker's peak resident memory, for good shapes only
    assert set(report["shapes"]) == {"chair_ball", "chair_box", "plane_torus"}
    for st in report["shapes"].values():
        assert st["seconds"] > 0 and 50 < st["peak_rss_mb"] < 100_000
    # a rerun prepares nothing and keeps the earlier measurements
    again = prepare(mixed, out, CFG, workers=2, progress=False)
    assert again.prepared == 0
    assert json.loads((out / "report.json").read_text())["shapes"] == report["shapes"]
    failed_txt = (out / "failed.txt").read_text().splitlines()
    assert sorted(line.split(":")[0] for line in failed_txt) == sorted(BAD)
    store = ShapeStore(out)
    assert store.ids() == ["chair_ball", "chair_box", "plane_torus"]
    for sid in store.ids():
        with store.open(sid) as f:
            assert f["uniform_points"].shape == (1024, 3) and f["near_sdf"].shape == (1024,)
            assert f["surface_normals"].shape == (512, 3) and f["sdf_grid"].shape == (16, 16, 16)
            assert f["voxels"].shape == (64, 64, 64) and f["points_64"].shape == (16384, 3)
            assert f["values_16"].shape == (4096, 1) and f["occ_values"].shape == (512,)
            # occupancy labels agree with the sdf sign, and the shape has an inside
            occ, sdf = f["uniform_occupancy"][()], f["uniform_sdf"][()]
            np.testing.assert_array_equal(occ == 1, sdf < 0)
            assert 0 < occ.mean() < 1 and 0 < f["voxels"][()].mean() < 1
    # signed distances, mapped back to the original frame, match the box's closed-form SDF
    a = store.attrs("chair_box")
    assert a["class"] == "chair" and a["source"] == "chair/box.obj" and a["split"] in ("train", "val", "test")
    t = a["gaps_transform"]
    for name in ("uniform", "near"):
        pts = t.inverse().apply(store.read("chair_box", f"{name}_points").astype(np.float64))
        q = np.abs(pts) - np.array([0.5, 0.3, 0.2])
        ref = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)
        np.testing.assert_allclose(store.read("chair_box", f"{name}_sdf") / t.scale, ref, atol=1e-4)


def test_nothing_usable_gives_exit_1(tmp_path):
    write_bad(tmp_path / "src")
    res = prepare(tmp_path / "src", tmp_path / "out", LDIF_ONLY, workers=1, progress=False)
    assert res.status == 1 and len(res.failures) == len(BAD)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "impax", "prepare", *args]


def test_sigkill_then_rerun_is_byte_identical(tmp_path, src):
    small = tmp_path / "small"  # the four quickest shapes, IM-NET data included
    for rel in ("chair/ball.ply", "chair/box.obj", "plane/torus.ply", "table/caps.stl"):
        (small / rel).parent.mkdir(parents=True, exist_ok=True)
        (small / rel).write_bytes((src / rel).read_bytes())
    src = small
    ref = tmp_path / "ref"
    prepare(src, ref, dataclasses.replace(PrepareConfig.quick(), depth=False, views=False, voxels_256=False), workers=1, progress=False)
    out = tmp_path / "out"
    cmd = _cli(str(src), str(out), "--quick", "--fast-voxels", "--skip", "depth,views", "--workers", "1", "--quiet")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not list((out / "shapes").glob("*.h5")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_done = len(list((out / "shapes").glob("*.h5")))
    assert 1 <= n_done < 4, f"the kill should land mid-way ({n_done} of 4 done)"
    assert not (out / "index.json").exists()
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{n_done} already present" in rerun.stdout
    got, want = all_files(out), all_files(ref)
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name] == want[name], f"{name} differs"


def test_records_whose_measurements_were_lost_are_still_listed(tmp_path, src):
    """A kill between a record's rename and its journal line (the window
    test_sigkill_then_rerun_is_byte_identical can land in) leaves a record with no measurements; the
    rerun's report.json must still list every prepared shape."""
    out = tmp_path / "out"
    assert prepare(src, out, LDIF_ONLY, workers=1, progress=False).status == 0
    ids = sorted(json.loads((out / "report.json").read_text())["shapes"])
    assert len(ids) == len(list((out / "shapes").glob("*.h5")))
    (out / "report.json").unlink()  # the measurements of the earlier run are gone
    (out / "index.json").unlink()
    assert prepare(src, out, LDIF_ONLY, workers=1, progress=False).status == 0
    rep = json.loads((out / "report.json").read_text())
    assert sorted(rep["shapes"]) == ids and rep["prepared"] == len(ids)
    assert all(v == {} for v in rep["shapes"].values())


def test_three_shards_merged_equal_single_run(tmp_path, src):
    write_bad(tmp_path / "mixed")
    for p in src.rglob("*.*"):
        (tmp_path / "mixed" / p.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "mixed" / p.relative_to(src)).write_bytes(p.read_bytes())
    single = tmp_path / "single"
    assert prepare(tmp_path / "mixed", single, LDIF_ONLY, workers=1, progress=False).status == 3
    sharded = tmp_path / "sharded"
    sizes = []
    for i in range(3):
        r = prepare(tmp_path / "mixed", sharded, LDIF_ONLY, workers=1, shard=(i, 3), progress=False)
        sizes.append(r.total)
        assert not (sharded / "index.json").exists()
    assert sum(sizes) == 12 and max(sizes) < 12  # a partition, not three copies
    # via the CLI, as a user would
    done = subprocess.run(_cli("--merge", str(sharded)), capture_output=True, text=True, timeout=120,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert done.returncode == 3, done.stderr
    a, b = all_files(single), all_files(sharded)
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name] == b[name], f"{name} differs"
    # merge is idempotent
    assert merge(sharded).status == 3 and all_files(sharded) == b


def test_rerun_with_other_settings_is_refused(tmp_path, src):
    out = tmp_path / "out"
    one = tmp_path / "one"
    (one / "c").mkdir(parents=True)
    (one / "c" / "m.ply").write_bytes((src / "chair" / "ball.ply").read_bytes())
    assert prepare(one, out, LDIF_ONLY, workers=1, progress=False).status == 0
    with h5py.File(out / "shapes" / "c_m.h5", "r") as f:
        assert "voxels" not in f and f["uniform_points"].shape == (1024, 3)
    with pytest.raises(ValueError, match="other settings"):
        prepare(one, out, CFG, workers=1, progress=False)

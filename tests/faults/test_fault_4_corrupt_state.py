"""Issue 15, item 4: damaged saved state is named and skipped or repaired, never a traceback: a
truncated checkpoint file, a truncated or altered record, a truncated index.json or IM-NET HDF5."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from faults.faultlib import GAN, QUICK, files, impax, one_line_error

from impax.data.loader import StoreLoader
from impax.data.store import ShapeStore


def _truncate_largest(folder, size: int = 100):
    f = max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    with open(f, "r+b") as fh:
        fh.truncate(size)
    return f


def _gan_state(run):
    from flax import nnx

    from impax.inference.imnet_gan import load_gan
    from impax.train.checkpoint import named_leaves

    model, _, _ = load_gan(run)
    return {k: np.asarray(v) for k, v in named_leaves(nnx.state(model)).items()}


@pytest.mark.slow
def test_truncated_checkpoint_falls_back_to_the_newest_good_one(tmp_path, codes, capsys):
    run, ref = tmp_path / "run", tmp_path / "ref"
    assert impax("train", "imnet-gan", "--data", codes, "--out", run, *GAN, "--max-steps", "10").returncode == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["10", "5"]
    _truncate_largest(run / "checkpoints" / "10" / "model")
    # inference: a warning naming the bad checkpoint, the model of step 5, nothing moved
    state5 = _gan_state(run)
    err = capsys.readouterr().err
    assert f"checkpoint {run / 'checkpoints' / '10'} cannot be restored" in err and "using step 5" in err
    assert (run / "checkpoints" / "10").is_dir()
    # training: the same warning, the bad one moved aside, resumed from 5 exactly
    res = impax("train", "imnet-gan", "--data", codes, "--out", run, *GAN, "--max-steps", "15")
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert f"checkpoint {run / 'checkpoints' / '10'} cannot be restored" in res.stderr
    assert f"moved to {run / 'checkpoints.bad' / '10'}; resuming from step 5" in res.stderr
    assert impax("train", "imnet-gan", "--data", codes, "--out", ref, *GAN, "--max-steps", "15").returncode == 0
    got, want = _gan_state(run), _gan_state(ref)
    assert set(got) == set(want) and all(np.array_equal(got[k], want[k]) for k in want)
    assert not all(np.array_equal(got[k], state5[k]) for k in want)
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15]
    # every checkpoint damaged: one line naming them, nothing moved
    for step in ("10", "15"):
        _truncate_largest(run / "checkpoints" / step / "model")
    res = impax("train", "imnet-gan", "--data", codes, "--out", run, *GAN, "--max-steps", "20")
    line = one_line_error(res)
    assert f"no checkpoint under {run / 'checkpoints'} can be restored" in line
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["10", "15"]


def test_truncated_and_altered_records_are_named_skipped_and_prepared_again(tmp_path, mesh_src, store, capsys):
    out = tmp_path / "D"
    shutil.copytree(store, out)
    ids = ShapeStore(out).ids()
    short, flipped = ShapeStore(out).path(ids[0]), ShapeStore(out).path(ids[1])
    with open(short, "r+b") as f:
        f.truncate(short.stat().st_size // 2)
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    # a loader leaves the truncated record out, with a warning naming it
    loader = StoreLoader(out, batch_size=1, arrays=("voxels",), cache_mb=0, shuffle=False)
    assert loader.ids == ids and list(loader.usable) == list(range(1, len(ids))) and len(loader) == len(ids) - 1
    assert [int(b["shape_index"][0]) for b in loader.iterate(0, start=1)] == list(range(2, len(ids)))
    assert str(short) in capsys.readouterr().err
    # a rerun names both, prepares them again and ends with the bytes of the undisturbed run
    res = impax("prepare", mesh_src, out, *QUICK, "--workers", "2")
    assert res.returncode == 0, res.stderr
    assert f"warning: {short}: corrupt record" in res.stderr and f"warning: {flipped}: corrupt record" in res.stderr
    assert "2 prepared now" in res.stdout
    assert files(out) == files(store)


def test_truncated_index_is_one_line_and_merge_rebuilds_it(tmp_path, store):
    out = tmp_path / "D"
    shutil.copytree(store, out)
    index = out / "index.json"
    index.write_bytes(index.read_bytes()[:200])
    res = impax("train", "imnet-ae", "--data", out, "--out", tmp_path / "run")
    line = one_line_error(res)
    assert f"{index}: corrupt index" in line and "impax prepare --merge" in line
    assert not (tmp_path / "run").exists()
    assert impax("prepare", "--merge", out).returncode == 0
    assert index.read_bytes() == (store / "index.json").read_bytes()


def test_truncated_imnet_hdf5_is_one_line(tmp_path, mesh_src):
    out = tmp_path / "D"
    assert impax("prepare", mesh_src, out, *QUICK, "--export-imnet", "train").returncode in (0, 3)
    h5 = next((out / "imnet").glob("*.hdf5"))
    with open(h5, "r+b") as f:
        f.truncate(h5.stat().st_size // 3)
    res = impax("train", "imnet-ae", "--data", h5, "--out", tmp_path / "run")
    line = one_line_error(res)
    assert str(h5) in line and "truncated or corrupt" in line

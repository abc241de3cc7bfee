"""Issue 15, item 7: settings are validated before anything is written, so a typo'd command
leaves nothing that would refuse the corrected one."""

from __future__ import annotations

import json

import pytest
from faults.faultlib import GAN, QUICK, impax, one_line_error


def test_prepare_typo_then_corrected(tmp_path, mesh_src):
    out = tmp_path / "out"
    for typo in (["--split-fractions", "1,2"], ["--split-list", f"train={tmp_path / 'missing.lst'}"],
                 ["--shard", "2/2"], ["--skip", "voxel"]):
        one_line_error(impax("prepare", mesh_src, out, *QUICK, *typo))
        assert not out.exists(), typo
    res = impax("prepare", mesh_src, out, *QUICK, "--split-fractions", "1,0,0")
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "prepare.json").read_text())["split"] == {"fractions": [1.0, 0.0, 0.0]}


@pytest.mark.slow
def test_train_failed_first_start_then_corrected(tmp_path, codes, store):
    run = tmp_path / "run"
    # fails inside training, after run.json was written: the start is rolled back
    line = one_line_error(impax("train", "imnet-gan", "--data", codes, "--out", run, *GAN,
                                "--set", "train.num_devices=4", "--max-steps", "5"))
    assert "4 devices" in line
    assert not run.exists()
    # too few shapes for one batch (cpu preset: 4 per batch; the store's train split has fewer)
    line = one_line_error(impax("train", "imnet-ae", "--data", store, "--out", run, "--max-steps", "1"))
    assert "cannot fill one batch" in line and not run.exists()
    # an existing folder keeps what it had; only what the failed start added goes
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    one_line_error(impax("train", "imnet-gan", "--data", codes, "--out", run, *GAN, "--set", "train.num_devices=4"))
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == ["notes.txt"]
    # the corrected command (another batch size: a setting a resume may not change) starts cleanly
    res = impax("train", "imnet-gan", "--data", codes, "--out", run, *GAN, "--set", "batch_size=8", "--max-steps", "5")
    assert res.returncode == 0, res.stderr
    assert json.loads((run / "run.json").read_text())["config"]["batch_size"] == 8

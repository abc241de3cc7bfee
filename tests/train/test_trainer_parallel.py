"""Data parallelism of impax.train.fit: 4 forced CPU devices give the 1-device parameters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from impax.train import DataParallel

SCRIPT = Path(__file__).with_name("tiny_run.py")


def _launch(run_dir: Path, out: Path, devices: int) -> subprocess.Popen:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    if devices > 1:  # must be set before jax starts in the child
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    args = [sys.executable, str(SCRIPT), str(run_dir), "--out", str(out), "--epochs", "2", "1",
            "--devices", str(devices)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            text=True)


def test_four_devices_match_one_device(tmp_path):
    procs = {n: _launch(tmp_path / f"run{n}", tmp_path / f"p{n}.npz", n) for n in (1, 4)}
    for n, p in procs.items():
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, f"{n} devices:\n{out}"
    info1 = json.loads((tmp_path / "p1.json").read_text())
    info4 = json.loads((tmp_path / "p4.json").read_text())
    assert info1["jax_devices"] == 1 and info1["num_devices"] == 1
    assert info4["jax_devices"] == 4 and info4["num_devices"] == 4
    assert info4["batch_shard_rows"] == [2, 2, 2, 2]  # global batch 8 split over the data axis
    assert info4["params_replicated"] and info4["params_devices"] == 4
    assert info1["global_step"] == info4["global_step"] == 18

    a, b = dict(np.load(tmp_path / "p1.npz")), dict(np.load(tmp_path / "p4.npz"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=0, atol=1e-5, err_msg=k)
    # Training moved the parameters far more than the tolerance (the check can fail).
    init = _initial_params()
    assert max(float(np.max(np.abs(a[k] - init[k]))) for k in a) > 1e-2


def _initial_params() -> dict:
    import tiny_run

    return tiny_run.params_of(tiny_run.make_model())


def test_one_device_has_no_mesh():
    import jax

    dp = DataParallel(1)
    assert dp.mesh is None and dp.num_devices == 1
    batch = dp.put_batch({"x": np.ones((3, 2), np.float32)})  # any batch size
    assert batch["x"].shape == (3, 2)
    n = len(jax.local_devices())
    with pytest.raises(ValueError, match=f"asked for {n + 1} devices but only {n}"):
        DataParallel(n + 1)

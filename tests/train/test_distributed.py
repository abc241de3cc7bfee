"""Multi-process training (issue 8, acceptance 2).

Two processes joined by ``jax.distributed.initialize`` (localhost coordinator, gloo CPU
collectives) train one model together and end with the parameters of a single-process run of the
same global batch and seed. On the way they stop at ``max_steps``, write a multi-host checkpoint,
and a second pair with another device layout restores it and finishes, so saving and restoring
from several hosts is part of the check. Also: the flag/environment handling of
:mod:`impax.train.distributed` and of ``impax train``.

Precision: the equalities here assume exact float32 and deterministic kernels, i.e. the CPU backend
tests/conftest.py pins; on a GPU run with JAX_DEFAULT_MATMUL_PRECISION=highest and
XLA_FLAGS=--xla_gpu_deterministic_ops=true (docs/gpu.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from impax.train.distributed import (DistributedSpec, initialize, local_part, process_rows,
                                     spec_from)

SCRIPT = Path(__file__).with_name("tiny_run.py")
TIMEOUT_S = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], devices: int) -> subprocess.Popen:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    for k in ("XLA_FLAGS", "IMPAX_COORDINATOR", "IMPAX_NUM_PROCESSES", "IMPAX_PROCESS_ID"):
        env.pop(k, None)
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return subprocess.Popen([sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, text=True, start_new_session=True)


def _finish(procs: dict[str, subprocess.Popen]) -> None:
    """Wait for all (bounded); on any failure or timeout kill every process group."""
    deadline = time.monotonic() + TIMEOUT_S
    try:
        for name, p in procs.items():
            out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert p.returncode == 0, f"{name} failed:\n{out[-4000:]}"
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def _pair(run: Path, out: Path, devices: int, extra: list[str]) -> dict[str, subprocess.Popen]:
    coord = f"127.0.0.1:{_free_port()}"
    return {f"process {i}": _start([str(run), "--out", str(out / f"p{i}.npz"), "--epochs", "2", "1",
                                    "--coordinator", coord, "--num-processes", "2",
                                    "--process-id", str(i), *extra], devices)
            for i in range(2)}


def _steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_train_like_one(tmp_path):
    ref = _start([str(tmp_path / "ref"), "--out", str(tmp_path / "ref.npz"), "--epochs", "2", "1",
                  "--devices", "1"], 1)
    first = tmp_path / "first"
    first.mkdir()
    # 2 processes x 2 devices = a 4-device mesh; stop at step 8 with a checkpoint
    _finish({"reference": ref, **_pair(tmp_path / "run", first, 2,
                                       ["--max-steps", "8", "--tensorboard"])})
    infos = [json.loads((first / f"p{i}.json").read_text()) for i in range(2)]
    for i, info in enumerate(infos):
        assert info["process_index"] == i and info["process_count"] == 2
        assert info["global_devices"] == 4 and info["local_devices"] == 2
        assert info["num_devices"] == 4 and info["num_processes"] == 2
        assert info["stopped"] == "max_steps" and info["global_step"] == 8
        assert info["checkpoint_step"] == 8
    # both processes computed the same logged numbers; process 0 alone wrote them, once
    assert infos[0]["metrics"]["loss"] == infos[1]["metrics"]["loss"]
    assert _steps(tmp_path / "run") == [2, 4, 6, 8]
    assert any((tmp_path / "run" / "tb").iterdir())
    assert sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir()) == [4, 8]

    # a new pair (1 device each: a 2-device mesh) restores step 8 and finishes the run
    second = tmp_path / "second"
    second.mkdir()
    _finish(_pair(tmp_path / "run", second, 1, []))
    ref_params = dict(np.load(tmp_path / "ref.npz"))
    got = [dict(np.load(second / f"p{i}.npz")) for i in range(2)]
    for i in range(2):
        info = json.loads((second / f"p{i}.json").read_text())
        assert info["stopped"] == "done" and info["global_step"] == 18
        assert info["num_devices"] == 2
        assert got[i].keys() == ref_params.keys()
        for k in ref_params:
            np.testing.assert_allclose(got[i][k], ref_params[k], rtol=0, atol=1e-5,
                                       err_msg=f"process {i}: {k}")
            np.testing.assert_array_equal(got[i][k], got[0][k])  # replicated, bit-identical
    assert _steps(tmp_path / "run") == _steps(tmp_path / "ref") == list(range(2, 19, 2))
    import tiny_run

    init = tiny_run.params_of(tiny_run.make_model())
    assert max(float(np.max(np.abs(ref_params[k] - init[k]))) for k in init) > 1e-2


def test_spec_from_flags_and_environment():
    env = {"IMPAX_COORDINATOR": "node0:1234", "IMPAX_NUM_PROCESSES": "4", "IMPAX_PROCESS_ID": "3"}
    assert spec_from(env=env) == DistributedSpec("node0:1234", 4, 3)
    # flags win over the environment, field by field
    assert spec_from(process_id=1, env=env) == DistributedSpec("node0:1234", 4, 1)
    assert spec_from(env={}).enabled is False
    assert spec_from(auto=True, env={}) == DistributedSpec(auto=True)
    assert spec_from(auto=True, env=env).auto is False  # explicit settings beat auto-detection
    ids = spec_from(env={**env, "IMPAX_LOCAL_DEVICE_IDS": "0,2"})
    assert ids.local_device_ids == (0, 2)
    with pytest.raises(ValueError, match="all of coordinator"):
        spec_from(coordinator="node0:1234", env={})
    with pytest.raises(ValueError, match=r"process_id must be in \[0, 4\)"):
        spec_from(env={**env, "IMPAX_PROCESS_ID": "4"})
    with pytest.raises(ValueError, match="HOST:PORT"):
        DistributedSpec("node0", 2, 0)
    with pytest.raises(ValueError, match="IMPAX_NUM_PROCESSES must be an integer"):
        spec_from(env={**env, "IMPAX_NUM_PROCESSES": "two"})
    # a disabled spec leaves this (single) process alone
    import jax

    n = jax.local_device_count()
    assert initialize(DistributedSpec()) == {"process_index": 0, "process_count": 1,
                                             "local_devices": n, "global_devices": n}


def test_process_rows_partition_the_global_batch():
    batch = {"x": np.arange(24).reshape(12, 2), "y": np.arange(12.0)}
    parts = [local_part(batch, i, 3) for i in range(3)]
    for k in batch:  # contiguous blocks, in process order, covering every row once
        np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), batch[k])
        assert all(len(p[k]) == 4 for p in parts)
    assert process_rows(12, 2, 3) == slice(8, 12)
    with pytest.raises(ValueError, match="multiple of the process count"):
        process_rows(8, 0, 3)


def test_train_command_flags():
    from impax.commands import train

    parser = argparse.ArgumentParser()
    train.register(parser.add_subparsers())
    base = ["train", "imnet-ae", "--data", "d", "--out", "o"]
    args = parser.parse_args(base + ["--coordinator", "10.0.0.1:8476", "--num-processes", "2",
                                     "--process-id", "1"])
    assert train.distributed_spec(args) == DistributedSpec("10.0.0.1:8476", 2, 1)
    args = parser.parse_args(base + ["--distributed"])
    assert train.distributed_spec(args).auto
    args = parser.parse_args(base + ["--num-processes", "2"])
    with pytest.raises(SystemExit, match="all of coordinator"):
        train.distributed_spec(args)

"""``scripts/gpu-check.sh``: what a person with one GPU runs. Its ``--cpu-smoke`` mode runs every
Python part on the CPU with tiny sizes (no install), with and without a prepared store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

SCRIPT = REPO / "scripts" / "gpu-check.sh"


def _run(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_usage_and_the_table():
    p = _run("--help")
    assert p.returncode == 0 and "--cpu-smoke" in p.stdout and "--store PREPARED" in p.stdout
    p = _run("--bogus")
    assert p.returncode == 2 and "unknown argument --bogus" in p.stderr
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(REPO / "scripts"))
    text = gpu_check.table([
        {"name": "step", "steps_per_s": 2.0, "ms_per_step": 500.0, "shapes": 24, "gpu_util_pct": 87.4,
         "gpu_mem_mib": 1024.0, "peak_device_mib": None, "warmup_s": 30.0},
        {"name": "step loader", "note": "ValueError: no store"}])
    lines = text.splitlines()
    assert lines[0].split(" | ")[:3] == ["workload   ", "steps/s", "ms/step"]
    assert lines[2].split(" | ")[1:5] == ["2.00   ", "500.0  ", "48.0    ", "87        "]
    assert lines[3].endswith("ValueError: no store")


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> Path:
    from impax.data.pipeline import PrepareConfig
    from impax.data.prepare import prepare
    from impax.geometry.shapes import generate

    root = tmp_path_factory.mktemp("gpu_check")
    generate(root / "shapes", 2, seed=0)
    res = prepare(root / "shapes", root / "data", PrepareConfig.quick(), workers=1,
                  split_fractions=(1.0, 0.0, 0.0), progress=False)
    assert res.ok == 2
    return root / "data"


@pytest.mark.slow
def test_cpu_smoke_runs_every_part_with_and_without_the_loaders(tiny_store, tmp_path):
    out = tmp_path / "gpu-check.json"
    p = _run("--cpu-smoke", "--store", str(tiny_store), "--json", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    text = p.stdout
    assert "== impax info" in text and "fast_encoder=auto: s2d" in text
    assert "precision  default: max |s2d - conv|" in text and "ok (<= 1e-5)" in text
    res = json.loads(out.read_text())
    assert [r["precision"] for r in res["encoder"]] == ["default", "highest"]
    assert all(r["max_abs_diff"] <= 1e-5 for r in res["encoder"])  # exact float32 on CPU
    rows = {r["name"]: r for r in res["steps"]}
    want = ["imnet-ae quick (smoke) fast_encoder=auto synthetic", "imnet-ae quick (smoke) fast_encoder=conv synthetic",
            "imnet-ae quick (smoke) fast_encoder=auto loader", "ldif quick (smoke) synthetic", "ldif quick (smoke) loader"]
    assert list(rows) == want
    for name in want:
        assert rows[name]["steps_per_s"] > 0 and "note" not in rows[name], rows[name]
        assert name in text

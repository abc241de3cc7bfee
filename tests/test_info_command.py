"""``impax info``: versions, backend, devices, precision and the platform choices, as text and JSON."""

from __future__ import annotations

import json

from impax.cli import main
from impax.commands import info as I
from impax.models import platform


def test_info_prints_versions_devices_precision_and_the_encoder_auto_resolves_to(capsys, monkeypatch):
    import jax

    monkeypatch.delenv("JAX_DEFAULT_MATMUL_PRECISION", raising=False)
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("impax ") and f"jax {jax.__version__}" in text and "flax " in text
    assert "backend: cpu" in text and "devices: 1 x cpu (cpu)" in text
    assert "memory: not reported by this backend" in text
    assert "float32 matmul precision: default  (exact float32 on CPU)" in text
    assert "fast_encoder=auto: s2d" in text and "query batch: 32768 points" in text
    assert "TF32" not in text  # CPU

    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["backend"] == "cpu" and data["device_count"] == len(jax.devices())
    assert data["encoder_auto"] == "s2d" and data["ldif_masks"] == "host" and data["tf32_note"] is None
    assert set(data["versions"]) == {"impax", "jax", "jaxlib", "flax"} and all(data["versions"].values())

    with jax.default_matmul_precision("highest"):
        assert platform.matmul_precision() == "highest"
        assert I.describe()["matmul_precision"] == "highest"


def test_info_on_a_gpu_names_tf32_and_device_memory():
    assert platform.tf32_possible("gpu", "default") and platform.tf32_possible("cuda", "tensorfloat32")
    assert not platform.tf32_possible("gpu", "highest") and not platform.tf32_possible("cpu", "default")
    gpu = {"versions": {"impax": "0.1.0", "jax": "0.10.2", "jaxlib": "0.10.2", "flax": "0.12.8"},
           "backend": "gpu", "process": {"index": 0, "count": 1}, "device_count": 1,
           "device_kinds": {"NVIDIA H100 (gpu)": 1},
           "devices": [{"id": 0, "platform": "gpu", "kind": "NVIDIA H100", "process": 0,
                        "memory": {"bytes_limit": 80 * 2 ** 30, "bytes_in_use": 2 ** 29}}],
           "matmul_precision": "default", "tf32_note": platform.TF32_NOTE, "encoder_auto": "conv",
           "query_batch": platform.query_batch("gpu"), "ldif_masks": "device"}
    text = I.format_text(gpu)
    assert "devices: 1 x NVIDIA H100 (gpu)" in text
    assert "device 0 (NVIDIA H100): limit 80.0 GiB, in use 0.5 GiB" in text
    assert "TF32 may be used for float32 matmuls on NVIDIA GPUs unless JAX_DEFAULT_MATMUL_PRECISION=highest" in text
    assert "fast_encoder=auto: conv - nnx.Conv" in text and "masks on the device" in text

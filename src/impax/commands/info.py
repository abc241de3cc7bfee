"""``impax info``: what impax would run on here.

    impax info [--json]

Prints the versions of impax, jax, jaxlib and flax; JAX's backend and its devices (kind, count,
memory where the backend reports it); the float32 matmul precision in effect (on a GPU, TF32 may
be used unless ``JAX_DEFAULT_MATMUL_PRECISION=highest``: docs/gpu.md); and the platform choices
impax makes (:mod:`impax.models.platform`): the IM-NET encoder path ``fast_encoder="auto"``
resolves to, the query batch of the mesh extractors and where the sparse LDIF query keeps its masks.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="show versions, JAX backend and devices, precision and platform choices",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", default=False,
                   help="print one JSON object instead of text (default: text)")
    p.set_defaults(func=_run)


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _memory(device: Any) -> dict[str, int] | None:
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory statistics raise various errors
        return None
    if not stats:
        return None
    keys = ("bytes_limit", "bytes_in_use", "peak_bytes_in_use")
    return {k: int(stats[k]) for k in keys if k in stats} or None


def describe() -> dict[str, Any]:
    """Everything ``impax info`` prints, as JSON data."""
    import jax

    import impax
    from impax.models import platform
    from impax.models.imnet_s2d import resolve_encoder

    backend = jax.default_backend()
    devices = []
    for d in jax.devices():
        devices.append({"id": int(d.id), "platform": d.platform, "kind": d.device_kind,
                        "process": int(d.process_index), "memory": _memory(d)})
    groups: dict[str, int] = {}
    for d in devices:
        groups[f"{d['kind']} ({d['platform']})"] = groups.get(f"{d['kind']} ({d['platform']})", 0) + 1
    precision = platform.matmul_precision()
    return {
        "versions": {"impax": impax.__version__, "jax": _version("jax") or jax.__version__,
                     "jaxlib": _version("jaxlib"), "flax": _version("flax")},
        "backend": backend,
        "process": {"index": jax.process_index(), "count": jax.process_count()},
        "device_count": len(devices),
        "device_kinds": groups,
        "devices": devices,
        "matmul_precision": precision,
        "tf32_note": platform.TF32_NOTE if platform.tf32_possible(backend, precision) else None,
        "encoder_auto": resolve_encoder("auto"),
        "query_batch": platform.query_batch(),
        "ldif_masks": "device" if platform.device_masks() else "host",
    }


def _gib(n: int) -> str:
    return f"{n / 2 ** 30:.1f} GiB"


def format_text(info: dict[str, Any]) -> str:
    v = info["versions"]
    lines = [f"impax {v['impax']}  (jax {v['jax']}, jaxlib {v['jaxlib']}, flax {v['flax']})",
             f"backend: {info['backend']}  (process {info['process']['index']} of {info['process']['count']})",
             "devices: " + ", ".join(f"{n} x {k}" for k, n in info["device_kinds"].items())]
    for d in info["devices"]:
        m = d["memory"]
        if m:
            parts = [f"{k.replace('bytes_', '').replace('_', ' ')} {_gib(b)}" for k, b in m.items()]
            lines.append(f"  device {d['id']} ({d['kind']}): " + ", ".join(parts))
    if not any(d["memory"] for d in info["devices"]):
        lines.append("  memory: not reported by this backend")
    lines.append(f"float32 matmul precision: {info['matmul_precision']}"
                 + ("  (exact float32 on CPU)" if info["backend"] == "cpu" and info["matmul_precision"] == "default"
                    else ""))
    if info["tf32_note"]:
        lines.append(info["tf32_note"])
    names = {"s2d": "space-to-depth (CPU-fast form)", "conv": "nnx.Conv (cuDNN on GPU)"}
    lines.append(f"IM-NET encoder, fast_encoder=auto: {info['encoder_auto']} - {names[info['encoder_auto']]}")
    lines.append(f"query batch: {info['query_batch']} points; sparse LDIF query masks on the {info['ldif_masks']}")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    import json

    info = describe()
    print(json.dumps(info, indent=2, sort_keys=True) if args.json else format_text(info))
    return 0

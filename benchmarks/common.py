"""Measurement helpers shared by every benchmark workload.

Every figure is reported next to the machine's own ceiling measured in the same run: a large
float32 matrix multiply with JAX on the same device ("matmul peak"). Absolute times on shared
machines are noisy; ratios measured in one run are not.
"""

from __future__ import annotations

import dataclasses
import resource
import time
from collections.abc import Callable
from typing import Any

_COMPILES = [0]
_LISTENING = [False]


def _install_compile_listener() -> None:
    if _LISTENING[0]:
        return
    from jax import monitoring

    def _on_event(name: str, _dur: float, **_kw: Any) -> None:
        if name == "/jax/core/compile/backend_compile_duration":
            _COMPILES[0] += 1

    monitoring.register_event_duration_secs_listener(_on_event)
    _LISTENING[0] = True


def compile_count() -> int:
    """Number of XLA backend compilations so far in this process."""
    _install_compile_listener()
    return _COMPILES[0]


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclasses.dataclass
class Result:
    """One row of the benchmark table."""

    name: str
    throughput: float  # items per second
    unit: str  # what an item is ("points", "shapes x points", ...)
    seconds: float  # seconds per timed call
    flops: float | None = None  # FLOP per timed call, if meaningful
    steady_compiles: int = 0  # compilations during the timed (steady-state) calls
    peak_rss_mib: float = 0.0
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    device_peak_mib: float | None = None  # peak device memory where the backend reports it (GPU/TPU)

    def gflops(self) -> float | None:
        return None if self.flops is None else self.flops / self.seconds / 1e9


def device_peak_mib() -> float | None:
    """Peak memory in use on JAX's first device so far, MiB — ``None`` where the backend keeps no
    statistics (the CPU backend: its memory is the process's RSS)."""
    import jax

    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - backends without statistics raise various errors
        return None
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return stats["peak_bytes_in_use"] / 2 ** 20


def time_call(fn: Callable[[], Any], *, warmup: int = 1, repeat: int = 3, min_time: float = 0.0) -> float:
    """Best-of-``repeat`` seconds per call of ``fn`` (which must block until its result is ready)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeat):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            el = time.perf_counter() - t0
            if el >= min_time:
                break
        best = min(best, el / n)
    return best


def measure(name: str, fn: Callable[[], Any], *, items: float, unit: str, flops: float | None = None,
            warmup: int = 1, repeat: int = 3, min_time: float = 0.0, **extra: Any) -> Result:
    """Warm ``fn`` up, then time it and count compilations during the timed calls."""
    for _ in range(warmup):
        fn()
    c0 = compile_count()
    sec = time_call(fn, warmup=0, repeat=repeat, min_time=min_time)
    return Result(name, items / sec, unit, sec, flops, compile_count() - c0, peak_rss_mib(), dict(extra))


def matmul_peak(n: int = 2048, repeat: int = 5) -> Result:
    """Float32 GEMM throughput of JAX on the default device: the ceiling every ratio refers to."""
    import jax
    import jax.numpy as jnp

    k1, k2 = jax.random.split(jax.random.key(0))
    a = jax.random.normal(k1, (n, n), jnp.float32)
    b = jax.random.normal(k2, (n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    return measure(f"matmul {n}x{n} f32", lambda: f(a, b).block_until_ready(), items=1, unit="matmuls",
                   flops=2.0 * n**3, repeat=repeat, min_time=0.2)


def model_matmul_peaks(short: bool = False) -> list[Result]:
    """The models' own largest product at the default precision and at ``"highest"``: the paper
    IM-NET decoder's second layer, ``[points, 1024] @ [1024, 512]`` over a 32-shape x 4096-point
    batch (131072 rows; 8192 with ``short``). On NVIDIA GPUs since Ampere the default is TF32, so
    the two rows differ there; on a CPU they are the same computation."""
    import jax
    import jax.numpy as jnp

    rows = 8192 if short else 131072
    k1, k2 = jax.random.split(jax.random.key(1))
    a = jax.random.normal(k1, (rows, 1024), jnp.float32)
    b = jax.random.normal(k2, (1024, 512), jnp.float32)
    out = []
    for precision in ("default", "highest"):
        f = jax.jit(lambda x, y, p=precision: jnp.matmul(x, y, precision=None if p == "default" else p))
        out.append(measure(f"matmul {rows}x1024x512 f32 {precision}", lambda f=f: f(a, b).block_until_ready(),
                           items=1, unit="matmuls", flops=2.0 * rows * 1024 * 512, repeat=3, min_time=0.2,
                           precision=precision))
    return out

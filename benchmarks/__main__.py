"""Run the impax benchmark suite and print one table (and write it as JSON).

    python -m benchmarks            # full mode (measurements for the notes)
    python -m benchmarks --short    # small sizes; what CI runs to keep the suite working
    python -m benchmarks --only decoder extract

Each workload module in this folder defines ``WORKLOADS: dict[str, callable(short: bool) -> list[Result]]``.
No thresholds are asserted here: the table reports throughput, achieved GFLOP/s, the ratio to the
matmul peak measured in the same run, compilations in steady state and peak resident memory.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from pathlib import Path

from benchmarks.common import Result, matmul_peak

# Workload modules, in table order. A module missing a dependency is reported, not fatal.
MODULES = ["bench_decoder", "bench_train", "bench_sif", "bench_extract", "bench_prepare", "bench_render"]


def _collect(short: bool, only: list[str] | None) -> tuple[list[Result], list[str]]:
    results, errors = [], []
    for mod_name in MODULES:
        try:
            mod = importlib.import_module(f"benchmarks.{mod_name}")
        except ModuleNotFoundError as e:
            if e.name == f"benchmarks.{mod_name}":
                continue  # workload not written yet
            errors.append(f"{mod_name}: import failed: {e}")
            continue
        for name, fn in getattr(mod, "WORKLOADS", {}).items():
            if only and not any(o in name for o in only):
                continue
            t0 = time.perf_counter()
            try:
                results.extend(fn(short))
            except Exception as e:  # a broken workload must not hide the others
                errors.append(f"{name}: {type(e).__name__}: {e}")
            print(f"  [{name}] {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    return results, errors


def format_table(peak: Result, results: list[Result]) -> str:
    pk = peak.gflops() or float("nan")
    head = f"{'workload':44s} {'throughput':>22s} {'s/call':>9s} {'GFLOP/s':>9s} {'% peak':>7s} {'compiles':>8s} {'RSS MiB':>8s}"
    lines = [head, "-" * len(head)]
    for r in [peak, *results]:
        g = r.gflops()
        lines.append(
            f"{r.name:44s} {r.throughput:>12.4g} {r.unit[:9]:>9s} {r.seconds:>9.4f} "
            f"{'' if g is None else f'{g:9.1f}':>9s} {'' if g is None else f'{100 * g / pk:6.1f}%':>7s} "
            f"{r.steady_compiles:>8d} {r.peak_rss_mib:>8.0f}"
        )
        for k, v in r.extra.items():
            lines.append(f"{'':46s}{k}: {v}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--short", action="store_true", help="small sizes (CI smoke mode)")
    p.add_argument("--only", nargs="*", help="run only workloads whose name contains one of these")
    p.add_argument("--json", default="benchmarks/results/latest.json", help="where to write the table as JSON")
    args = p.parse_args(argv)

    import jax

    peak = matmul_peak(1024 if args.short else 2048)
    results, errors = _collect(args.short, args.only)
    table = format_table(peak, results)
    print(f"impax benchmarks ({'short' if args.short else 'full'}) on {jax.devices()[0].device_kind}, "
          f"{jax.device_count()} device(s), {platform.processor() or platform.machine()}")
    print(table)
    for e in errors:
        print(f"ERROR {e}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "mode": "short" if args.short else "full",
        "device": str(jax.devices()[0]),
        "peak_gflops": peak.gflops(),
        "results": [dict(r.__dict__, gflops=r.gflops(),
                         ratio_to_peak=None if r.gflops() is None else r.gflops() / peak.gflops())
                    for r in results],
        "errors": errors,
    }
    out.write_text(json.dumps(payload, indent=2, default=str))
    print(f"wrote {out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

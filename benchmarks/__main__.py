"""Run the impax benchmark suite and print one table (and write it as JSON).

    python -m benchmarks            # full mode (measurements for the notes)
    python -m benchmarks --short    # small sizes; what CI runs to keep the suite working
    python -m benchmarks --only decoder extract   # by module (bench_decoder, bench_extract)
    python -m benchmarks --list                   # workload names

Each workload runs in its own Python process (``--in-process`` to change that), so the RSS column
is the peak resident memory of that workload alone (JAX and the libraries included: about the
first 300-400 MiB are the runtime), and its compilation count starts from zero.

Each workload module in this folder defines ``WORKLOADS: dict[str, callable(short: bool) -> list[Result]]``.
No thresholds are asserted here: the table reports throughput, achieved GFLOP/s, the ratio to the
matmul peak measured in the same run, compilations in steady state and peak resident memory.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import Result, device_peak_mib, matmul_peak, model_matmul_peaks, peak_rss_mib

# Workload modules, in table order. A module not written yet is skipped; one that fails to import
# is reported, not fatal.
MODULES = ["bench_decoder", "bench_train", "bench_loader", "bench_sif", "bench_extract", "bench_prepare", "bench_render",
           "bench_geometry", "bench_scaling"]
_RESULT_MARK = "@@impax-bench-results@@ "


def _workloads(errors: list[str]) -> list[tuple[str, str]]:
    """(module, workload name) for every workload of every importable module, in table order."""
    out = []
    for mod_name in MODULES:
        try:
            mod = importlib.import_module(f"benchmarks.{mod_name}")
        except ModuleNotFoundError as e:
            if e.name == f"benchmarks.{mod_name}":
                continue  # workload not written yet
            errors.append(f"{mod_name}: import failed: {e}")
            continue
        except Exception as e:  # noqa: BLE001 - a broken module must not hide the others
            errors.append(f"{mod_name}: import failed: {type(e).__name__}: {e}")
            continue
        out.extend((mod_name, name) for name in getattr(mod, "WORKLOADS", {}))
    return out


def select(workloads: list[tuple[str, str]], only: list[str] | None) -> list[tuple[str, str]]:
    """``--only`` without substring ambiguity: each token selects the workload with exactly that
    name if there is one, else every workload of the module ``bench_<token>`` (or ``<token>``), else
    the workloads whose name contains it."""
    if not only:
        return list(workloads)
    chosen: set[tuple[str, str]] = set()
    for tok in only:
        exact = [w for w in workloads if w[1] == tok]
        module = [w for w in workloads if w[0] in (tok, f"bench_{tok}")]
        chosen.update(exact or module or [w for w in workloads if tok in w[1]])
    return [w for w in workloads if w in chosen]


def _run_one(mod_name: str, name: str, short: bool) -> list[Result]:
    mod = importlib.import_module(f"benchmarks.{mod_name}")
    return list(mod.WORKLOADS[name](short))


def _worker(mod_name: str, name: str, short: bool) -> int:
    """Child process: run one workload, print its rows as one JSON line after a marker."""
    results = _run_one(mod_name, name, short)
    dev = device_peak_mib()
    for r in results:  # a row that did not measure its memory gets this (its own) process's peak
        r.peak_rss_mib = r.peak_rss_mib or peak_rss_mib()
        r.device_peak_mib = r.device_peak_mib if r.device_peak_mib is not None else dev
    print(_RESULT_MARK + json.dumps([dataclasses.asdict(r) for r in results], default=str), flush=True)
    return 0


def _collect(short: bool, selected: list[tuple[str, str]], in_process: bool,
             timeout: float) -> tuple[list[Result], list[str], dict[str, float]]:
    """Run each workload; by default each in its own Python process, so that its peak RSS (and its
    compilation count) is its own and not the high-water mark of everything run before it."""
    results, errors, wall = [], [], {}
    for mod_name, name in selected:
        t0 = time.perf_counter()
        try:
            if in_process:
                results.extend(_run_one(mod_name, name, short))
            else:
                cmd = [sys.executable, "-m", "benchmarks", "--worker", mod_name, name] + (["--short"] if short else [])
                cp = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout)
                rows = [ln for ln in cp.stdout.splitlines() if ln.startswith(_RESULT_MARK)]
                other = "\n".join(ln for ln in cp.stdout.splitlines() if not ln.startswith(_RESULT_MARK))
                if other.strip():
                    print(other, file=sys.stderr, flush=True)
                if cp.returncode != 0 or not rows:
                    errors.append(f"{name}: worker exited with status {cp.returncode} (traceback above)")
                else:
                    results.extend(Result(**d) for d in json.loads(rows[-1][len(_RESULT_MARK):]))
        except subprocess.TimeoutExpired:
            errors.append(f"{name}: timed out after {timeout:.0f}s")
        except Exception as e:  # a broken workload must not hide the others
            errors.append(f"{name}: {type(e).__name__}: {e}")
        wall[name] = round(time.perf_counter() - t0, 1)
        print(f"  [{name}] {wall[name]:.1f}s", file=sys.stderr, flush=True)
    return results, errors, wall


def format_table(peak: Result, results: list[Result]) -> str:
    pk = peak.gflops() or float("nan")
    head = (f"{'workload':44s} {'throughput':>22s} {'s/call':>9s} {'GFLOP/s':>9s} {'% peak':>7s} {'compiles':>8s} "
            f"{'RSS MiB':>8s} {'dev MiB':>8s}")
    lines = [head, "-" * len(head)]
    for r in [peak, *results]:
        g = r.gflops()
        dev = "" if r.device_peak_mib is None else f"{r.device_peak_mib:8.0f}"
        lines.append(
            f"{r.name:44s} {r.throughput:>12.4g} {r.unit[:9]:>9s} {r.seconds:>9.4f} "
            f"{'' if g is None else f'{g:9.1f}':>9s} {'' if g is None else f'{100 * g / pk:6.1f}%':>7s} "
            f"{r.steady_compiles:>8d} {r.peak_rss_mib:>8.0f} {dev:>8s}"
        )
        if r.extra:
            lines.append(f"{'':4s}" + ", ".join(f"{k}={v}" for k, v in r.extra.items()))
    return "\n".join(lines)


def loader_vs_step(results: list[Result]) -> str:
    """Which one limits training, per family: the loader (packed store, shapes per second per core,
    times this machine's cores) or the step (shapes per second of the ``train`` row of that
    family, on this device). Compared in shapes per second because the CPU step rows use smaller
    batches than the ``paper`` presets; ``""`` when either row is missing."""
    cores = os.cpu_count() or 1
    lines = []
    for family, train_key in (("imnet-ae", "train imnet-ae"), ("ldif", "train ldif")):
        load = [r for r in results if r.name.startswith(f"loader {family} paper packed 1 thread")]
        step = [r for r in results if r.name.startswith(train_key)]
        if not load or not step:
            continue
        per_core = load[0].throughput * load[0].extra.get("batch", 1)
        step_shapes = step[0].extra.get("shapes", 1) / step[0].seconds
        limit = "the step" if step_shapes < per_core * cores else "the loader"
        lines.append(f"  {family:9s} loader {per_core:8.1f} shapes/s per core x {cores} cores = "
                     f"{per_core * cores:8.1f}; step ({step[0].name}) {step_shapes:8.1f} shapes/s -> {limit} limits")
    return ("loader vs step (packed store, 1 reading thread per core):\n" + "\n".join(lines)) if lines else ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--short", action="store_true", help="small sizes (CI smoke mode)")
    p.add_argument("--only", nargs="*", help="workload names, module names (decoder = bench_decoder) or, "
                   "failing both, substrings of workload names")
    p.add_argument("--list", action="store_true", help="list the workloads and exit")
    p.add_argument("--in-process", action="store_true",
                   help="run all workloads in this process (RSS is then the running high-water mark)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per workload (default 300 short, 900 full)")
    p.add_argument("--json", default="benchmarks/results/latest.json", help="where to write the table as JSON")
    p.add_argument("--worker", nargs=2, metavar=("MODULE", "WORKLOAD"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return _worker(args.worker[0], args.worker[1], args.short)

    errors: list[str] = []
    selected = select(_workloads(errors), args.only)
    if args.list:
        for mod_name, name in selected:
            print(f"{name:32s} ({mod_name})")
        return 0

    import jax

    t_start = time.perf_counter()
    load0 = os.getloadavg()
    peak = matmul_peak(1024 if args.short else 2048)
    timeout = args.timeout or (300.0 if args.short else 900.0)
    results, run_errors, wall = _collect(args.short, selected, args.in_process, timeout)
    results = model_matmul_peaks(args.short) + results
    errors += run_errors
    total = time.perf_counter() - t_start
    load1 = os.getloadavg()
    table = format_table(peak, results)
    print(f"impax benchmarks ({'short' if args.short else 'full'}) on {jax.devices()[0].device_kind}, "
          f"{jax.device_count()} device(s), {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; load average {load0[0]:.2f} at start, {load1[0]:.2f} at end; "
          f"{total:.0f}s in all")
    print("RSS: peak resident memory of the process that ran the workload"
          + (" (all in one process: running high-water mark)" if args.in_process
             else " (each workload in its own process)"))
    print(table)
    limits = loader_vs_step(results)
    if limits:
        print(limits)
    for e in errors:
        print(f"ERROR {e}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "mode": "short" if args.short else "full",
        "device": str(jax.devices()[0]),
        "cpus": os.cpu_count(),
        "load_average": {"start": load0, "end": load1},
        "rss": "in-process high-water mark" if args.in_process else "per workload process",
        "total_seconds": round(total, 1),
        "workload_seconds": wall,
        "peak_gflops": peak.gflops(),
        "peak": dict(peak.__dict__, gflops=peak.gflops()),
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

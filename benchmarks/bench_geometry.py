"""Geometry timings: occupancy and signed distance of 100k points on a ~20k-face mesh.

    python -m benchmarks.bench_geometry            # prints a table
    python -m benchmarks.bench_geometry --short    # 10k points

Also exposes ``WORKLOADS`` in the suite's format (``benchmarks.common.Result``). Pure numpy/libigl
(CPU); no JAX involved.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _mesh():
    import trimesh

    return trimesh.creation.icosphere(subdivisions=5, radius=0.4)  # 20,480 faces


def _run(short: bool):
    from benchmarks.common import measure
    from impax.geometry import inside, voxels

    mesh = _mesh()
    n = 10_000 if short else 100_000
    pts = np.random.default_rng(0).uniform(-0.5, 0.5, (n, 3))
    t0 = time.perf_counter()
    inside.prepare_mesh(mesh)
    prep = time.perf_counter() - t0
    repeat = 1 if short else 3
    rows = [
        measure(f"occupancy {n // 1000}k pts, {len(mesh.faces)} faces", lambda: inside.occupancy(mesh, pts),
                items=n, unit="points", repeat=repeat, prepare_s=prep),
        measure(f"signed_distance {n // 1000}k pts, {len(mesh.faces)} faces",
                lambda: inside.signed_distance(mesh, pts), items=n, unit="points", repeat=repeat),
    ]
    res = 32 if short else 64
    rows.append(measure(f"occupancy_grid {res}^3", lambda: voxels.occupancy_grid(mesh, res), items=res**3,
                        unit="points", repeat=1))
    return rows


WORKLOADS = {"geometry_inside": _run}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--short", action="store_true")
    args = ap.parse_args()
    rows = _run(args.short)
    print(f"{'workload':48s} {'s/call':>9s} {'points/s':>12s}")
    for r in rows:
        print(f"{r.name:48s} {r.seconds:9.3f} {r.throughput:12.0f}")
    print(f"(one-off mesh preparation: clean + orient, {rows[0].extra['prepare_s']:.3f} s)")


if __name__ == "__main__":
    main()

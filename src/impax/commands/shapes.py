"""``impax shapes``: write a procedural shape collection (no downloads).

    impax shapes --out DIR --count N --seed S [--stream pretrain]

Writes ``DIR/<family>/<family>_<k:03d>.ply`` round-robin over the 11 families (sphere, box, torus,
capsule, cylinder, ellipsoid, chair, table, lamp, mug, airplane) and prints one line per file.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("shapes", help="generate procedural test shapes (closed .ply meshes)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--count", type=int, default=22, help="number of shapes (default: 22, two per family)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    p.add_argument("--res", type=int, default=None, help="marching-cubes grid nodes per axis (default 80)")
    p.add_argument("--stream", default="default", choices=("default", "pretrain"),
                   help="random stream (default: default, what impax demo uses; pretrain: the separate "
                        "stream of the data behind impax's shipped pretrained weights)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import sys
    import time

    from impax.geometry import shapes

    if args.count < 0:
        print("impax shapes: --count must be >= 0", file=sys.stderr)
        return 1
    res = args.res or shapes.DEFAULT_RES
    t0 = time.perf_counter()
    n = 0
    for path in shapes.generate(args.out, args.count, args.seed, res=res, stream=args.stream):
        print(path, flush=True)
        n += 1
    print(f"wrote {n} shapes to {args.out} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return 0

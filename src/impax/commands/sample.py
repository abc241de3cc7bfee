"""``impax sample RUN --count N --out DIR``: new shapes from a trained IM-GAN run."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="sample new shapes from a latent GAN run", description=__doc__)
    p.add_argument("run", help="imnet-gan run directory")
    p.add_argument("--count", type=int, default=8, help="number of shapes to sample, >= 1 (default 8)")
    p.add_argument("--out", required=True, help="output folder (sample_<k>.ply, IM-NET frame)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed: the same seed gives the same shapes (default 0)")
    p.add_argument("--resolution", type=int, default=128, help="extraction resolution (16-512, default 128)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from impax.commands._checks import at_least, out_folder, resolution, run_module

    resolution(args.resolution)
    at_least(args.count, 1, "--count")
    out_folder(args.out)
    rows = run_module(args.run, "sample").sample(args.run, args.count, args.out, seed=args.seed,
                                          resolution=args.resolution)
    print(json.dumps(rows, indent=2, default=str))
    return 0

"""``impax interpolate RUN A B --steps K --out DIR``: meshes along the latent line between two shapes."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("interpolate", help="interpolate between two shapes in latent space", description=__doc__)
    p.add_argument("run", help="imnet-ae run directory")
    p.add_argument("a", help="first shape (mesh file, or a shape id of the run's data)")
    p.add_argument("b", help="second shape")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--out", required=True)
    p.add_argument("--resolution", type=int, default=128)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from impax.inference.families import family_module

    rows = family_module(args.run).interpolate(args.run, args.a, args.b, args.steps, args.out,
                                               resolution=args.resolution)
    print(json.dumps(rows, indent=2, default=str))
    return 0

"""``impax interpolate RUN A B --steps K --out DIR``: meshes along the latent line between two shapes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("interpolate", help="interpolate between two shapes in latent space", description=__doc__)
    p.add_argument("run", help="imnet-ae run directory")
    p.add_argument("a", help="first shape (mesh file, or a shape id of the run's data)")
    p.add_argument("b", help="second shape")
    p.add_argument("--steps", type=int, default=5, help="meshes along the line, >= 1 (default 5)")
    p.add_argument("--out", required=True, help="output folder (step_<k>.ply, IM-NET frame)")
    p.add_argument("--resolution", type=int, default=128, help="extraction resolution (16-512, default 128)")
    p.set_defaults(func=run)


def check_shape(run: str, spec: str) -> None:
    """``spec`` must be a mesh file or a shape of the run's data (``ValueError`` otherwise)."""
    from impax.data.store import ShapeStore, data_kind
    from impax.inference.families import read_run

    if Path(spec).is_file():
        return
    data = read_run(run).get("data")
    kind = data_kind(data) if data else None
    if kind == "store":
        known = ShapeStore(data).ids()
    elif kind == "hdf5":
        from impax.data.imnet_hdf5 import IMNetHdf5

        with IMNetHdf5(data) as f:
            known = list(f.names)
    else:
        return  # no data to look it up in here: the model's loader says what is wrong
    if spec not in known:
        raise ValueError(f"{spec!r} is neither a mesh file nor a shape of the run's data {data}")


def run(args: argparse.Namespace) -> int:
    from impax.commands._checks import at_least, out_folder, resolution, run_module
    from impax.inference.families import read_run

    resolution(args.resolution)
    at_least(args.steps, 1, "--steps")
    out_folder(args.out)
    mod = run_module(args.run, "interpolate")
    if read_run(args.run).get("recipe") == "imnet-ae":  # names are checked before the model loads
        for spec in (args.a, args.b):
            check_shape(args.run, spec)
    rows = mod.interpolate(args.run, args.a, args.b, args.steps, args.out, resolution=args.resolution)
    print(json.dumps(rows, indent=2, default=str))
    return 0

"""``impax reconstruct RUN --input KIND PATH... --out DIR``: meshes from a trained model.

IM-NET runs take ``voxels`` (an IM-NET HDF5 file or a prepared store), ``mesh`` (mesh files, voxelised
the way training data are) or ``image`` (PNG renders, with an imnet-svr run); LDIF/SIF runs take
``depth``, ``points`` or ``mesh``. Meshes are written in the original frame of each input.
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reconstruct", help="reconstruct shapes with a trained run", description=__doc__)
    p.add_argument("run", help="training run directory")
    p.add_argument("--input", required=True, dest="kind", choices=["voxels", "mesh", "image", "depth", "points"],
                   help="what the inputs are (IM-NET runs: voxels, mesh, image; LDIF/SIF runs: depth, points, mesh)")
    p.add_argument("inputs", nargs="+", help="input files (or a prepared data folder)")
    p.add_argument("--out", required=True, help="output folder for meshes")
    p.add_argument("--resolution", type=int, default=128, help="extraction resolution (16-512, default 128)")
    p.add_argument("--format", default="ply", choices=["ply", "obj", "glb"], help="mesh file format (default ply)")
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="test-time optimisation: after encoding, take STEPS Adam steps on each shape's own "
                        "parameters (IM-AE: its latent code; SIF/LDIF: its elements and latents) against its "
                        "input, network weights fixed (default 0: the encoder's result as it is)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from impax.commands._checks import at_least, out_folder, resolution, run_module

    resolution(args.resolution)
    at_least(args.refine, 0, "--refine")
    out_folder(args.out)
    rows = run_module(args.run, "reconstruct").reconstruct(args.run, args.kind, args.inputs, args.out,
                                               resolution=args.resolution, mesh_format=args.format,
                                               refine=args.refine)
    print(json.dumps(rows, indent=2, default=str))
    return 0 if rows and all(r.get("ok", True) for r in rows) else 3

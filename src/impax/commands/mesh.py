"""``impax mesh SHAPE.txt [--decoder extracted.occnet] [--resolution 128] [--out mesh.ply]``.

Meshes a SIF/LDIF shape stored as a SIF v1 text file (google/ldif ``predict.Decoder.extract_mesh``
+ ``ldif2mesh``): the surface ``F = -0.07`` over ``[-0.75, 0.75]^3``, vertices in GAPS/world
coordinates. An LDIF (latents in the file) needs ``--decoder``.

Methods (``--method``):

* ``dense``: F on the grid of the original CUDA kernel — node ``i`` at
  ``(0.5 + (R - 0.5) i / R) / R * 1.5 - 0.75`` — with the kernel's rule of skipping RBFs below
  ``1e-4`` (``--no-skip`` turns it off), then marching cubes at -0.07. This reproduces the original
  pipeline's meshes (``ldif2mesh`` + ``grd2msh -threshold -0.07``).
* ``multires``: impax's coarse-to-fine extraction (what ``impax reconstruct`` uses for LDIF runs):
  F only near the surface, on a ``R + 1`` node grid spanning exactly ``[-0.75, 0.75]^3``.
* ``auto`` (default): ``multires``.

Exit status: 0 written; 1 on unreadable input or when the level set is empty (the original
substitutes a radius-0.5 sphere; impax reports the failure instead of writing a fake mesh).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("mesh", help="mesh a SIF/LDIF shape file (SIF v1 text) at F = -0.07",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shape", help="SIF v1 text file (e.g. test-ldif.txt)")
    p.add_argument("--decoder", default=None, help="local decoder weights (extracted.occnet), needed for an LDIF")
    p.add_argument("--resolution", type=int, default=128,
                   help="grid cells per axis, 2-512 (default 128, as predict.py)")
    p.add_argument("--out", default=None, help="output mesh (.ply/.obj/.off/.stl/.glb; default SHAPE with .ply)")
    p.add_argument("--method", choices=("auto", "dense", "multires"), default="auto",
                   help="dense kernel grid, multi-resolution extractor, or auto (default)")
    p.add_argument("--no-skip", action="store_true",
                   help="do not skip RBFs below 1e-4 (the original kernel skips them)")
    p.set_defaults(func=run)


def dense_kernel_grid_mesh(sif, decoder=None, resolution: int = 128, skip: bool = True):
    """Mesh on the original kernel's grid (see the module docstring). Returns a trimesh or ``None``
    when F never crosses the level."""
    import trimesh
    from skimage import measure

    from impax.conventions import LDIF_EXTRACT_HALF, LDIF_ISO_LEVEL, ldif_grid_index_to_world
    from impax.models.sif import KERNEL_SKIP_THRESHOLD, evaluate_grid

    coords = ldif_grid_index_to_world(np.arange(resolution), resolution, LDIF_EXTRACT_HALF).astype(np.float32)
    grid = evaluate_grid(sif, coords, decoder, KERNEL_SKIP_THRESHOLD if skip else None)
    if not (grid.min() < LDIF_ISO_LEVEL < grid.max()):
        return None
    # Inside is F < level (F descends into the shape): scikit-image's default orientation then
    # gives outward-facing triangles.
    verts, faces, _, _ = measure.marching_cubes(grid, LDIF_ISO_LEVEL, method="lewiner")
    verts = ldif_grid_index_to_world(verts, resolution, LDIF_EXTRACT_HALF)
    return trimesh.Trimesh(vertices=verts, faces=faces, process=False)


def _multires_mesh(sif, weights, resolution: int, skip: bool):
    """The shared extractor through :func:`impax.inference.ldif.extract_sif` — the function
    ``impax reconstruct`` meshes LDIF runs with, so a written SIF file meshes to the same surface."""
    from impax.inference.ldif import extract_sif

    mesh = extract_sif(sif, weights, resolution, skip=skip).mesh
    if mesh is None or len(mesh.faces) == 0:
        return None
    return mesh


def run(args: argparse.Namespace) -> int:
    from impax.models.occnet import make_decoder_fn
    from impax.models.sif_format import FormatError, read_occnet, read_sif

    weights = None

    from impax.commands._checks import resolution
    from impax.geometry.mesh_io import SAVE_SUFFIXES

    shape = Path(args.shape)
    out = Path(args.out) if args.out else shape.with_suffix(".ply")
    resolution(args.resolution, low=2)
    if out.is_dir() or (args.out and str(args.out).endswith(("/", os.sep))):
        raise ValueError(f"--out {out} is a folder; give a mesh file name ({', '.join(SAVE_SUFFIXES)})")
    if out.suffix.lower() not in SAVE_SUFFIXES:
        raise ValueError(f"--out {out}: cannot write {out.suffix or 'a file without suffix'!r}; "
                         f"use one of {', '.join(SAVE_SUFFIXES)}")
    try:
        sif = read_sif(shape)
        decoder = None
        if sif.latents is not None:
            if not args.decoder:
                print(f"impax mesh: {shape} is an LDIF ({sif.latent_size} latents per element); "
                      "pass its decoder with --decoder extracted.occnet", file=sys.stderr)
                return 1
            weights = read_occnet(args.decoder)
            width = int(np.shape(weights["input.kernel"])[1])
            if width != sif.latent_size:
                print(f"impax mesh: {args.decoder}: decoder width {width} does not match the "
                      f"{sif.latent_size} latents of {shape}", file=sys.stderr)
                return 1
            decoder = make_decoder_fn(weights)
    except FormatError as e:
        print(f"impax mesh: {e}", file=sys.stderr)
        return 1
    method = args.method
    if method == "auto":
        method = "multires"
    if method == "multires":
        mesh = _multires_mesh(sif, weights, args.resolution, not args.no_skip)
    else:
        mesh = dense_kernel_grid_mesh(sif, decoder, args.resolution, not args.no_skip)
    if mesh is None:
        print(f"impax mesh: {shape}: F never crosses -0.07 in [-0.75, 0.75]^3; no mesh written", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(out)
    print(f"impax mesh: wrote {out} ({len(mesh.vertices)} vertices, {len(mesh.faces)} faces, method {method})")
    return 0

"""``impax watertight IN OUT [--resolution 256] [--offset 1]``: watertight, minimum-thickness meshes.

The step OccNet's TSDF fusion does before IM-NET, OccNet and LDIF see a ShapeNet model (see
:mod:`impax.inference.watertight`): every open sheet becomes a closed slab ``2 * offset`` cells
thick, every closed part grows outward by ``offset`` cells of a ``--resolution`` grid across the
mesh's largest extent. ``IN`` is a mesh file or a folder (searched recursively); each
``IN/<rel>/<name>.<ext>`` becomes ``OUT/<rel>/<name>.ply`` in the same frame and units, so
``impax prepare OUT …`` and ``impax test … --meshes OUT`` use it like the original collection.

Outputs already present are kept (a killed run resumes); each is written to a temporary name and
renamed. A mesh that cannot be read is skipped and named on one line. Exit status: 0 all written,
3 some skipped, 1 nothing to do (no mesh under ``IN``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("watertight", help="watertight, minimum-thickness versions of meshes (as TSDF fusion)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="a mesh file or a folder of meshes (searched recursively)")
    p.add_argument("out", help="output folder (IN's relative paths, as .ply)")
    p.add_argument("--resolution", type=int, default=256,
                   help="grid cells per axis across the largest extent, 32 * 2^k (default 256, as OccNet's fusion)")
    p.add_argument("--offset", type=float, default=1.0,
                   help="outward offset in grid cells; open sheets become 2*offset cells thick (default 1)")
    p.set_defaults(func=run)


def _inputs(root: Path) -> list[tuple[Path, Path]]:
    """(mesh file, output path relative to OUT): the files ``impax prepare`` would read."""
    from impax.data.sources import discover

    if root.is_file():
        return [(root, Path(root.stem + ".ply"))]
    return [(s.path, Path(s.rel).with_suffix(".ply")) for s in discover(root)]


def run(args: argparse.Namespace) -> int:
    from impax.geometry.mesh_io import MeshError, load_mesh, save_mesh
    from impax.inference.extract import coarse_resolution
    from impax.inference.watertight import watertight

    r = int(args.resolution)
    if r < 32 or coarse_resolution(r) != 32:
        raise ValueError(f"--resolution must be 32 * 2^k (32, 64, 128, 256, 512), got {r}")
    if not 0 < args.offset <= r / 8:
        raise ValueError(f"--offset must be in (0, {r / 8:g}] cells, got {args.offset}")
    src = Path(args.input)
    if not src.exists():
        raise ValueError(f"{src} does not exist")
    todo = _inputs(src)
    if not todo:
        print(f"impax watertight: no mesh files under {src}")
        return 1
    out = Path(args.out)
    skipped: list[str] = []
    written = kept = 0
    for path, rel in todo:
        dst = out / rel
        if dst.exists():
            kept += 1
            continue
        try:
            res = watertight(load_mesh(path), r, args.offset)
        except MeshError as e:
            print(f"skipped: {e}", flush=True)
            skipped.append(str(path))
            continue
        if len(res.mesh.faces) == 0:
            print(f"skipped: {path}: no surface at offset {args.offset} cells", flush=True)
            skipped.append(str(path))
            continue
        tmp = dst.with_name(f".{dst.stem}.tmp{os.getpid()}.ply")
        save_mesh(res.mesh, tmp)
        os.replace(tmp, dst)
        written += 1
        print(f"{rel}: {len(res.mesh.faces)} faces, offset {res.delta:.4g}, "
              f"{'watertight' if res.watertight else 'NOT watertight'}, {res.seconds:.1f} s", flush=True)
    print(f"watertight: {written} written, {kept} already there, {len(skipped)} skipped -> {out}")
    return 3 if skipped else 0

"""``impax render MESH --out PNG``: a shaded picture of any mesh, by CPU ray casting.

The mesh is loaded (scenes merged) and normalised to IM-NET's unit box (bounding box centred,
diagonal 1), then drawn from ``--views`` azimuths evenly spaced from ``--azimuth`` at
``--elevation`` (y up), tiled in one PNG. ``--dodeca`` instead draws LDIF's 20 dodecahedron
depth images of the mesh in the GAPS frame (near = dark, background white). Exit status 0 on
success, 1 when the mesh cannot be read or the PNG cannot be written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _rgb(text: str) -> tuple[float, float, float]:
    parts = [float(v) for v in text.replace(",", " ").split()]
    if len(parts) != 3 or not all(0.0 <= v <= 255.0 for v in parts):
        raise argparse.ArgumentTypeError(f"expected R,G,B in [0,1] or [0,255], got {text!r}")
    return tuple(parts)  # type: ignore[return-value]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "render", help="render a mesh to a PNG (shaded views, or LDIF's 20 depth images)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mesh", help="mesh file (.obj .off .ply .stl .glb .gltf)")
    p.add_argument("--out", required=True, help="output PNG path")
    p.add_argument("--views", type=int, default=1, help="number of views, evenly spaced in azimuth (default 1)")
    p.add_argument("--size", type=int, default=256, help="pixels per view, square (default 256)")
    p.add_argument("--azimuth", type=float, default=30.0, help="azimuth of the first view, degrees (default 30)")
    p.add_argument("--elevation", type=float, default=20.0, help="elevation, degrees (default 20)")
    p.add_argument("--color", type=_rgb, default=None, help="surface colour R,G,B in [0,1] or [0,255]")
    p.add_argument("--columns", type=int, default=4, help="views per row of the grid (default 4)")
    p.add_argument("--dodeca", action="store_true",
                   help="draw LDIF's 20 dodecahedron depth images (GAPS frame, --size ignored: 224)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from impax.geometry import render
    from impax.geometry.mesh_io import MeshError, load_mesh
    from impax.geometry.normalize import gaps_transform, imnet_transform, transform_mesh

    if args.views < 1 or args.size < 8:
        print("impax render: need --views >= 1 and --size >= 8", file=sys.stderr)
        return 1
    try:
        mesh = load_mesh(args.mesh)
    except MeshError as e:
        print(f"impax render: {e}", file=sys.stderr)
        return 1
    if args.dodeca:
        cams = render.dodecahedron_cameras()
        depth = render.render_depth(transform_mesh(mesh, gaps_transform(mesh)), cams)
        hit = depth > 0
        lo, hi = (depth[hit].min(), depth[hit].max()) if hit.any() else (0.0, 1.0)
        gray = np.where(hit, 40.0 + 170.0 * (depth - lo) / max(hi - lo, 1e-9), 255.0)
        image = render.tile_images(list(np.rint(gray).astype(np.uint8)), ncols=5)
    else:
        mesh = transform_mesh(mesh, imnet_transform(mesh))
        azimuths = args.azimuth + 360.0 * np.arange(args.views) / args.views
        tiles = [render.render_shaded(mesh, az, args.elevation, args.size, args.color) for az in azimuths]
        image = tiles[0] if len(tiles) == 1 else render.tile_images(tiles, ncols=min(args.columns, len(tiles)))
    try:
        out = render.save_png(image, Path(args.out))
    except OSError as e:
        print(f"impax render: cannot write {args.out}: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({image.shape[1]}x{image.shape[0]})", file=sys.stderr)
    return 0

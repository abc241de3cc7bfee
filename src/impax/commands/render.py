"""``impax render MESH --out PNG``: a shaded picture of any mesh, by CPU ray casting.
``impax render --compare GT PRED [PRED...] --out PNG``: a ground truth and its reconstructions
side by side, drawn at one scale.

One mesh: it is loaded (scenes merged) and normalised to IM-NET's unit box (bounding box centred,
diagonal 1), then drawn from --views azimuths evenly spaced from --azimuth at --elevation (y up),
tiled in one PNG. Each mesh rendered this way fills its picture, whatever its size.

--compare: the first mesh is the ground truth. Its normalisation is applied to every mesh and all
are drawn with one camera that frames them all, so sizes and positions stay comparable (a
reconstruction half the size of the ground truth looks half the size). One column per mesh (the
ground truth first, in a sand colour), one row per view, each picture labelled with its file name
without the extension (or --labels). A prediction that cannot be read becomes an empty picture, a
line on stderr, and exit status 3. --overlay draws each prediction together with a translucent
ghost of the ground truth, so missing and extra parts show.

--dodeca draws LDIF's 20 dodecahedron depth images of one mesh in the GAPS frame (near = dark,
background white), five per row, each framed and labelled with its camera index 0-19 (the order of
LDIF's dodeca_cameras.cam).

Exit status: 0 success; 1 when a mesh (the ground truth with --compare) cannot be read, an option
is invalid or the PNG cannot be written; 3 with --compare when some prediction could not be read.
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
        "render", help="render a mesh to a PNG (shaded views, side-by-side comparisons, or LDIF's 20 depth images)",
        usage="impax render MESH --out PNG [options]\n       impax render --compare GT PRED [PRED...] --out PNG "
              "[options]",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mesh", nargs="?", default=None,
                   help="mesh file to render (.obj .off .ply .stl .glb .gltf); leave it out with --compare")
    p.add_argument("--out", required=True, help="output PNG path (its folder is created)")
    p.add_argument("--compare", nargs="+", default=None, metavar="MESH",
                   help="draw these meshes side by side at one shared scale and camera: the ground truth "
                        "first, then one or more reconstructions (default: off)")
    p.add_argument("--labels", default=None, metavar="A,B,...",
                   help="comma-separated labels of the --compare pictures, one per mesh (default: the file "
                        "names without extension)")
    p.add_argument("--overlay", action="store_true",
                   help="with --compare, draw the ground truth as a translucent ghost with each "
                        "reconstruction (default: off)")
    p.add_argument("--views", type=int, default=1,
                   help="number of views, evenly spaced in azimuth; with --compare, one row each (default 1)")
    p.add_argument("--size", type=int, default=256, help="pixels per view, square (default 256)")
    p.add_argument("--azimuth", type=float, default=30.0, help="azimuth of the first view in degrees (default 30)")
    p.add_argument("--elevation", type=float, default=20.0, help="elevation of the camera in degrees (default 20)")
    p.add_argument("--color", type=_rgb, default=None,
                   help="surface colour R,G,B in [0,1] or [0,255]; with --compare, of the reconstructions "
                        "(default: a light steel blue)")
    p.add_argument("--columns", type=int, default=4,
                   help="views per row of the grid of one mesh; --compare always has one column per mesh "
                        "(default 4)")
    p.add_argument("--dodeca", action="store_true",
                   help="draw LDIF's 20 dodecahedron depth images, labelled 0-19, instead of shaded views "
                        "(GAPS frame, 224 pixels each, --size ignored; default: off)")
    p.set_defaults(func=run)


def _compare(args: argparse.Namespace):
    """The --compare picture and the exit status (0, or 3 when a prediction was unreadable)."""
    import numpy as np

    from impax.geometry import render
    from impax.geometry.mesh_io import MeshError, load_mesh
    from impax.geometry.normalize import imnet_transform, transform_mesh

    paths = [Path(p) for p in args.compare]
    labels = [p.stem for p in paths]
    if args.labels is not None:
        labels = [t.strip() for t in args.labels.split(",")]
        if len(labels) != len(paths):
            raise ValueError(f"--labels has {len(labels)} labels for {len(paths)} meshes")
    gt = load_mesh(paths[0])  # unreadable ground truth: exit 1
    to_unit = imnet_transform(gt)
    meshes, status = [transform_mesh(gt, to_unit)], 0
    for p, k in zip(paths[1:], range(1, len(paths))):
        try:
            meshes.append(transform_mesh(load_mesh(p), to_unit))
        except MeshError as e:
            print(f"impax render: {e} (drawn as an empty picture)", file=sys.stderr)
            meshes.append(None)
            labels[k] = f"{labels[k]} (unreadable)"
            status = 3
    colors = None
    if args.color is not None:
        colors = [render.GT_COLOR] + [args.color] * (len(meshes) - 1)
    azimuths = args.azimuth + 360.0 * np.arange(args.views) / args.views
    image = render.render_compare(meshes, labels, azimuths, args.elevation, args.size, colors=colors,
                                  overlay=args.overlay)
    return image, status


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from impax.geometry import render
    from impax.geometry.mesh_io import load_mesh
    from impax.geometry.normalize import gaps_transform, imnet_transform, transform_mesh

    if args.views < 1 or args.size < 8:
        raise ValueError("need --views >= 1 and --size >= 8")
    if args.columns < 1:
        raise ValueError("need --columns >= 1")
    if args.compare is not None:
        if args.mesh is not None:
            raise ValueError(f"give the meshes either as MESH or after --compare, not both ({args.mesh} "
                             "and --compare)")
        if len(args.compare) < 2:
            raise ValueError("--compare needs a ground truth and at least one reconstruction")
        if args.dodeca:
            raise ValueError("--dodeca draws one mesh; it cannot be combined with --compare")
        image, status = _compare(args)
    else:
        if args.mesh is None:
            raise ValueError("no mesh given (impax render MESH --out PNG, or --compare GT PRED...)")
        if args.labels is not None or args.overlay:
            raise ValueError("--labels and --overlay need --compare")
        mesh, status = load_mesh(args.mesh), 0
        if args.dodeca:
            cams = render.dodecahedron_cameras()
            depth = render.render_depth(transform_mesh(mesh, gaps_transform(mesh)), cams)
            hit = depth > 0
            lo, hi = (depth[hit].min(), depth[hit].max()) if hit.any() else (0.0, 1.0)
            gray = np.where(hit, 40.0 + 170.0 * (depth - lo) / max(hi - lo, 1e-9), 255.0)
            image = render.tile_images(list(np.rint(gray).astype(np.uint8)), ncols=5, pad=8,
                                       labels=[str(k) for k in range(len(cams))], frame=170)
        else:
            mesh = transform_mesh(mesh, imnet_transform(mesh))
            azimuths = args.azimuth + 360.0 * np.arange(args.views) / args.views
            tiles = [render.render_shaded(mesh, az, args.elevation, args.size, args.color) for az in azimuths]
            image = tiles[0] if len(tiles) == 1 else render.tile_images(tiles, ncols=min(args.columns, len(tiles)))
    try:
        out = render.save_png(image, Path(args.out))
    except OSError as e:
        raise OSError(f"cannot write {args.out}: {e}") from e
    print(f"wrote {out} ({image.shape[1]}x{image.shape[0]})", file=sys.stderr)
    return status

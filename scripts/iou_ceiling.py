"""The grid ceiling of a mesh collection: what a perfect model would score at an extraction resolution.

    python scripts/iou_ceiling.py MESHES [--resolution 128] [--list R/train.lst] [--store STORE] [--out ceiling.json]

For each mesh under ``MESHES``, with the shape id ``impax prepare`` gives it
(:func:`impax.data.sources.discover`; ``--list`` keeps the ids it names),
:func:`impax.evaluation.ceiling.grid_ceiling` meshes the ground truth's own signed distance on the
``impax test`` grid and scores it against the mesh. With ``--store`` (the store ``impax prepare``
made of ``MESHES``) it also scores each shape's stored 64³ voxels, IM-AE's max-pooled training
labels (:func:`impax.evaluation.ceiling.voxel_label_iou`, column ``labels``). Prints one line per
shape and the means; ``--out`` writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("meshes")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--list", default=None, help="keep only the ids listed (one per line)")
    ap.add_argument("--store", default=None, help="also score this prepared store's 64^3 voxels (IM-AE's labels)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    from impax.data.sources import discover
    from impax.evaluation.ceiling import grid_ceiling, voxel_label_iou
    from impax.geometry.mesh_io import MeshError, load_mesh

    keep = set(Path(args.list).read_text().split()) if args.list else None
    store = None
    if args.store:
        from impax.data.store import ShapeStore

        store = ShapeStore(args.store)
    rows = {}
    for shape in discover(args.meshes):
        sid = shape.shape_id
        if keep is not None and sid not in keep:
            continue
        try:
            mesh = load_mesh(shape.path)
        except MeshError as e:
            print(f"skipped: {e}", file=sys.stderr)
            continue
        m = grid_ceiling(mesh, args.resolution)
        rows[sid] = {"closed": bool(mesh.is_watertight), "iou": float(m["iou"]), "fscore": float(m["fscore"]),
                     "chamfer_l1": float(m["chamfer_l1"])}
        line = f"{sid:32s} closed={int(mesh.is_watertight)} IoU {m['iou']:.3f}  F {m['fscore']:.1f}"
        if store is not None:
            rows[sid]["labels"] = voxel_label_iou(mesh, store.read(sid, "voxels"))
            line += f"  labels IoU {rows[sid]['labels']:.3f}"
        print(line, flush=True)
    if not rows:
        print("no meshes", file=sys.stderr)
        return 1
    keys = ("iou", "fscore", "chamfer_l1") + (("labels",) if store is not None else ())
    mean = {k: sum(r[k] for r in rows.values()) / len(rows) for k in keys}
    n85 = sum(r["iou"] >= 0.85 for r in rows.values())
    print(f"mean of {len(rows)}: IoU {mean['iou']:.3f}  F {mean['fscore']:.1f}  CD-L1 {mean['chamfer_l1']:.4f}; "
          f"{n85} shapes with IoU >= 0.85 (grid {args.resolution})"
          + (f"; labels IoU {mean['labels']:.3f}" if store is not None else ""))
    if args.out:
        Path(args.out).write_text(json.dumps({"resolution": args.resolution, "mean": mean, "shapes": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

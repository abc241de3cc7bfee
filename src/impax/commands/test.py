"""``impax test RUN --data DATA --meshes SRC``: reconstruct a split of a prepared store with a
trained run and score it against the meshes the store was prepared from — one command for the
held-out numbers of a run.

IM-NET runs reconstruct from the stored 64³ voxels, LDIF/SIF runs from their training input (depth
images or surface points). ``SRC`` is the folder ``impax prepare`` read (each shape's ground truth
is ``SRC/<its source path>``). A store prepared from OccNet's data (impax prepare --from-occnet)
is scored against OccNet's arrays instead: --occnet ROOT, the OccNet dataset folder it was prepared
from (IoU from points.npz, surface metrics against pointcloud.npz, in OccNet's frame by default;
as impax evaluate --occnet). Writes ``OUT/meshes/``, ``OUT/per_shape.csv``, ``OUT/summary.md``
(printed) and ``OUT/summary.json``; frames and metrics as ``impax evaluate``.
Exit status 0, or 3 when some shapes could not be reconstructed or scored.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from impax.conventions import EVAL_FRAMES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("test", help="reconstruct a split of a prepared store with a run and score it",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="training run directory")
    p.add_argument("--data", required=True, help="the prepared store (impax prepare OUT)")
    p.add_argument("--meshes", default=None, help="the mesh folder the store was prepared from (ground truth)")
    p.add_argument("--occnet", default=None, metavar="ROOT",
                   help="for a store prepared with --from-occnet: the OccNet dataset folder it was prepared from "
                        "(ground truth: its points.npz and pointcloud.npz)")
    p.add_argument("--split", default="test", help="split to score (default test)")
    p.add_argument("--out", default=None, help="output folder (default RUN/test-SPLIT)")
    p.add_argument("--resolution", type=int, default=128, help="extraction resolution (default 128)")
    p.add_argument("--refine", type=int, default=0, metavar="STEPS", help="test-time optimisation steps per shape "
                   "(as impax reconstruct --refine; default 0)")
    p.add_argument("--frame", choices=EVAL_FRAMES, default=None,
                   help="scoring frame (default gt-unit; occnet for OccNet data, which takes occnet or original)")
    p.add_argument("--samples", type=int, default=100_000, help="surface samples per mesh (default 100000)")
    p.add_argument("--iou-samples", type=int, default=100_000, help="uniform samples for IoU (default 100000)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from impax.commands._checks import at_least, out_folder, resolution
    from impax.evaluation.metrics import MetricsConfig
    from impax.evaluation.split import test_split

    resolution(args.resolution)
    at_least(args.refine, 0, "--refine")
    at_least(args.samples, 1, "--samples")
    at_least(args.iou_samples, 1, "--iou-samples")
    if args.meshes is not None and args.occnet is not None:
        raise ValueError("give --meshes (a store prepared from meshes) or --occnet (one prepared from OccNet data), "
                         "not both")
    for flag, path in (("--data", args.data), ("--meshes", args.meshes), ("--occnet", args.occnet), ("RUN", args.run)):
        if path is not None and not Path(path).is_dir():
            raise ValueError(f"{flag} {path}: no such folder")
    out = out_folder(args.out or Path(args.run) / f"test-{args.split}")
    t0 = time.perf_counter()

    def progress(phase: str, i: int, n: int, rec: dict | None) -> None:
        if args.quiet:
            return
        spent = time.perf_counter() - t0
        if phase == "reconstruct":
            print(f"reconstructing {n} shapes of split {args.split!r} ...", file=sys.stderr)
            return
        eta = spent / i * (n - i) if i else 0.0
        print(f"[{i}/{n}] {rec['id']}: IoU={rec.get('iou', float('nan')):.4f} F={rec.get('fscore', float('nan')):.2f}"
              f" ({rec['status']})  {spent:.0f} s, ETA {eta:.0f} s", file=sys.stderr)

    res = test_split(args.run, args.data, args.meshes, out, split=args.split, resolution=args.resolution,
                     refine=args.refine, frame=args.frame,
                     cfg=MetricsConfig(n_samples=args.samples, iou_samples=args.iou_samples), progress=progress,
                     occnet=args.occnet)
    print((out / "summary.md").read_text())
    print(f"wrote {out / 'per_shape.csv'}, {out / 'summary.md'}, {out / 'summary.json'}", file=sys.stderr)
    return 3 if any(r["status"] != "ok" for r in res["shapes"]) else 0

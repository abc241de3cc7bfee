"""``impax evaluate PRED GT``: reconstruction metrics (or generation metrics) of meshes.
``impax evaluate PRED --occnet ROOT``: the same metrics against OccNet's preprocessed data.

Both meshes of a pair are scored in one frame, set by the ground truth (``--frame``):

  gt-unit   (default) bounding box centred, diagonal 1 — IM-NET's frame, scale-free: a shape and
            its 100x copy score the same
  occnet    bounding box centred, largest extent 1 — OccNet's unit-cube frame
  gaps      area-weighted centroid at 0, PCA scale 0.25 — LDIF's GAPS frame
  original  each mesh's own units (Chamfer and tau=0.01 then mean different things per shape;
            a warning says so when the ground truths' sizes differ by more than 2x)

Metrics: chamfer_l1/l2, fscore (tau, default 0.01 in the frame's units), fscore_2tau, fscore_bbox
(tau = 1% of the ground truth's bounding-box diagonal, whatever the frame), precision, recall,
normal_consistency, iou (uniform samples in the padded box) and iou_voxels (IM-NET's 64^3). The IoU
of an open (not watertight) ground truth is marked in the tables.

OccNet's data as the ground truth (--occnet ROOT, an OccNet dataset folder: <class>/<model>/ with
points.npz and pointcloud.npz, split lists <class>/test.lst): scored as OccNet's eval_meshes.py does,
IoU from the points.npz occupancies (the prediction's inside test at those points) and Chamfer-L1,
normal consistency and F-score against the pointcloud.npz surface points, in OccNet's frame
(--frame occnet, the default here; or original). Predictions are PRED/<class>/<model>.*, or
<class>_<model>.* (the names impax test and impax reconstruct give shapes of a store prepared with
--from-occnet), or <model>.*; they are in the shapes' original frame unless --pred-frame occnet
(OccNet's own generated meshes). There is no voxel IoU here. Example:
  impax evaluate recon/ --occnet ShapeNet/ --split test

Writes ``per_shape.csv``, ``summary.md`` and ``summary.json`` to ``--out`` and prints the Markdown
table. Exit status: 0 when every shape was scored normally, 3 when some were empty, missing or
unreadable (they still get defined scores), 1 when nothing could be evaluated or an argument is
invalid. Predictions that match no ground-truth mesh are named in a warning and not scored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from impax.conventions import EVAL_FRAMES


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="score predicted meshes against ground truth (Chamfer, F-score, NC, IoU; or COV/MMD/1-NNA)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pred", help="predicted mesh file, or a folder of them")
    p.add_argument("gt", nargs="?", default=None,
                   help="ground-truth mesh file, or a folder of them (class = first sub-folder); not with --occnet")
    p.add_argument("--occnet", default=None, metavar="ROOT",
                   help="score against OccNet's points.npz and pointcloud.npz under ROOT instead of meshes (see above)")
    p.add_argument("--split", default="test",
                   help="with --occnet: the split list to score (default test; 'all': every shape folder)")
    p.add_argument("--pred-frame", choices=("original", "occnet"), default="original",
                   help="with --occnet: the frame the predictions are in (default original; occnet for meshes "
                        "OccNet generated)")
    p.add_argument("--out", default=None, help="output folder (default: PRED's folder / 'eval')")
    p.add_argument("--frame", choices=EVAL_FRAMES, default=None,
                   help="frame both meshes are scored in, set by the ground truth (default gt-unit; with --occnet "
                        "occnet, or original; see above)")
    p.add_argument("--samples", type=int, default=100_000, help="surface samples per mesh, >= 1 (default 100000)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--tau", type=float, default=0.01, help="F-score threshold, LDIF's 0.01 (default)")
    p.add_argument("--iou-samples", type=int, default=100_000, help="uniform samples for IoU (default 100000)")
    p.add_argument("--voxel-res", type=int, default=64, help="voxel IoU resolution, IM-NET's 64 (default)")
    p.add_argument("--no-iou", action="store_true", help="skip both IoUs (open or non-watertight ground truth)")
    p.add_argument("--generation", action="store_true",
                   help="treat PRED and GT as two sets and report coverage, MMD and 1-NNA with Chamfer distance")
    p.add_argument("--gen-points", type=int, default=2048, help="points per shape for --generation (default 2048)")
    p.add_argument("--quiet", action="store_true", help="no per-shape progress lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from impax.evaluation import tables
    from impax.evaluation.metrics import METRICS, MetricsConfig
    from impax.evaluation.runner import evaluate_pairs, pair_files, pair_occnet, scale_spread, unmatched_predictions

    from impax.commands._checks import at_least, out_folder

    if (args.gt is None) == (args.occnet is None):
        raise ValueError("give either GT (ground-truth meshes) or --occnet ROOT (OccNet's data), not both"
                         if args.gt else "give GT (ground-truth meshes) or --occnet ROOT (OccNet's data)")
    if args.occnet is not None:
        from impax.evaluation.runner import OCCNET_EVAL_FRAMES

        args.frame = args.frame or "occnet"
        if args.frame not in OCCNET_EVAL_FRAMES:
            raise ValueError(f"--frame {args.frame}: with --occnet the frame is occnet or original (the ground truth "
                             "is OccNet's arrays, not a mesh to normalise)")
        if args.generation:
            raise ValueError("--generation compares two sets of meshes; it does not take --occnet")
    args.frame = args.frame or "gt-unit"
    pred, gt = Path(args.pred), Path(args.gt if args.gt is not None else args.occnet)
    out = out_folder(Path(args.out) if args.out else (pred if pred.is_dir() else pred.parent) / "eval")
    at_least(args.samples, 1, "--samples")
    at_least(args.gen_points, 1, "--gen-points")
    if not args.no_iou:
        at_least(args.iou_samples, 1, "--iou-samples")
        at_least(args.voxel_res, 2, "--voxel-res")
    if not args.tau > 0:
        raise ValueError(f"--tau must be > 0, got {args.tau:g}")
    if args.generation:
        return _run_generation(pred, gt, out, args)
    occnet = args.occnet is not None
    pairs = pair_occnet(pred, gt, None if args.split == "all" else args.split) if occnet else pair_files(pred, gt)
    if not pairs:
        print(f"impax evaluate: no ground-truth meshes under {gt}", file=sys.stderr)
        return 1
    extra = unmatched_predictions(pred, pairs)
    if extra:
        shown = ", ".join(str(p) for p in extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        print(f"warning: {len(extra)} prediction(s) have no ground truth under {gt} and are not scored: {shown}",
              file=sys.stderr)
    cfg = MetricsConfig(n_samples=args.samples, seed=args.seed, tau=args.tau, iou_samples=args.iou_samples,
                        voxel_resolution=args.voxel_res, compute_iou=not args.no_iou,
                        compute_voxel_iou=not args.no_iou and not occnet)
    metrics = [m for m in METRICS if not ((args.no_iou and m.startswith("iou")) or (occnet and m == "iou_voxels"))]

    def progress(i: int, r: dict) -> None:
        if args.quiet:
            return
        note = f"  [{r['status']}] {r['message']}" if r["status"] != "ok" or r.get("message") else ""
        print(f"[{i + 1}/{len(pairs)}] {r['id']}: F={_f(r.get('fscore'))} CD-L1={_f(r.get('chamfer_l1'))} "
              f"IoU={_f(r.get('iou'))}{note}", file=sys.stderr)

    records = evaluate_pairs(pairs, cfg, progress, frame=args.frame,
                             occnet_pred_frame=args.pred_frame if occnet else None)
    spread = scale_spread(records)
    if args.frame == "original" and spread > 2:
        print(f"warning: the ground truths' sizes differ by {spread:.3g}x; in --frame original the means mix "
              "units (tau and Chamfer are absolute): use --frame gt-unit for comparable numbers", file=sys.stderr)
    summary = tables.summarize(records, metrics)
    summary["config"] = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}
    tables.write_csv(records, out / "per_shape.csv", metrics)
    md = tables.markdown_table(summary, metrics)
    (out / "summary.md").parent.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(md)
    tables.write_json({"summary": summary, "shapes": records}, out / "summary.json")
    print(md)
    print(f"wrote {out / 'per_shape.csv'}, {out / 'summary.md'}, {out / 'summary.json'}", file=sys.stderr)
    bad = [r for r in records if r["status"] != "ok"]
    if len(bad) == len(records) and all(r["status"] in ("invalid-gt", "error") for r in records):
        return 1
    return 3 if bad else 0


def _f(v) -> str:
    return "nan" if v is None or v != v else f"{v:.4g}"


def _run_generation(pred: Path, gt: Path, out: Path, args: argparse.Namespace) -> int:
    from impax.evaluation import tables
    from impax.evaluation.generation import generation_metrics
    from impax.evaluation.runner import _mesh_files, sample_set

    if not pred.is_dir() or not gt.is_dir():
        print("impax evaluate --generation: PRED and GT must both be folders", file=sys.stderr)
        return 1
    gen, p1 = sample_set(_mesh_files(pred), args.gen_points, seed=args.seed, frame=args.frame)
    ref, p2 = sample_set(_mesh_files(gt), args.gen_points, seed=args.seed + 1_000_003, frame=args.frame)
    for msg in p1 + p2:
        print(f"warning: {msg}", file=sys.stderr)
    if not gen or not ref:
        print("impax evaluate --generation: need at least one non-empty mesh in each set", file=sys.stderr)
        return 1
    res = generation_metrics(gen, ref)
    md = (f"Frame: {tables.FRAME_TEXT[args.frame]} (each shape by its own bounding box).\n\n"
          "| metric | value |\n|---|---|\n"
          + "".join(f"| {k} | {v:.6g} |\n" for k, v in res.items()))
    out.mkdir(parents=True, exist_ok=True)
    (out / "generation.md").write_text(md)
    tables.write_json({"generation": res, "problems": p1 + p2, "frame": args.frame}, out / "generation.json")
    print(md)
    return 3 if p1 or p2 else 0

"""``impax prepare SRC OUT``: meshes (or OccNet's preprocessed data) → training data (LDIF samples, SDF grid, depth; IM-NET voxels/points/views).

SRC may be a flat folder of meshes, ``<class>/<file>`` folders, or ShapeNet v1/v2 trees. Every shape
becomes ``OUT/shapes/<id>.h5``; bad files are skipped and listed in ``OUT/report.json`` and
``OUT/failed.txt``. Rerunning the same command resumes. ``--shard i/n`` prepares one deterministic
part (run all n, then ``impax prepare --merge OUT``). ``--export-imnet SPLIT`` additionally writes
the official IM-NET HDF5 layout (``OUT/imnet/all_vox256_img_SPLIT.hdf5`` + ``.txt``).

Each file is prepared in a worker process under per-file limits: ``--max-memory`` (address space
beyond an idle worker's, via RLIMIT_AS; default 3/4 of the memory divided by the workers),
``--time-limit`` (default 1800 s) and ``--max-faces`` (default 2,000,000, read from the header
before loading; a larger mesh is refused with the reason, never simplified). A worker that crashes
or is killed fails only its file. One process writes to OUT at a time (shards of one job share it);
a second one is refused. See docs/errors.md.

OccNet's preprocessed data (--from-occnet): SRC is an OccNet dataset folder
(<class>/<model>/points.npz and pointcloud.npz, split lists <class>/train.lst, val.lst, test.lst).
Each shape becomes a record in the GAPS frame for the ldif, sif and sifpp recipes: OccNet's
occupancy samples (uniform, and those within 0.04 of the surface as the near-surface set), its
surface points with normals, and a coarse SDF grid estimated from them; the splits are OccNet's
lists. The GAPS frame is estimated from the surface samples and recorded with OccNet's own frame
(loc, scale), so results map back to the original one. OccNet ships no meshes, so there are no
depth images (train with --set input=points), no signed distances and no IM-NET voxels (the
imnet recipes refuse such a store). Corrupt .npz files are skipped and listed like broken meshes.
Example: impax prepare ShapeNet/ occnet-store --from-occnet

Exit status: 0 complete, 3 partial success (some inputs failed, now or in an earlier run; they are
listed in report.json), 1 failure (nothing usable, or an error stopped the run: one line on stderr).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

STAGES = ("uniform", "near", "surface", "sdf_grid", "depth", "imnet", "views", "occupancy")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("prepare", help="prepare a folder of meshes (or OccNet's data) into training data",
                              usage="impax prepare SRC OUT [options]\n       impax prepare --merge OUT",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="SRC OUT", help="source folder and output folder (only OUT with --merge)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: all CPU cores; 0: in this process, without limits)")
    p.add_argument("--max-memory", type=float, default=None, metavar="GB",
                   help="address space a worker may add while preparing one file (default: 3/4 of the "
                        "memory divided by the workers, at least 1; 0: no limit)")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="wall time per file before its worker is stopped and the file fails (default 1800; 0: none)")
    p.add_argument("--max-faces", type=int, default=None, metavar="N",
                   help="refuse meshes with more faces (read from the file header; default 2000000; 0: no cap)")
    p.add_argument("--shard", default=None, metavar="i/n", help="prepare only shard i of n (0-based)")
    p.add_argument("--merge", action="store_true", help="finalise OUT (index.json, report.json) after sharded runs")
    p.add_argument("--from-occnet", action="store_true",
                   help="SRC is an OccNet dataset (<class>/<model>/points.npz, pointcloud.npz, <class>/*.lst): "
                        "make LDIF/SIF training data from it (see above)")
    p.add_argument("--seed", type=int, default=0, help="global seed (default 0)")
    p.add_argument("--quick", action="store_true", help="small sample counts/resolutions for smoke runs")
    p.add_argument("--skip", default="", metavar="STAGE,...",
                   help=f"stages to switch off, comma-separated, from: {', '.join(STAGES)}")
    p.add_argument("--fast-voxels", action="store_true",
                   help="IM-NET training voxels from a 64^3 grid of cell centres instead of IM-NET's own sampling "
                        "(64^3 max-pooled from 256^3, points on the 256^3 grid, every label exact; the default). "
                        "About 2 s less per shape; about 6 %% of the level-64 labels then disagree with the surface")
    p.add_argument("--voxels-256", action="store_true", help=argparse.SUPPRESS)  # the default since 0.x; old scripts
    p.add_argument("--depth-float16", action="store_true", help="store depth images as float16")
    p.add_argument("--split-fractions", default="0.8,0.1,0.1", metavar="TRAIN,VAL,TEST",
                   help="hash split fractions (default 0.8,0.1,0.1)")
    p.add_argument("--split-list", action="append", default=[], metavar="SPLIT=FILE",
                   help="use split lists instead of hashing (repeat: train=train.lst test=test.lst)")
    p.add_argument("--export-imnet", action="append", default=[], metavar="SPLIT",
                   help="after a complete/partial run, also write the official IM-NET HDF5 of SPLIT")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n, got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    return i, n


def _parse_fractions(text: str) -> tuple[float, float, float]:
    from impax.data.prepare import check_fractions

    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"--split-fractions must be 3 numbers TRAIN,VAL,TEST, got {text!r}") from None
    try:
        return check_fractions(values)
    except ValueError:
        raise ValueError(f"--split-fractions must be 3 non-negative numbers TRAIN,VAL,TEST with a positive "
                         f"sum, got {text!r}") from None


def _limits(args: argparse.Namespace):
    from impax.data.prepare import DEFAULT_MAX_FACES, DEFAULT_TIME_LIMIT, Limits

    for flag, value in (("--max-memory", args.max_memory), ("--time-limit", args.time_limit),
                        ("--max-faces", args.max_faces)):
        if value is not None and value < 0:
            raise ValueError(f"{flag} must be >= 0, got {value:g}")
    if args.workers is not None and args.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {args.workers}")
    return Limits(max_memory=None if args.max_memory is None else int(args.max_memory * 2 ** 30),
                  time_limit=DEFAULT_TIME_LIMIT if args.time_limit is None else args.time_limit,
                  max_faces=DEFAULT_MAX_FACES if args.max_faces is None else args.max_faces)


def run(args: argparse.Namespace) -> int:
    from impax.data.pipeline import PrepareConfig
    from impax.data.prepare import merge, prepare

    if args.merge:
        if len(args.paths) != 1:
            raise ValueError("--merge takes only OUT")
        res = merge(args.paths[0])
        _report(res)
        return _export(args, Path(args.paths[0]), res.status)
    if len(args.paths) != 2:
        raise ValueError("expected SRC OUT")
    src, out = (Path(p) for p in args.paths)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stages in --skip: {', '.join(sorted(unknown))} (known: {', '.join(STAGES)})")
    if args.from_occnet:
        from impax.data.occnet import OccNetPrepareConfig

        if args.export_imnet:
            raise ValueError("--export-imnet: a store prepared from OccNet data has no IM-NET voxels or points")
        cfg = OccNetPrepareConfig.quick() if args.quick else OccNetPrepareConfig()
        fields = {f.name for f in dataclasses.fields(cfg)}
        cfg = dataclasses.replace(cfg, **{s: False for s in skip if s in fields})
    else:
        from impax.data.occnet import looks_like_occnet
        from impax.data.sources import discover

        if looks_like_occnet(src) and not discover(src):
            raise ValueError(f"{src} holds no meshes but looks like an OccNet dataset (<class>/<model>/points.npz): "
                             "add --from-occnet")
        cfg = PrepareConfig.quick() if args.quick else PrepareConfig()
        cfg = dataclasses.replace(cfg, voxels_256=not args.fast_voxels,
                                  depth_dtype="float16" if args.depth_float16 else cfg.depth_dtype,
                                  **{s: False for s in skip})
    lists = {}
    for item in args.split_list:
        name, _, path = item.partition("=")
        if not path or not name:
            raise ValueError(f"--split-list needs SPLIT=FILE, got {item!r}")
        lists[name] = path
    fractions = _parse_fractions(args.split_fractions)
    res = prepare(src, out, cfg, workers=args.workers, shard=_parse_shard(args.shard), seed=args.seed,
                  split_fractions=fractions, split_lists=lists or None, progress=not args.quiet,
                  limits=_limits(args))
    _report(res)
    return _export(args, out, res.status) if args.shard is None else res.status


def _report(res) -> None:
    for f in res.failures:
        print(f"  failed  {f['path']}: {f['reason']}")
    print(res.summary())


def _export(args: argparse.Namespace, out: Path, status: int) -> int:
    from impax.data.prepare import EXIT_FAILURE
    from impax.data.store import ShapeStore, export_imnet_hdf5

    if status == EXIT_FAILURE:
        return status
    from impax.data.safety import FolderLock

    with FolderLock(out, what="impax prepare"):
        for split in args.export_imnet:
            try:
                path = export_imnet_hdf5(ShapeStore(out), split, out / "imnet" / f"all_vox256_img_{split}.hdf5")
            except ValueError as e:
                print(f"impax prepare: IM-NET export of {split!r} failed: {e}", file=sys.stderr)
                return EXIT_FAILURE
            print(f"IM-NET HDF5 ({split}): {path}")
    return status

"""``impax demo``: the whole system on this machine in minutes, from nothing to an HTML report.

Generates built-in shapes (or takes ``--meshes DIR``), splits them into training and held-out
shapes, prepares them, trains IM-AE, LDIF and the latent GAN on short CPU schedules, reconstructs
the held-out shapes with both families, samples the GAN, interpolates between two shapes,
evaluates everything (IoU, Chamfer-L1/L2, F-score, NC; COV/MMD/1-NNA) and writes
``OUT/report/index.html``. About 10 minutes on 2 CPU cores (``--quick``: about 2, a smoke run
with tiny models). Interrupt it at any time: running the same command again reuses the finished
stages and continues training from the checkpoints. Layout and budgets: :mod:`impax.demo`.

Exit status: 0 complete, 3 finished with some stages not available or failed (the report says
which), 1 nothing usable, 130 interrupted.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="run the whole pipeline on built-in shapes and write an HTML report",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="impax-demo", help="output folder (default ./impax-demo)")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny models, few steps (about 2 minutes)")
    p.add_argument("--meshes", default=None, metavar="DIR",
                   help="use your own meshes (a folder; <class>/<file> sub-folders give classes) "
                        "instead of the built-in shapes")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--workers", type=int, default=None, metavar="K",
                   help="processes for data preparation (default: all CPU cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from impax.demo import run_demo

    return run_demo(args.out, quick=args.quick, meshes=args.meshes, seed=args.seed, workers=args.workers,
                    progress=not args.no_progress, command=getattr(args, "command_line", None))

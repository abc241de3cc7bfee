"""``impax train NAME --data DATA --out RUN``: train a model; running it again resumes.

Several hosts: run the same command on every host with ``--coordinator HOST:PORT
--num-processes N --process-id I`` (or the ``IMPAX_COORDINATOR``/``IMPAX_NUM_PROCESSES``/
``IMPAX_PROCESS_ID`` environment variables, or ``--distributed`` for JAX's cluster
auto-detection, e.g. under SLURM) and the same ``--out`` on a shared file system; see
``docs/distributed.md``.
"""

from __future__ import annotations

import argparse
import json
import sys


def _parse_set(items: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"impax train: --set needs key=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def register(sub: argparse._SubParsersAction) -> None:
    # Recipe names come from a light module: importing impax.train here would load JAX for every CLI call.
    from impax.inference.families import RECIPE_FAMILY as RECIPES

    p = sub.add_parser("train", help="train IM-NET (imnet-ae|imnet-gan|imnet-svr) or SIF/LDIF (ldif|sif|sifpp)",
                       description=__doc__)
    p.add_argument("recipe", choices=sorted(RECIPES), help="what to train")
    p.add_argument("--data", required=True, help="prepared data (an `impax prepare` output, an IM-NET HDF5 file, "
                   "or for imnet-gan/imnet-svr the IM-AE run directory where the recipe says so)")
    p.add_argument("--out", required=True, help="run directory (created; an existing one is resumed)")
    p.add_argument("--preset", default="cpu", help="configuration preset (default: cpu; 'paper' reproduces the paper)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=None, help="stop (with a checkpoint) after this many steps")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (JSON value), repeatable")
    p.add_argument("--init-from", default=None, metavar="SOURCE",
                   help="start a new run from the weights of SOURCE: pretrained:<name> (weights shipped with "
                        "impax, e.g. pretrained:imnet-ae-cpu) or another run's folder; the model sizes must "
                        "match; optimiser and data position start fresh (default: random initialisation)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    d = p.add_argument_group("multi-host training (docs/distributed.md)")
    d.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="address of process 0's coordinator (env IMPAX_COORDINATOR)")
    d.add_argument("--num-processes", type=int, default=None, metavar="N",
                   help="number of processes taking part (env IMPAX_NUM_PROCESSES)")
    d.add_argument("--process-id", type=int, default=None, metavar="I",
                   help="this process's index, 0 .. N-1 (env IMPAX_PROCESS_ID)")
    d.add_argument("--distributed", action="store_true",
                   help="let JAX detect the cluster (SLURM, Open MPI, Kubernetes) when no "
                   "coordinator is given")
    p.set_defaults(func=run)


def distributed_spec(args: argparse.Namespace):
    """The :class:`~impax.train.distributed.DistributedSpec` of the flags and environment."""
    from impax.train.distributed import spec_from

    try:
        return spec_from(args.coordinator, args.num_processes, args.process_id,
                         auto=args.distributed)
    except ValueError as e:
        raise SystemExit(f"impax train: {e}") from None


#: Evaluations run by the command after a recipe's training (they live in layers above ``train``):
#: ``"module:function"`` called as ``function(run_dir, summary) -> summary``.
AFTER_TRAINING = {"imnet-gan": "impax.evaluation.gan:after_training"}


def run(args: argparse.Namespace) -> int:
    from impax.train.distributed import initialize
    from impax.train.recipes import recipe_module

    initialize(distributed_spec(args))  # before any JAX computation; a no-op for one process
    mod = recipe_module(args.recipe)
    kw = {}
    if args.init_from:
        import inspect

        if "init_from" not in inspect.signature(mod.train).parameters:
            raise SystemExit(f"impax train: --init-from is not supported by {args.recipe}")
        kw["init_from"] = args.init_from
    summary = mod.train(args.recipe, data=args.data, out=args.out, preset=args.preset,
                        overrides=_parse_set(args.set), seed=args.seed, max_steps=args.max_steps,
                        progress=not args.no_progress, **kw)
    after = AFTER_TRAINING.get(args.recipe)
    if after is not None:
        import importlib

        mod_name, fn_name = after.split(":")
        summary = getattr(importlib.import_module(mod_name), fn_name)(args.out, summary)
    print(json.dumps(summary, indent=2, default=str))
    return 0 if summary.get("stopped") in (None, "done", "max_steps", "signal") else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(1)

"""``impax train NAME --data DATA --out RUN``: train a model; running it again resumes."""

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
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from impax.train.recipes import recipe_module

    mod = recipe_module(args.recipe)
    summary = mod.train(args.recipe, data=args.data, out=args.out, preset=args.preset,
                        overrides=_parse_set(args.set), seed=args.seed, max_steps=args.max_steps,
                        progress=not args.no_progress)
    print(json.dumps(summary, indent=2, default=str))
    return 0 if summary.get("stopped") in (None, "done", "max_steps", "signal") else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(1)

"""Export a finished training run as a shipped pretrained model (``impax/train/pretrained/<name>/``).

    python scripts/export_pretrained.py RUN NAME --summary RUN.summary.json \
        --command "shapes=impax shapes ..." --command "prepare=impax prepare ..." --command "train=impax train ..."

Writes ``weights.npz`` (the newest checkpoint's model arrays), ``run.json`` (the run's own) and
``provenance.json``: the commands, the data recipe (the store's ``prepare.json`` and split counts),
seed, steps, training seconds (from the summary ``impax train`` printed), the IoU the recipe measured
at the end (``eval_*.json``), the machine and the date. Maintainer tool; not part of the package.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("name")
    ap.add_argument("--summary", type=Path, required=True, help="the JSON summary `impax train` printed")
    ap.add_argument("--command", action="append", default=[], metavar="STEP=COMMAND",
                    help="a command that made the data or the weights, in order (repeatable)")
    ap.add_argument("--note", default="", help="free text, e.g. the load on the machine")
    ap.add_argument("--unfinished", action="store_true",
                    help="export a run without a final 'done' summary (stopped early, or its end-of-run "
                         "evaluation was stopped); provenance records its step against --steps-planned")
    ap.add_argument("--steps-planned", type=int, default=None, help="the run's total steps (for --unfinished)")
    args = ap.parse_args()

    import jax

    from impax.data.store import ShapeStore
    from impax.train.checkpoint import CheckpointStore
    from impax.train.pretrained import write

    run = json.loads((args.run / "run.json").read_text())
    try:
        summary = json.loads(args.summary.read_text())
    except (OSError, ValueError):
        summary = {}
    if summary.get("stopped") != "done" and not args.unfinished:
        raise SystemExit(f"{args.run}: the run is not finished ({summary.get('stopped')!r}); --unfinished exports it")
    store = CheckpointStore(args.run, keep=None, async_save=False)
    try:
        step = store.latest_step()
        meta = store.restore_meta(step)
        from impax.train.registry import recipe

        r = recipe(run["recipe"])
        model = r.build_model(r.from_run_json(run), int(run["seed"]))
        from flax import nnx

        from impax.train.checkpoint import named_leaves

        like = {k: np.asarray(v) for k, v in named_leaves(nnx.state(model)).items()}
        arrays = {k: np.asarray(v, np.float32) if np.issubdtype(np.asarray(v).dtype, np.floating) else np.asarray(v)
                  for k, v in store.restore_model(step, like).items()}
    finally:
        store.close()
    data = Path(run["data"])
    ds = ShapeStore(data)
    prepare = json.loads((data / "prepare.json").read_text()) if (data / "prepare.json").is_file() else {}
    evals = {p.name: json.loads(p.read_text()) for p in sorted(args.run.glob("eval_*.json"))}
    for e in evals.values():  # keep the means, not every shape
        for part in e.values():
            if isinstance(part, dict):
                part.pop("per_shape", None)
    commands = {}
    for c in args.command:
        k, _, v = c.partition("=")
        commands[k] = v
    prov = {
        "name": args.name,
        "recipe": run["recipe"], "preset": run["preset"], "seed": run["seed"],
        "commands": commands,
        "data": {"prepare": prepare, "splits": ds.index().get("splits"), "count": len(ds),
                 "shapes": "impax shapes --stream pretrain (a random stream no impax shapes/impax demo seed uses)"},
        "global_step": int(meta["position"]["global_step"]),
        "finished": summary.get("stopped") == "done" or (
            args.steps_planned is not None and int(meta["position"]["global_step"]) >= args.steps_planned),
        "steps_planned": args.steps_planned,
        "stopped": summary.get("stopped", "no summary: the command was stopped after its last checkpoint"),
        "train_seconds": summary.get("train_seconds"),
        "eval": evals,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "jax": jax.__version__, "devices": [str(d) for d in jax.devices()]},
        "exported": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "note": args.note,
    }
    d = write(args.name, arrays, run, prov)
    print(f"wrote {d} ({sum(a.size for a in arrays.values())} values)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

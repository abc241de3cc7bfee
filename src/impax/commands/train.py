"""``impax train NAME --data DATA --out RUN``: train a model; running it again resumes.

Several hosts: run the same command on every host with
``--coordinator HOST:PORT --num-processes N --process-id I`` (or the ``IMPAX_COORDINATOR``,
``IMPAX_NUM_PROCESSES`` and ``IMPAX_PROCESS_ID`` environment variables, or ``--distributed`` for JAX's cluster
auto-detection, e.g. under SLURM) and the same ``--out`` on a shared file system; see
``docs/distributed.md``.

The preset, every ``--set key=value`` (key and type) and ``--max-steps`` are checked before
anything is written. One process trains in a run folder at a time (a second one is refused with
one line). A first start that fails before its first checkpoint leaves the folder as it found it
(``run.json`` included), so the corrected command starts cleanly. SIGINT or SIGTERM stops at the
next step with a checkpoint (running the command again resumes) and exits with 128 + the signal
(130, 143). Exit status otherwise: 0 trained (or stopped at ``--max-steps``), 1 failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import typing
from pathlib import Path
from typing import Any


def _parse_set(items: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set needs key=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def register(sub: argparse._SubParsersAction) -> None:
    # The registry is a light module (no JAX): --help stays fast.
    from impax.train.registry import RECIPES

    p = sub.add_parser("train", help="train IM-NET (imnet-ae|imnet-gan|imnet-svr) or SIF/LDIF (ldif|sif|sifpp)",
                       description=__doc__)
    p.add_argument("recipe", choices=sorted(RECIPES), help="what to train")
    p.add_argument("--data", default=None, help="prepared data (an `impax prepare` output, an IM-NET HDF5 file, "
                   "or for imnet-gan/imnet-svr the IM-AE run directory); required to train")
    p.add_argument("--out", default=None, help="run directory (created; an existing one is resumed); required to train")
    p.add_argument("--preset", default="cpu", help="configuration preset (default: cpu; 'paper' reproduces the paper; "
                   "--list-presets shows them)")
    p.add_argument("--list-presets", action="store_true", help="list the recipe's presets with one line each, and exit")
    p.add_argument("--show-config", action="store_true",
                   help="print the full resolved config (preset, --config, --set) with each field's help, and exit")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="a JSON or TOML file of config fields (nested like --show-config's keys), applied before --set")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the initialisation, data order and sampling (default 0; part of the run)")
    p.add_argument("--max-steps", type=int, default=None, help="stop (with a checkpoint) after this many steps")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (JSON value), repeatable")
    p.add_argument("--init-from", default=None, metavar="SOURCE",
                   help="start a new run from the weights of SOURCE: pretrained:<name> (weights shipped with "
                        "impax, e.g. pretrained:imnet-ae-cpu) or another run's folder; the model sizes must "
                        "match; optimiser and data position start fresh (default: random initialisation)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--reevaluate", action="store_true",
                   help="on a finished run, evaluate again (default: print the summary it recorded and exit)")
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


def _checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps of the checkpoints in ``run_dir`` (folder names only: no orbax import)."""
    ckpts = run_dir / "checkpoints"
    return [int(p.name) for p in ckpts.iterdir() if p.name.isdigit()] if ckpts.is_dir() else []


def _roll_back(run_dir: Path, before: set[str] | None, lock: Any) -> None:
    """Remove what a failed first start created in ``run_dir`` (all of it when it did not exist)."""
    if not run_dir.is_dir():
        return
    for p in run_dir.iterdir():
        if p.name.startswith(".impax.lock") or (before is not None and p.name in before):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    if before is None:
        (run_dir / lock.name).unlink(missing_ok=True)
        lock.release()
        try:
            run_dir.rmdir()
        except OSError:
            pass


#: ``RUN/summary.json``: the summary of a finished run and the key of the command that finished it.
SUMMARY_FILE = "summary.json"


def _command_key(args: argparse.Namespace, overrides: dict[str, Any]) -> str:
    """What makes two ``impax train`` commands the same run: recipe, data, preset, overrides, seed,
    weights source."""
    import hashlib

    what = {"recipe": args.recipe, "data": str(Path(args.data).absolute()) if args.data else None,
            "preset": args.preset, "overrides": overrides, "seed": args.seed, "init_from": args.init_from}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _finished_summary(out: Path, key: str) -> dict[str, Any] | None:
    """The recorded summary when ``out`` was finished by the same command and has not changed since
    (its newest checkpoint is still the one the summary names)."""
    try:
        rec = json.loads((out / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return None
    summary = rec.get("summary") if isinstance(rec, dict) else None
    if not isinstance(summary, dict) or rec.get("command_key") != key or summary.get("stopped") != "done":
        return None
    steps = _checkpoint_steps(out)
    return summary if steps and max(steps) == summary.get("global_step") else None


def _list_presets(recipe: Any) -> str:
    lines = [f"presets of {recipe.name} (impax train {recipe.name} --preset NAME):"]
    for name, cfg in sorted(recipe.presets.items()):
        doc = {"paper": "the published settings", "cpu": "sized for 2 CPU cores (minutes)",
               "demo": "what impax demo trains", "quick": "smoke runs (seconds)",
               "pretrain": "what made impax's shipped pretrained weights",
               "cpu-wide": "cpu with a 4x wider decoder and exact near-surface labels, for real thin-walled "
                           "meshes (from scratch, ~30 min)"}.get(name, "")
        lines.append(f"  {name:<10} {doc}")
    return "\n".join(lines)


def _show_config(cfg: Any) -> str:
    from impax.configs import describe

    rows = describe(cfg)
    width = max(len(k) for k, _, _ in rows)
    return "\n".join(f"{k:<{width}} = {json.dumps(v, default=str):<14} {h}" for k, v, h in rows)


def run(args: argparse.Namespace) -> int:
    from impax.configs import load_overrides
    from impax.train.distributed import initialize, process_index
    from impax.train.registry import info, recipe as get_recipe
    from impax.train.trainer import last_stop_signal, run_lock

    recipe = get_recipe(args.recipe)
    if args.list_presets:
        print(_list_presets(recipe))
        return 0
    if args.max_steps is not None and args.max_steps < 0:
        raise ValueError(f"--max-steps must be >= 0, got {args.max_steps}")
    overrides = {**(load_overrides(args.config) if args.config else {}), **_parse_set(args.set)}
    cfg = recipe.resolve(args.preset, overrides)  # preset, keys and types checked before anything is written
    if args.show_config:
        print(_show_config(cfg))
        return 0
    if not args.data or not args.out:
        raise ValueError("impax train needs --data and --out (or --list-presets / --show-config)")
    kw = {"init_from": args.init_from} if args.init_from else {}
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    initialize(distributed_spec(args))  # before any JAX computation; a no-op for one process
    primary = process_index() == 0
    key = _command_key(args, overrides)
    done = _finished_summary(out, key)
    if done is not None and not args.reevaluate:
        print(json.dumps(done, indent=2, default=str))
        print(f"impax train: {out} finished earlier with these settings; this is its recorded summary "
              "(--reevaluate evaluates again)", file=sys.stderr)
        return 0
    before = set(os.listdir(out)) if out.is_dir() else None
    fresh = not (out / "run.json").is_file()
    lock = run_lock(out, process_index())
    with lock:
        try:
            summary = recipe.train(args.recipe, data=args.data, out=args.out, preset=args.preset,
                                overrides=overrides, seed=args.seed, max_steps=args.max_steps,
                                progress=not args.no_progress, **kw)
        except BaseException:
            if primary and fresh and not _checkpoint_steps(out):
                _roll_back(out, before, lock)
            raise
        after = info(args.recipe).after_training
        if after is not None:
            import importlib

            mod_name, fn_name = after.split(":")
            summary = getattr(importlib.import_module(mod_name), fn_name)(args.out, summary)
    if primary and summary.get("stopped") == "done" and args.max_steps is None:
        from impax.data.safety import atomic_write_text

        atomic_write_text(out / SUMMARY_FILE, json.dumps({"command_key": key, "summary": summary}, indent=2,
                                                         default=str) + "\n")
    print(json.dumps(summary, indent=2, default=str))
    if summary.get("stopped") == "signal":
        import signal

        sig = last_stop_signal() or int(signal.SIGTERM)
        print(f"impax train: stopped by {signal.Signals(sig).name} with a checkpoint at step "
              f"{summary.get('global_step')}; run the same command again to resume", file=sys.stderr)
        return 128 + sig
    return 0 if summary.get("stopped") in (None, "done", "max_steps") else 1


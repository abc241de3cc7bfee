"""``impax train NAME --data DATA --out RUN``: train a model; running it again resumes.

Several hosts: run the same command on every host with ``--coordinator HOST:PORT
--num-processes N --process-id I`` (or the ``IMPAX_COORDINATOR``/``IMPAX_NUM_PROCESSES``/
``IMPAX_PROCESS_ID`` environment variables, or ``--distributed`` for JAX's cluster
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


def preset_config(mod: Any, recipe: str, preset: str) -> Any:
    """The preset's config of a recipe module (``PRESETS[name]`` or ``PRESETS[recipe][name]``);
    ``ValueError`` naming the choices for an unknown preset; ``None`` when the module has no presets."""
    presets = getattr(mod, "PRESETS", None)
    if isinstance(presets, dict) and isinstance(presets.get(recipe), dict):
        presets = presets[recipe]
    if not isinstance(presets, dict):
        return None
    if preset not in presets:
        raise ValueError(f"unknown {recipe} preset {preset!r}; choose from {', '.join(sorted(presets))}")
    return presets[preset]


def _type_ok(tp: Any, value: Any) -> bool:
    if tp is Any or tp is object:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_type_ok(a, value) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (tuple, list) or tp in (tuple, list):
        return isinstance(value, list)
    if origin is dict or tp is dict or dataclasses.is_dataclass(tp):
        return isinstance(value, dict)
    return True  # a type this check does not know: the config's own validation decides


def _describe(tp: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if tp in names:
        return names[tp]
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(args) == 1 and type(None) in typing.get_args(tp):
        return f"{_describe(args[0])} or null"
    return "a JSON list" if typing.get_origin(tp) in (tuple, list) else str(tp)


def check_overrides(cfg: Any, overrides: dict[str, Any]) -> None:
    """Every ``--set`` key must name a field of ``cfg`` (dotted, list items by index) and its value
    must have the field's type; ``ValueError`` naming the first that does not."""
    for key, value in overrides.items():
        obj, tp = cfg, type(cfg)
        for part in key.split("."):
            if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
                fields = {f.name for f in dataclasses.fields(obj)}
                if part not in fields:
                    raise ValueError(f"--set {key}: unknown config key {key!r}")
                tp = typing.get_type_hints(type(obj)).get(part, Any)
                obj = getattr(obj, part)
            elif isinstance(obj, dict) and part in obj:
                args = typing.get_args(tp)
                tp = args[1] if len(args) == 2 else Any
                obj = obj[part]
            elif isinstance(obj, (tuple, list)) and part.isdigit() and int(part) < len(obj):
                args = typing.get_args(tp)
                tp = args[0] if args and (len(args) == 2 and args[1] is Ellipsis or len(args) == 1) else (
                    args[int(part)] if int(part) < len(args) else Any)
                obj = obj[int(part)]
            else:
                raise ValueError(f"--set {key}: unknown config key {key!r}")
        if not _type_ok(tp, value):
            raise ValueError(f"--set {key}={json.dumps(value)}: expected {_describe(tp)}")


def _has_checkpoint(run_dir: Path) -> bool:
    ckpts = run_dir / "checkpoints"
    return ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir())


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


def run(args: argparse.Namespace) -> int:
    from impax.train.distributed import initialize, process_index
    from impax.train.recipes import recipe_module
    from impax.train.trainer import last_stop_signal, run_lock

    if args.max_steps is not None and args.max_steps < 0:
        raise ValueError(f"--max-steps must be >= 0, got {args.max_steps}")
    overrides = _parse_set(args.set)
    mod = recipe_module(args.recipe)
    cfg = preset_config(mod, args.recipe, args.preset)
    if cfg is not None:
        check_overrides(cfg, overrides)
    kw = {}
    if args.init_from:
        import inspect

        if "init_from" not in inspect.signature(mod.train).parameters:
            raise ValueError(f"--init-from is not supported by {args.recipe}")
        kw["init_from"] = args.init_from
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    initialize(distributed_spec(args))  # before any JAX computation; a no-op for one process
    primary = process_index() == 0
    before = set(os.listdir(out)) if out.is_dir() else None
    fresh = not (out / "run.json").is_file()
    lock = run_lock(out, process_index())
    with lock:
        try:
            summary = mod.train(args.recipe, data=args.data, out=args.out, preset=args.preset,
                                overrides=overrides, seed=args.seed, max_steps=args.max_steps,
                                progress=not args.no_progress, **kw)
        except BaseException:
            if primary and fresh and not _has_checkpoint(out):
                _roll_back(out, before, lock)
            raise
        after = AFTER_TRAINING.get(args.recipe)
        if after is not None:
            import importlib

            mod_name, fn_name = after.split(":")
            summary = getattr(importlib.import_module(mod_name), fn_name)(args.out, summary)
    print(json.dumps(summary, indent=2, default=str))
    if summary.get("stopped") == "signal":
        import signal

        sig = last_stop_signal() or int(signal.SIGTERM)
        print(f"impax train: stopped by {signal.Signals(sig).name} with a checkpoint at step "
              f"{summary.get('global_step')}; run the same command again to resume", file=sys.stderr)
        return 128 + sig
    return 0 if summary.get("stopped") in (None, "done", "max_steps") else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(1)

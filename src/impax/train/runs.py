"""A training run's folder as the rest of impax sees it: ``RUN/run.json`` and loading a run's model.

``run.json`` (written by every recipe before its first step) records the recipe, the preset, the
full config, the data, the seed and, for a run started from other weights, their source. Running
the same command again must use the same settings except those that do not change the maths
(marked ``resumable`` on the config fields, :func:`impax.configs.resumable_paths`); anything else is
a clear error, never a silently mixed run.

Inference, evaluation and the commands read runs through this module (``read_run``,
:func:`load_imnet_ae`), never through a recipe's internals.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from impax.configs import flatten

RUN_JSON = "run.json"


def read_run(run: str | Path) -> dict[str, Any]:
    """The parsed ``RUN/run.json``; a clear error when ``run`` is not a training run."""
    path = Path(run) / RUN_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{run}: not a training run (no run.json); train one with `impax train`")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable run.json ({type(e).__name__}: {e})") from None


def write_run_json(out: str | Path, info: dict[str, Any], resumable: set[str],
                   normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
    """Write ``RUN/run.json`` (``info`` has ``recipe``, ``config``, ``seed``...); refuse when an
    existing run used another recipe, seed, start (``init_from``) or non-resumable setting.
    ``normalize`` maps a stored config dict through the config class first (fields added since the
    run started then read as their defaults)."""
    out = Path(out)
    path = out / RUN_JSON
    if path.is_file():
        old = json.loads(path.read_text())
        old_cfg = old.get("config", {})
        a, b = flatten(normalize(old_cfg) if normalize else old_cfg), flatten(info["config"])
        diff = sorted(k for k in set(a) | set(b) if k not in resumable and a.get(k) != b.get(k))
        for key in ("recipe", "init_from"):
            if old.get(key) != info.get(key):
                diff.insert(0, key)
                a[key], b[key] = old.get(key), info.get(key)
        if diff or old.get("seed") != info.get("seed"):
            detail = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff[:6]) or \
                f"seed: {old.get('seed')!r} -> {info.get('seed')!r}"
            raise ValueError(f"{out} holds a run with different settings ({detail}); use a new --out "
                             "or the same recipe/preset/--set/--seed")
    from impax.train.distributed import is_primary

    if not is_primary():
        return
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def load_imnet_ae(run: str | Path, info: Mapping[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """``(IMNetAE with the newest checkpoint's parameters, run.json)`` of an ``imnet-ae`` run; the
    network is rebuilt from ``run.json``'s ``config.model``."""
    from flax import nnx

    from impax.configs import from_dict
    from impax.models.imnet import IMNetAE, IMNetConfig
    from impax.train.checkpoint import load_model

    info = dict(info) if info is not None else read_run(run)
    if info.get("recipe") != "imnet-ae":
        raise ValueError(f"{run}: an imnet-ae run is needed, run.json says {info.get('recipe')!r}")
    model = IMNetAE(from_dict(IMNetConfig, info["config"]["model"]), rngs=nnx.Rngs(0))
    load_model(run, model)
    return model, info

"""What every recipe does the same way: ``--set`` overrides, ``RUN/run.json``, the IoU record.

* :func:`apply_dotted` — ``{"train.learning_rate": 1e-4, "stages.2.epochs": 5}`` applied to the
  nested dict of a config (:func:`impax.configs.to_dict`); an unknown key is an error, never a
  silently ignored setting.
* :func:`write_run_json` — ``RUN/run.json`` (recipe, preset, config, data, seed), written
  atomically; running a command again on the same ``--out`` must use the same settings except
  the resumable ones (step limits, logging, checkpoint cadence...), else a clear error.
* :func:`record_iou` — the end-of-training IoU report (``RUN/eval_*.json``) and its headline
  numbers in the summary that ``impax train`` prints.

Only the primary process writes files in a multi-process run (:func:`impax.train.distributed.is_primary`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

RUN_JSON = "run.json"


def flat(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (lists stay values)."""
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def apply_dotted(d: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Set each dotted ``key`` of ``overrides`` in the nested dict ``d`` (in place; list items by
    index, ``"stages.2.epochs"``). Raises ``ValueError("unknown config key ...")`` for a path that
    does not exist."""
    for key, value in (overrides or {}).items():
        parts = key.split(".")
        node: Any = d
        try:
            for p in parts[:-1]:
                node = node[int(p)] if isinstance(node, list) else node[p] if isinstance(node, dict) else None
                if node is None:
                    raise KeyError(p)
        except (KeyError, IndexError, ValueError):
            raise ValueError(f"unknown config key {key!r}") from None
        last = parts[-1]
        if isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = value
        elif isinstance(node, dict) and last in node:
            node[last] = value
        else:
            raise ValueError(f"unknown config key {key!r}")
    return d


def write_run_json(out: str | Path, info: dict[str, Any], resumable: set[str],
                   normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
    """Write ``RUN/run.json`` (``info`` has ``recipe``, ``config``, ``seed``...); refuse when an
    existing run used another recipe, seed or non-resumable setting. ``normalize`` maps a stored
    config dict through the config class first (fields added since the run started then read as
    their defaults)."""
    out = Path(out)
    path = out / RUN_JSON
    if path.is_file():
        old = json.loads(path.read_text())
        old_cfg = old.get("config", {})
        a, b = flat(normalize(old_cfg) if normalize else old_cfg), flat(info["config"])
        diff = sorted(k for k in set(a) | set(b) if k not in resumable and a.get(k) != b.get(k))
        if old.get("recipe") != info.get("recipe"):
            diff.insert(0, "recipe")
            a["recipe"], b["recipe"] = old.get("recipe"), info.get("recipe")
        if old.get("init_from") != info.get("init_from"):
            diff.insert(0, "init_from")
            a["init_from"], b["init_from"] = old.get("init_from"), info.get("init_from")
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


def record_iou(out: str | Path, eval_file: str, report: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """Write ``report`` (``{"train": {"mean_iou", "count", ...}, "heldout"?: {...}, ...}``) to
    ``RUN/eval_file`` and copy ``iou_train``/``n_train`` (and ``iou_heldout``/``n_heldout``)
    into ``summary`` (in place, returned)."""
    from impax.train.distributed import is_primary

    if is_primary():
        (Path(out) / eval_file).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    summary["iou_train"] = report["train"]["mean_iou"]
    summary["n_train"] = report["train"]["count"]
    if "heldout" in report:
        summary["iou_heldout"] = report["heldout"]["mean_iou"]
        summary["n_heldout"] = report["heldout"]["count"]
    return summary


#: Values of a recipe's ``lr_schedule``.
LR_SCHEDULES = ("constant", "cosine")


def scheduled_adam(train: Any, schedule: str, end_factor: float, total_steps: int) -> Any:
    """The optimiser of a run: ``None`` (the trainer's constant-rate Adam of ``train``, a
    :class:`~impax.train.TrainConfig`) for ``"constant"``; for ``"cosine"`` Adam (same betas/eps)
    whose step size decays by a cosine from ``train.learning_rate`` to ``end_factor`` times it
    over ``total_steps`` (``optax.cosine_decay_schedule``); the rate stays in the optimiser state
    (``inject_hyperparams``) so it is logged and checkpointed."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
    if schedule == "constant":
        return None
    import optax

    sched = optax.cosine_decay_schedule(train.learning_rate, max(int(total_steps), 1), end_factor)
    return optax.inject_hyperparams(optax.adam)(learning_rate=sched, b1=train.beta1, b2=train.beta2, eps=train.eps)


def budget_epochs(budget_steps: int | None, epochs: int, batches_per_epoch: int, steps_before: int = 0) -> int:
    """Epochs of a run's last stage: ``epochs`` as configured, or — with a step budget — as many as
    make the whole run about ``budget_steps`` steps (``ceil((budget - steps_before) / batches)``, at
    least 1), whatever the size of the data. CPU presets are sized in steps (time on 2 cores), not
    in passes over a data set whose size the preset cannot know."""
    if budget_steps is None:
        return int(epochs)
    return max(1, -(-(int(budget_steps) - int(steps_before)) // max(1, int(batches_per_epoch))))


def init_from(model: Any, out: str | Path, source: str | None) -> dict[str, Any] | None:
    """``--init-from SOURCE``: copy ``source``'s weights into ``model`` when the run in ``out`` has no
    checkpoint yet, and return the record ``run.json`` keeps (``None`` without a source). A run that
    already has checkpoints continues from its own; its recorded source is returned when it is the
    same, so :func:`write_run_json` refuses a different one. See :mod:`impax.train.pretrained`."""
    if not source:
        return None
    from impax.train.checkpoint import CHECKPOINT_DIR
    from impax.train.pretrained import PREFIX, load_into

    source = str(source)
    key = source if source.startswith(PREFIX) else str(Path(source).absolute())
    ckpts = Path(out) / CHECKPOINT_DIR
    if ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir()):
        try:
            old = json.loads((Path(out) / RUN_JSON).read_text()).get("init_from")
        except (OSError, ValueError):
            old = None
        return old if isinstance(old, dict) and old.get("source") == key else {"source": key}
    return load_into(model, source)

"""What every recipe does the same way: the :class:`Recipe` object, ``run.json``, summaries, IoU records.

* :class:`Recipe` — one ``impax train NAME``: config class, presets, training function;
  :meth:`Recipe.resolve` applies ``--config``/``--set`` overrides to the dataclasses directly
  (:func:`impax.configs.override`: an unknown key or a wrong type is an error, never a silently
  ignored setting).
* :func:`start_config`, :func:`write_run`, :func:`run_summary` — the opening and closing every
  recipe's ``train`` shares: the resolved config with the command's seed and limits, ``RUN/run.json``
  (resumable fields are marked on the config classes), the printed summary.
* :func:`record_iou` — the end-of-training IoU report (``RUN/eval_*.json``) and its headline
  numbers in the summary; :func:`scheduled_adam`, :func:`budget_epochs`, :func:`init_from`.

Only the primary process writes files in a multi-process run (:func:`impax.train.distributed.is_primary`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from impax.configs import from_dict, override, resumable_paths, to_dict
from impax.train.runs import RUN_JSON, write_run_json


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One ``impax train NAME``: its config class (a frozen dataclass whose defaults are the paper),
    its presets (one flat ``{name: config}``), its training function, ``build_model(cfg, seed)``
    (the fresh network of a config) and, optionally, ``couple``: settings that follow others
    unless overridden too (``(cfg, overrides) -> cfg``)."""

    name: str
    config: type
    presets: Mapping[str, Any]
    train: Callable[..., dict[str, Any]]
    build_model: Callable[..., Any]
    couple: Callable[[Any, Mapping[str, Any]], Any] | None = None

    def preset(self, preset: str) -> Any:
        if preset not in self.presets:
            raise ValueError(f"unknown {self.name} preset {preset!r}; choose from {', '.join(sorted(self.presets))}")
        return self.presets[preset]

    def resolve(self, preset: str = "cpu", overrides: Mapping[str, Any] | None = None) -> Any:
        """The preset's config with the dotted ``overrides`` set (keys and types checked,
        :func:`impax.configs.override`). Setting the length of training (``epochs``, ``stages``)
        without ``budget_steps`` drops a preset's step budget: what was asked for is what trains."""
        overrides = dict(overrides or {})
        base = self.preset(preset)
        if (getattr(base, "budget_steps", None) is not None and "budget_steps" not in overrides
                and any(k == "epochs" or k.split(".")[0] == "stages" for k in overrides)):
            overrides["budget_steps"] = None
        cfg = override(base, overrides)
        return self.couple(cfg, overrides or {}) if self.couple else cfg

    def from_run_json(self, info: Mapping[str, Any]) -> Any:
        """The config a ``run.json`` records (fields added since then read as their defaults)."""
        return from_dict(self.config, dict(info["config"]))

    @property
    def resumable(self) -> set[str]:
        return resumable_paths(self.config)


def start_config(recipe: Recipe, preset: str, overrides: Mapping[str, Any] | None, seed: int,
                 max_steps: int | None, progress: bool) -> Any:
    """The resolved config of a run, with the command's seed, step limit and progress setting."""
    cfg = recipe.resolve(preset, overrides)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=int(seed), max_steps=max_steps,
                                                              progress=bool(progress)))


def write_run(out: str | Path, recipe: Recipe, preset: str, cfg: Any, data: str | Path, seed: int,
              init: dict[str, Any] | None = None, **extra: Any) -> None:
    """``RUN/run.json`` of a recipe run (:func:`impax.train.runs.write_run_json`): recipe, family,
    preset, the full config, data, seed, the ``--init-from`` record and ``extra`` entries."""
    from impax.train.registry import info

    write_run_json(out, {"recipe": recipe.name, "family": info(recipe.name).family, "preset": preset,
                         "config": to_dict(cfg), "data": str(Path(data).absolute()), "seed": int(seed),
                         **({"init_from": init} if init else {}), **extra},
                   recipe.resumable, normalize=lambda d: to_dict(from_dict(recipe.config, d)))


def run_summary(name: str, out: str | Path, preset: str, res: Any, train_seconds: float, **extra: Any
                ) -> dict[str, Any]:
    """The summary every ``impax train`` prints: recipe, run, preset, ``stopped`` (``"done"``,
    ``"max_steps"`` or ``"signal"``), the step, the last loss, training seconds, and ``extra``."""
    return {"recipe": name, "run": str(out), "preset": preset, "stopped": res.stopped,
            "global_step": res.global_step, "loss": res.metrics.get("loss"),
            "train_seconds": round(float(train_seconds), 1), **extra}


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


def loader_options(train: Any) -> dict[str, Any]:
    """What a recipe's store loader takes from :class:`~impax.train.TrainConfig` and the run:
    ``workers`` (``loader_workers``), ``cache_mb`` and, in a multi-process run, ``shard``
    (this process reads only its rows of every batch: :class:`impax.data.loader.StoreLoader`)."""
    from impax.train.distributed import process_count, process_index

    n = process_count()
    return {"workers": int(train.loader_workers), "cache_mb": train.cache_mb,
            "shard": (process_index(), n) if n > 1 else None}

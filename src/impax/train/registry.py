"""The recipes of ``impax train``: one line per recipe, read by the CLI, the demo, inference and the report.

A :class:`RecipeInfo` names everything the rest of impax needs to know about a recipe without
importing it (importing a recipe loads JAX; ``impax --help`` must stay fast): its model family,
a label for tables, the recipe module (which defines ``RECIPES[name]``, a
:class:`~impax.train.recipes.common.Recipe`: config class, presets, training), the inference
module of its family, the evaluation a command runs after training (a layer above ``train``),
and the input the demo reconstructs from.

Adding a model family: its model module under ``impax/models/``, its recipe module under
``impax/train/recipes/`` (a ``RECIPES`` dict of ``Recipe`` objects), its inference module under
``impax/inference/`` when it reconstructs or samples, and one line here.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any


@dataclasses.dataclass(frozen=True)
class RecipeInfo:
    name: str  # ``impax train NAME``
    family: str  # "imnet" | "ldif": the runs' shared inference and file conventions
    label: str  # for tables and the report
    module: str  # the recipe module (defines ``RECIPES[name]``)
    inference: str  # reconstruct / sample / interpolate for runs of this recipe
    after_training: str | None = None  # "module:function(run_dir, summary) -> summary", run by the command
    demo_input: str | None = None  # what ``impax demo`` reconstructs from (None: not a reconstruction model)


RECIPES: dict[str, RecipeInfo] = {r.name: r for r in (
    RecipeInfo("imnet-ae", "imnet", "IM-NET AE", "impax.train.recipes.imnet", "impax.inference.imnet",
               demo_input="voxels"),
    RecipeInfo("imnet-gan", "imnet", "IM-GAN", "impax.train.recipes.imnet_gan", "impax.inference.imnet",
               after_training="impax.evaluation.gan:after_training"),
    RecipeInfo("imnet-svr", "imnet", "IM-SVR", "impax.train.recipes.imnet_svr", "impax.inference.imnet"),
    RecipeInfo("ldif", "ldif", "LDIF", "impax.train.recipes.ldif", "impax.inference.ldif", demo_input="depth"),
    RecipeInfo("sif", "ldif", "SIF", "impax.train.recipes.ldif", "impax.inference.ldif"),
    RecipeInfo("sifpp", "ldif", "SIF++", "impax.train.recipes.ldif", "impax.inference.ldif"),
)}


def info(name: str) -> RecipeInfo:
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}") from None


def recipe(name: str) -> Any:
    """The :class:`~impax.train.recipes.common.Recipe` of ``name`` (imports its module)."""
    return importlib.import_module(info(name).module).RECIPES[name]


def inference_module(name: str) -> Any:
    return importlib.import_module(info(name).inference)

"""Training recipes: one per ``impax train NAME``.

Each recipe module defines ``PRESETS`` (name → frozen config) and
``train(name, data, out, preset="cpu", overrides=None, seed=0, max_steps=None, progress=True) -> dict``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: recipe name → module implementing it.
RECIPES: dict[str, str] = {
    "imnet-ae": "impax.train.recipes.imnet",
    "imnet-gan": "impax.train.recipes.imnet_gan",
    "imnet-svr": "impax.train.recipes.imnet_svr",
    "ldif": "impax.train.recipes.ldif",
    "sif": "impax.train.recipes.ldif",
    "sifpp": "impax.train.recipes.ldif",
}


def recipe_module(name: str) -> ModuleType:
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return importlib.import_module(RECIPES[name])

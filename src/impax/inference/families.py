"""Which inference module serves a run: ``RUN/run.json``'s recipe → family → module."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any

#: model family → module with reconstruct()/sample()/interpolate().
FAMILIES: dict[str, str] = {"imnet": "impax.inference.imnet", "ldif": "impax.inference.ldif"}
#: recipe name → family.
RECIPE_FAMILY: dict[str, str] = {
    "imnet-ae": "imnet", "imnet-gan": "imnet", "imnet-svr": "imnet",
    "ldif": "ldif", "sif": "ldif", "sifpp": "ldif",
}


def read_run(run: str | Path) -> dict[str, Any]:
    path = Path(run) / "run.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run}: not a training run (no run.json); train one with `impax train`")
    return json.loads(path.read_text())


def family_module(run: str | Path) -> ModuleType:
    info = read_run(run)
    recipe = info.get("recipe")
    if recipe not in RECIPE_FAMILY:
        raise ValueError(f"{run}: run.json names unknown recipe {recipe!r}")
    return importlib.import_module(FAMILIES[RECIPE_FAMILY[recipe]])

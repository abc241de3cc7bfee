"""Which inference module serves a run: ``RUN/run.json``'s recipe → family → module."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
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


def group_sources(inputs: Sequence[str | Path], is_source: Callable[[Path], bool],
                  not_a_source: str) -> list[dict[str, Any]]:
    """Parse ``reconstruct`` input words: a word for which ``is_source`` holds starts a source;
    ``split=NAME`` keeps one split of the current source; any other word is a shape id of it.
    Returns ``{"path", "split", "ids"}`` per source (no ids: all its shapes); a word before any
    source gives ``{"path", "split", "ids", "error": not_a_source}``."""
    sources: list[dict[str, Any]] = []
    for item in inputs:
        s = str(item)
        p = Path(s)
        if is_source(p):
            sources.append({"path": p, "split": None, "ids": []})
        elif s.startswith("split=") and sources:
            sources[-1]["split"] = s.split("=", 1)[1]
        elif sources:
            sources[-1]["ids"].append(s)
        else:
            sources.append({"path": p, "split": None, "ids": [], "error": not_a_source})
    return sources

"""Which inference module serves a run (``RUN/run.json``'s recipe, :mod:`impax.train.registry`), and the
input words of ``impax reconstruct``."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from impax.train.runs import read_run

def family_module(run: str | Path) -> ModuleType:
    """The inference module of the run's recipe (:mod:`impax.train.registry`)."""
    from impax.train.registry import RECIPES

    info = read_run(run)
    recipe = info.get("recipe")
    if recipe not in RECIPES:
        raise ValueError(f"{run}: run.json names unknown recipe {recipe!r}")
    return importlib.import_module(RECIPES[recipe].inference)


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

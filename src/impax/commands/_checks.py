"""Argument checks shared by the commands (errors are ``ValueError``: one line from :mod:`impax.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Extraction grids a command accepts: 16^3 .. 512^3 (512^3 already evaluates ~134M points).
MIN_RESOLUTION, MAX_RESOLUTION = 16, 512


def resolution(value: int, flag: str = "--resolution", low: int = MIN_RESOLUTION, high: int = MAX_RESOLUTION) -> int:
    if not low <= value <= high:
        gib = (value + 1) ** 3 * 4 / 2 ** 30 if value > high else 0
        need = f"; a {value}^3 grid alone needs {gib:,.0f} GiB" if gib >= 1 else ""
        raise ValueError(f"{flag} {value} is out of range ({low}-{high}){need}")
    return value


def at_least(value: float, low: float, flag: str) -> None:
    if value < low:
        raise ValueError(f"{flag} must be >= {low:g}, got {value:g}")


def out_folder(path: str | Path, flag: str = "--out") -> Path:
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{flag} {p} exists and is not a folder")
    return p


def run_module(run: str | Path, needs: str) -> Any:
    """The inference module serving ``run``; ``ValueError`` when it cannot ``needs`` (a function name)."""
    from impax.inference.families import family_module, read_run

    mod = family_module(run)
    if not hasattr(mod, needs):
        recipe = read_run(run).get("recipe")
        raise ValueError(f"{run} is a run of {recipe!r}, which cannot {needs}")
    return mod

"""The ``impax`` command line.

Each sub-command lives in its own module under :mod:`impax.commands` and defines
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed
arguments, returning an exit status). Modules are discovered, so adding a command never
touches this file. Heavy imports (JAX, trimesh) belong inside each command's ``func``,
so ``impax --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from impax import __version__
from impax import commands as _commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="impax",
        description="Learned implicit 3D shapes in JAX: IM-NET and SIF/LDIF, data to report.",
    )
    parser.add_argument("--version", action="version", version=f"impax {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(_commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{_commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("impax: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The ``impax`` command line.

Each sub-command lives in its own module under :mod:`impax.commands` and defines
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed
arguments, returning an exit status). Modules are discovered, so adding a command never
touches this file. Heavy imports (JAX, trimesh) belong inside each command's ``func``,
so ``impax --help`` stays fast.

Errors: :func:`main` is the one place that turns exceptions into exit statuses. An expected error
— a bad value, a missing or unreadable file, a corrupt record or checkpoint, the wrong kind of run,
a folder in use by another impax process, a full disk, running out of memory — is one line
``impax COMMAND: message`` on stderr and exit status 1. Anything else is a bug: its traceback is
printed with a line saying so. ``--debug`` (before or after the command) or ``IMPAX_DEBUG=1``
prints the traceback of every error. The exit statuses are documented in ``docs/errors.md``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import re
import sys
import traceback

from impax import __version__
from impax import commands as _commands

#: Exit statuses of every command (docs/errors.md).
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="impax",
        description="Learned implicit 3D shapes in JAX: IM-NET and SIF/LDIF, data to report.",
        epilog="Exit status: 0 success, 1 failure (one line on stderr), 2 bad command line, "
               "3 partial success (some inputs failed), 128+N stopped by signal N. See docs/errors.md.",
    )
    parser.add_argument("--version", action="version", version=f"impax {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="print the Python traceback of any error (also: IMPAX_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(_commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{_commands.__name__}.{info.name}")
        module.register(sub)
    for p in sub.choices.values():
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="print the Python traceback of any error (also: IMPAX_DEBUG=1)")
        p.description = plain(p.description)
        for action in p._actions:
            if isinstance(action.help, str) and action.help is not argparse.SUPPRESS:
                action.help = plain(action.help)
    for action in sub._choices_actions:  # the one-line summaries of `impax --help`
        action.help = plain(action.help)
    return parser


_LITERAL = re.compile(r"``(.+?)``")
_ROLE = re.compile(r":(?:func|class|mod|meth|data|attr|obj):`~?([^`]+)`")


def plain(text: str | None) -> str | None:
    """Help text as plain text: the commands' docstrings are reStructuredText (``literal``,
    :func:`role` references), the terminal shows neither markup."""
    if not text:
        return text
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1] if "~" in m.group(0) else m.group(1), text)
    return _LITERAL.sub(r"\1", text)


def expected_error(e: BaseException) -> bool:
    """Whether ``e`` is a user-facing failure (one line) rather than a bug (a traceback)."""
    if isinstance(e, (ValueError, OSError, MemoryError)):
        return True
    names = {c.__name__ for c in type(e).__mro__}
    return bool(names & {"FolderLocked", "TrainingDiverged", "CheckpointError", "FormatError"})


def error_line(e: BaseException) -> str:
    """The one-line message of an expected error."""
    if isinstance(e, MemoryError):
        text = "out of memory" + (f" ({e})" if str(e) else "") + "; try a lower --resolution or fewer samples"
    elif isinstance(e, OSError) and type(e).__str__ is OSError.__str__ and e.strerror:
        where = f"{e.filename}: " if e.filename else ""
        text = f"{where}{e.strerror}"
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


def command_line(argv: list[str] | None = None) -> list[str]:
    """The command line as typed: ``impax`` (``python -m impax`` when run as a module) and ``argv``
    (default ``sys.argv[1:]``)."""
    if argv is not None:
        return ["impax", *argv]
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "impax"
    head = [os.path.basename(sys.executable) or "python", "-m", "impax"] if prog == "__main__.py" else [prog]
    return [*head, *sys.argv[1:]]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = command_line(argv)  # what ran, for commands that record it (impax demo)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    debug = bool(getattr(args, "debug", False)) or os.environ.get("IMPAX_DEBUG", "") not in ("", "0")
    name = f"impax {args.command}"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"{name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit:
        raise
    except Exception as e:  # the one place errors become exit statuses
        if expected_error(e):
            if debug:
                traceback.print_exc()
            print(f"{name}: {error_line(e)}", file=sys.stderr)
            return EXIT_FAILURE
        traceback.print_exc()
        print(f"{name}: internal error ({type(e).__name__}); this is a bug in impax, please report it "
              "with the traceback above", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Every command's ``--help``: plain text (no reStructuredText markup), every option explained."""

from __future__ import annotations

import argparse
import re

import pytest

from impax.cli import build_parser, plain

PARSER = build_parser()


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[tuple[str, argparse.ArgumentParser]]:
    out = []
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, p in a.choices.items():
                out += [(prefix + name, p)] + _commands(p, prefix + name + " ")
    return out


COMMANDS = sorted(_commands(PARSER))


def test_plain_strips_markup():
    assert plain("see ``impax mesh`` and :func:`~impax.geometry.voxels.occupancy_iou`, :mod:`impax.cli`") == \
        "see impax mesh and occupancy_iou, impax.cli"


@pytest.mark.parametrize("name,parser", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_help_is_plain_text_and_every_option_has_a_sentence(name, parser):
    text = parser.format_help()
    assert not re.search(r"``|:(func|class|mod|meth|data):`", text), text
    for action in parser._actions:
        if action.help is argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        assert action.help and len(action.help.split()) >= 2, (name, action.option_strings or action.dest)

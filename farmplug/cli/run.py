"""``farmplug run TASK``: one farm task (the parser and the tasks live in :mod:`farmplug.worker`)."""

from __future__ import annotations

import argparse

from farmplug.worker import add_run_parsers, dispatch


def add_parser(verbs: argparse._SubParsersAction) -> None:
    add_run_parsers(verbs)


def run(args: argparse.Namespace) -> int:
    return dispatch(args)

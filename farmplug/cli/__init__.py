"""The ``farmplug`` command line: one module per verb (demo, plan, calibrate, submit, run, report).

It sits on top of everything: the core, the stages and the farm backends. Errors print one line
(``farmplug: error: FILE: problem``) and exit non-zero; ``-v`` shows the traceback and debug logging.
``--help`` on any verb shows every option with its default.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from farmplug import __version__
from farmplug.errors import FarmplugError
from farmplug.worker import add_common

log = logging.getLogger("farmplug")


def _verbs():
    from farmplug.cli import blender, build_engine, calibrate, dataset, demo, nuke, plan, report, run, submit, train

    return {"demo": demo, "plan": plan, "calibrate": calibrate, "submit": submit, "run": run, "report": report,
            "blender": blender, "nuke": nuke,
            "dataset": dataset, "train": train, "build-engine": build_engine}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="farmplug",
        description="Render less, fill the gap with AI post-processing on the farm, and prove the savings.",
    )
    parser.add_argument("--version", action="version", version=f"farmplug {__version__}")
    add_common(parser, top=True)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for module in _verbs().values():
        module.add_parser(verbs)
    return parser


def dispatch(args: argparse.Namespace) -> int:
    return _verbs()[args.verb].run(args)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    return args


class Terminated(KeyboardInterrupt):
    """SIGTERM (a farm cancelling the task): unwound like Ctrl-C, so children are stopped and temps removed."""


def _on_sigterm(_signum, _frame) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    args = _parse(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if args.verbose else "%(message)s",
    )
    try:
        return dispatch(args)
    except FarmplugError as err:
        if args.verbose:
            raise
        print(f"farmplug: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        # The operating system said no (a read-only folder, a full disk, a path that is a folder):
        # one line naming the path, as for any other error.
        if args.verbose:
            raise
        # A rename names the temp file first and the destination second; the destination is what matters.
        path = getattr(err, "filename2", None) or err.filename
        where = f"{path}: " if path else ""
        print(f"farmplug: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    except MemoryError:
        if args.verbose:
            raise
        print("farmplug: error: out of memory (the frames are too large for this machine's memory)", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:
        why = "terminated" if isinstance(stop, Terminated) else "interrupted"
        print(f"farmplug: {why}; finished outputs are kept, run the same command again to continue", file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130


__all__ = ["build_parser", "main"]

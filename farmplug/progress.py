"""Progress bars for long work (tqdm on stderr; ``FARMPLUG_PROGRESS=0`` turns them off)."""

from __future__ import annotations

import os
import sys

from tqdm import tqdm


def progress_bar(total: int, desc: str, unit: str = "frame") -> tqdm:
    """A progress bar on stderr; quiet when FARMPLUG_PROGRESS=0, sparse when stderr is not a terminal."""
    disabled = os.environ.get("FARMPLUG_PROGRESS", "1") == "0"
    interactive = sys.stderr.isatty()
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        disable=disabled,
        file=sys.stderr,
        mininterval=0.2 if interactive else 5.0,
        dynamic_ncols=True,
        leave=True,
    )

"""Frame ranges (``1-24``, ``1-24x2``, ``1,5,9-12``) and chunking."""

from __future__ import annotations

import re

from farmplug.errors import FarmplugError

_RANGE = re.compile(r"^\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*(?:[x:]\s*(\d+))?)?\s*$")


def parse_frames(spec: str) -> list[int]:
    """Parse a frame list: ``"7"``, ``"1-24"``, ``"1-24x2"`` (every 2nd), or comma-separated pieces.

    Raises:
        FarmplugError: the text is not a frame list, or a range runs backwards.
    """
    frames: list[int] = []
    for piece in str(spec).split(","):
        match = _RANGE.match(piece)
        if not match:
            raise FarmplugError(f"bad frame range {piece.strip()!r}: use N, A-B, A-BxSTEP or a comma-separated list")
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) is not None else start
        step = int(match.group(3) or 1)
        if end < start or step < 1:
            raise FarmplugError(f"bad frame range {piece.strip()!r}: the end comes before the start")
        frames.extend(range(start, end + 1, step))
    return sorted(set(frames))


def format_frames(frames: list[int], *, sep: str = ",", dash: str = "-") -> str:
    """The shortest ``A-B,C`` text for a frame list (inverse of :func:`parse_frames` for step 1).

    ``sep`` and ``dash`` change the punctuation for display (``"1–3, 10"``).
    """
    if not frames:
        return ""
    frames = sorted(set(frames))
    pieces = []
    start = prev = frames[0]
    for f in frames[1:] + [None]:
        if f is not None and f == prev + 1:
            prev = f
            continue
        pieces.append(str(start) if start == prev else f"{start}{dash}{prev}")
        if f is not None:
            start = prev = f
    return sep.join(pieces)


def chunk(frames: list[int], size: int) -> list[list[int]]:
    """Split frames into consecutive chunks of at most ``size`` frames."""
    if size < 1:
        raise FarmplugError(f"chunk size must be at least 1, got {size}")
    return [frames[i : i + size] for i in range(0, len(frames), size)]

"""Frame ranges (``1-24``, ``1-24x2``, ``1,5,9-12``) and chunking."""

from __future__ import annotations

import re
from collections.abc import Sequence

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


def format_frame_set(frames: list[int]) -> str:
    """A compact frame set with steps, as farm managers write them: ``1-23x2,24``.

    Runs of three or more frames with a constant step become ``A-BxS`` (``A-B`` for step 1);
    :func:`parse_frames` reads it back to the same list.
    """
    frames = sorted(set(frames))
    pieces: list[str] = []
    i = 0
    while i < len(frames):
        j = i + 1
        if j < len(frames):
            step = frames[j] - frames[i]
            while j + 1 < len(frames) and frames[j + 1] - frames[j] == step:
                j += 1
            if j - i >= 2 or (step == 1 and j - i >= 1):
                pieces.append(f"{frames[i]}-{frames[j]}" + (f"x{step}" if step != 1 else ""))
                i = j + 1
                continue
        pieces.append(str(frames[i]))
        i += 1
    return ",".join(pieces)


def keyframe_grid(frames: list[int], step: int) -> list[int]:
    """The frames rendered for real with a frame step: every ``step``-th from the first, and the last."""
    keys = list(frames[::step])
    if keys[-1] != frames[-1]:
        keys.append(frames[-1])
    return keys


def chunk(frames: list[int], size: int) -> list[list[int]]:
    """Split frames into consecutive chunks of at most ``size`` frames."""
    if size < 1:
        raise FarmplugError(f"chunk size must be at least 1, got {size}")
    return [frames[i : i + size] for i in range(0, len(frames), size)]


def keyframe_span(frames: Sequence[int], step: int) -> tuple[list[int], list[int]]:
    """Keyframes (every ``step``-th from the first, and the last) and the frames between them.

    Raises:
        FarmplugError: fewer than two frames, or a step below 2.
    """
    frames = sorted(frames)
    if step < 2:
        raise FarmplugError(f"--step must be 2 or more, got {step}")
    if len(frames) < 2 or frames != list(range(frames[0], frames[-1] + 1)):
        raise FarmplugError("making frames between keyframes needs a contiguous frame range A-B with at least two frames")
    keys = keyframe_grid(frames, step)
    targets = [f for f in frames if f not in set(keys)]
    return keys, targets


def keys_around(keys: Sequence[int], frame: int) -> tuple[int, int]:
    """The keyframes just before and just after ``frame`` (which is not one of them).

    Raises:
        ValueError: no keyframe on one side.
    """
    return max(k for k in keys if k < frame), min(k for k in keys if k > frame)


def targets_between(frames: Sequence[int], keys: Sequence[int]) -> tuple[list[int], list[int]]:
    """The frames of ``frames`` that are not keyframes, and the keyframes they are made from.

    Raises:
        FarmplugError: a frame has no keyframe before or after it.
    """
    keys = sorted(set(keys))
    targets = sorted(f for f in set(frames) if f not in set(keys))
    if not targets:
        raise FarmplugError("no frames to make: every frame given is a keyframe")
    outside = [t for t in targets if t < keys[0] or t > keys[-1]]
    if outside:
        raise FarmplugError(f"frames {outside} have no keyframe on both sides (keyframes {keys[0]}-{keys[-1]})")
    needed = sorted({k for t in targets for k in keys_around(keys, t)})
    return needed, targets

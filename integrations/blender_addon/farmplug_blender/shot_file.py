"""Scene facts to a farmplug shot file, and the farmplug results the panel shows (no ``bpy`` here).

The shot file is YAML; it is written without a YAML library (Blender's Python has none): every
string is a JSON string, which YAML reads as the same double-quoted scalar, so a path with
quotes, colons or a leading ``#`` stays one value. farmplug validates the file (``farmplug plan``
reads it back), so the add-on does not repeat farmplug's rules.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

_FRAME_TOKEN = re.compile(r"#+|%0?\d*d")
#: Blender's own default output folder: treated as "not set" (nobody delivers a shot to /tmp/).
_UNSET_OUTPUTS = ("", "/tmp/", "/tmp", "//")


@dataclass(frozen=True)
class SceneFacts:
    """What a traditional render of the scene would be, as Blender has it.

    Attributes:
        name: Shot name (the .blend's name unless the artist gave one).
        blend: The saved .blend file, absolute.
        frame_start: First frame.
        frame_end: Last frame.
        width: Output width in pixels (resolution x percentage).
        height: Output height in pixels.
        samples: Cycles render samples (the full quality).
        output: Blender's output path (``render.filepath``), as set.
    """

    name: str
    blend: Path
    frame_start: int
    frame_end: int
    width: int
    height: int
    samples: int
    output: str


def output_pattern(blender_output: str, blend: Path, name: str) -> str:
    """farmplug's ``output`` for Blender's output path.

    Blender's ``//`` is the .blend's folder; a path without a frame token gets Blender's own
    (four digits at the end); a folder gets ``NAME.####.exr`` inside it; frames are always EXR.
    An unset output (or Blender's default ``/tmp/``) delivers into the run folder
    (``frames/NAME.####.exr``).
    """
    value = (blender_output or "").strip()
    if value in _UNSET_OUTPUTS:
        return f"frames/{name}.####.exr"
    if value.startswith("//"):
        value = str(blend.parent / value[2:])
    value = os.path.expanduser(value)
    if value.endswith(("/", "\\")):
        return str(Path(value) / f"{name}.####.exr")
    stem = value[:-4] if value.lower().endswith(".exr") else value
    if not _FRAME_TOKEN.search(stem):
        stem += "####"
    return stem + ".exr"


def shot_document(facts: SceneFacts, shot_path: Path, output: str | None = None) -> dict:
    """The shot as farmplug's ``Shot`` fields; the scene is named relative to the shot file's folder."""
    try:
        scene = os.path.relpath(facts.blend, shot_path.parent)
    except ValueError:  # another drive (Windows): only an absolute path can name it
        scene = str(facts.blend)
    return {
        "schema_version": 1,
        "name": facts.name,
        "scene": Path(scene).as_posix(),
        "renderer": "blender",
        "frames": {"start": int(facts.frame_start), "end": int(facts.frame_end)},
        "resolution": {"width": int(facts.width), "height": int(facts.height)},
        "samples": int(facts.samples),
        "output": output or output_pattern(facts.output, facts.blend, facts.name),
    }


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))


def to_yaml(document: dict, indent: int = 0) -> str:
    """A small block-YAML writer for mappings of scalars and mappings (all a shot file holds)."""
    lines = []
    pad = " " * indent
    for key, value in document.items():
        if isinstance(value, dict):
            lines.append(f"{pad}{key}:")
            lines.append(to_yaml(value, indent + 2).rstrip("\n"))
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "\n".join(lines) + "\n"


def write_shot(facts: SceneFacts, shot_path: Path, output: str | None = None) -> Path:
    """Write the shot file (through a temp file and a rename, so a reader never sees half of it).

    Raises:
        OSError: the folder cannot be written.
    """
    shot_path = Path(shot_path)
    shot_path.parent.mkdir(parents=True, exist_ok=True)
    text = ("# Written by the farmplug Blender add-on from the scene's settings.\n"
            + to_yaml(shot_document(facts, shot_path, output)))
    temp = shot_path.with_name(f".{shot_path.name}.{os.getpid()}.tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, shot_path)
    return shot_path


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def calibration_summary(path: Path) -> str | None:
    """One line on a calibration: the chosen plan, its predicted saving and its quality (None: no calibration)."""
    data = _read_json(path)
    if not data or "candidates" not in data:
        return None
    chosen = next((c for c in data.get("candidates", []) if c.get("chosen")), None)
    if chosen is None:
        return f"full render recommended: {data.get('reason', '')}".strip()
    return (f"{chosen.get('name')}: predicted {chosen.get('predicted_ratio', 0):.1f}x fewer core-seconds, "
            f"mean FLIP {chosen.get('flip_mean', 0):.3f} (target {data.get('flip_mean_max', 0):g})")


def report_summary(path: Path) -> str | None:
    """One line on a run's report: the measured saving and quality (None: no report yet)."""
    data = _read_json(path)
    if not data or "savings" not in data:
        return None
    savings, quality = data.get("savings") or {}, data.get("quality") or {}
    verdict = quality.get("meets_target")
    mark = "" if verdict is None else (", meets target" if verdict else ", MISSES target")
    return (f"{savings.get('ratio', 0):.1f}x fewer core-seconds over {savings.get('frames', 0)} frames, "
            f"mean FLIP {quality.get('flip_mean', 0):.3f}{mark}")

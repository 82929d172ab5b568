"""Task keys: what makes a task's outputs what they are (its command, the versions of farmplug and
the renderer, and a fingerprint of every input).

The engine computes a task's key before running it and hands it over (``FARMPLUG_TASK_KEY``); a
task a farm runs alone computes the same key from the run's ``graph.json``
(:func:`farmplug.worker.task_key`). A record or frame whose key differs is never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from farmplug.graph import RUN_DIR_TOKEN, Task

#: Inputs up to this size are fingerprinted by their content; larger ones (frames, scenes) by
#: size and modification time, which any rewrite (atomic rename included) changes.
HASH_LIMIT = 1 << 20


def _fingerprint(path: Path) -> str:
    try:
        info = path.stat()
    except OSError:
        return "missing"
    if info.st_size <= HASH_LIMIT:
        try:
            return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            return "unreadable"
    return f"size:{info.st_size}:mtime:{info.st_mtime_ns}"


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from farmplug import __version__

    found = {"farmplug": __version__}
    # The renderer that will run: a Blender executable when FARMPLUG_BLENDER names one, else bpy.
    blender = os.environ.get("FARMPLUG_BLENDER")
    if blender:
        found["renderer"] = f"blender {blender}"
    else:
        try:
            found["renderer"] = f"bpy {version('bpy')}"
        except PackageNotFoundError:
            found["renderer"] = "none"
    return found


def key_root(task: Task, run_dir: str | Path) -> Path:
    """The folder a task's key counts its paths from: the run folder its timing record is in (the
    folder above its ``work/``), else ``run_dir``. It depends on the task alone, so a task that
    two graphs share (calibration's reference renders, made in the run folder the plan will use)
    has one key in both."""
    for folder in Path(task.timing).parents:
        if folder.name == "work":
            return folder.parent
    return Path(run_dir)


def task_key(task: Task, run_dir: str | Path) -> str:
    """What makes a task's outputs what they are: its command, the versions of farmplug and the
    renderer, and a fingerprint of every input (content for small files, size and mtime for frames).

    A task whose upstream re-ran, whose plan changed, or whose inputs were rewritten since gets a
    new key, so it runs again; the same inputs give the same key on any rerun. Paths inside the
    task's run folder (:func:`key_root`; ``run_dir`` when its record is not under a ``work/``)
    count relative to it, so a run folder moved, copied, or seen by a farm worker under another
    mount point (path mapping) keeps its keys.
    """
    root = str(key_root(task, run_dir))

    def inside(value: str) -> str:
        if value == root or value.startswith(root + os.sep):
            return RUN_DIR_TOKEN + value[len(root):]
        return value

    data = {"argv": [inside(a) for a in task.argv], "versions": _versions(),
            "inputs": {inside(p): _fingerprint(Path(p)) for p in sorted(set(task.inputs))}}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()

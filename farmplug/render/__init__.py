"""Renderers: produce the cheap (or reference) frames the post-processing stages start from.

Importing this package never imports ``bpy``: Blender runs in a child process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from farmplug.render.base import (
    KNOWN_PASSES,
    Renderer,
    RenderRequest,
    frame_path,
    frame_paths,
    has_frame_token,
)
from farmplug.render.blender import BlenderRenderer

if TYPE_CHECKING:
    from farmplug.render.demo_scene import build_demo_scene, demo_scene_command

__all__ = [
    "KNOWN_PASSES",
    "BlenderRenderer",
    "RenderRequest",
    "Renderer",
    "build_demo_scene",
    "demo_scene_command",
    "frame_path",
    "frame_paths",
    "has_frame_token",
]


def __getattr__(name: str) -> Any:
    # demo_scene is also the child's ``python -m`` entry point; importing it eagerly here would
    # load it before runpy executes it (a RuntimeWarning in every child), so it loads on use.
    if name in ("build_demo_scene", "demo_scene_command"):
        from farmplug.render import demo_scene

        return getattr(demo_scene, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

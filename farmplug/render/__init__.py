"""Renderers: produce the cheap (or reference) frames the post-processing stages start from.

Importing this package never imports ``bpy``: Blender runs in a child process.
"""

from farmplug.render.base import (
    KNOWN_PASSES,
    RenderRequest,
    Renderer,
    frame_path,
    frame_paths,
    has_frame_token,
)
from farmplug.render.blender import BlenderRenderer
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

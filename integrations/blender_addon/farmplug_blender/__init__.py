"""farmplug for Blender: set up the passes farmplug's AI stages need, calibrate, submit, see the saving.

A Blender 4.2+ extension (``blender_manifest.toml``), thin: it gathers scene facts and runs the
``farmplug`` command line as an argument list; it never imports farmplug, torch or anything
heavy, and installs nothing at run time. Install the zip from ``farmplug blender package``, or
put the parent of ``farmplug blender path`` on ``sys.path``, ``import farmplug_blender`` and
call :func:`register`.

``register()`` and ``unregister()`` mirror each other: unregistering removes every class, the
scene settings and the values they stored, and stops a running background job; the render
passes the artist asked it to set up stay on.
"""

from __future__ import annotations

import bpy

from . import operators, panel, properties

_CLASSES = (*properties.CLASSES, *operators.CLASSES, *panel.CLASSES)


def register() -> None:
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    properties.register_settings()


def unregister() -> None:
    operators.stop_running_job()
    properties.unregister_settings()
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)

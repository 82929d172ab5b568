"""farmplug for Nuke: Denoise, Upscale, Interpolate and Submit on the selected Read nodes.

Thin: each selected Read's frame pattern and range become a farmplug command line (an argument
list), run here in the background with Nuke's progress task, or submitted to a farm as a job;
then a Read node is created for the result. :mod:`farmplug_nuke.commands` is plain Python (no
``nuke``); :mod:`farmplug_nuke.ui` is the part that talks to Nuke. ``menu.py`` beside this
package calls :func:`add_menu` and never lets a failure here stop Nuke from starting.
"""

from __future__ import annotations


def add_menu(parent: str = "Nuke"):
    """Add the farmplug menu to Nuke (imports ``nuke`` only now); returns the menu."""
    from .ui import add_menu as add

    return add(parent)

"""farmplug's Nuke menu. Put this folder on NUKE_PATH (``farmplug nuke path`` prints it).

A broken farmplug (a missing package, a bad install, a failing menu) must never stop Nuke from
starting: any error here is caught and logged, and Nuke carries on without the menu.
"""

import logging

_log = logging.getLogger("farmplug_nuke")

try:
    import farmplug_nuke

    farmplug_nuke.add_menu()
except Exception:  # whatever broke, Nuke must still start
    _log.exception("farmplug: the Nuke menu was not loaded (Nuke carries on without it)")

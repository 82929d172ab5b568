"""farmplug: render less, fill the gap with AI post-processing on the farm, and prove the savings.

Importing this package is cheap: it never imports torch, bpy or OIDN (stages import them lazily).
"""

from farmplug.errors import FarmplugError

__version__ = "0.1.0"

__all__ = ["FarmplugError", "__version__"]

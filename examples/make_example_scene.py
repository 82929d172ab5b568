"""Write the example shot, examples/demo.blend, that examples/shot.yaml renders.

Usage: python examples/make_example_scene.py [--output PATH] [--frames N] [--width W]
[--height H] [--samples S]

The scene is built in a child ``bpy`` process (see farmplug.render.demo_scene); this script only
needs farmplug installed with the ``blender`` extra.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from farmplug.errors import FarmplugError
from farmplug.render import build_demo_scene

log = logging.getLogger("make_example_scene")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", "-o", type=Path, default=Path(__file__).resolve().with_name("demo.blend"))
    parser.add_argument("--frames", type=int, default=24, help="frame range 1..N (default 24)")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--samples", type=int, default=1024, help="full-quality Cycles samples (default 1024)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        build_demo_scene(args.output, frames=args.frames, resolution=(args.width, args.height), samples=args.samples)
    except FarmplugError as err:
        log.error("error: %s", err)
        return 1
    log.info("wrote %s (frames 1-%d, %dx%d, %d samples)", args.output, args.frames, args.width, args.height, args.samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())

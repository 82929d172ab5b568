"""``farmplug dataset [SCENE.blend...] --out DIR``: render training examples for the guided upscaler.

Low-resolution colour, full-resolution cheap guide passes and a full-resolution target for every
frame of every scene (see :mod:`farmplug.upscale.dataset`); with no scenes, ``--count``
procedural scenes. Run it again to carry on after a stop.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from farmplug.cli.common import print_json
from farmplug.cli.report import resolution
from farmplug.worker import add_common, help_formatter


def add_parser(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("dataset", help="render training examples (low-res colour, full-res guide passes, target)",
                         formatter_class=help_formatter)
    add_common(p)
    p.add_argument("scenes", type=Path, nargs="*", metavar="SCENE.blend", help="scenes to render (default: procedural)")
    p.add_argument("--out", type=Path, required=True, help="the dataset folder")
    p.add_argument("--count", type=int, default=None,
                   help="procedural scenes to generate (default: 48 without scenes, 0 with scenes)")
    p.add_argument("--seed", type=int, default=0, help="first procedural scene's seed")
    p.add_argument("--frames", type=int, default=4, help="frames per scene (the camera moves over them)")
    p.add_argument("--resolution", type=resolution, default=(128, 72), metavar="WxH",
                   help="full resolution of procedural scenes (even numbers)")
    p.add_argument("--samples", type=int, default=128, help="samples of the low-res colour and of the target")
    p.add_argument("--guide-samples", type=int, default=2, help="samples of the full-resolution guide passes")
    p.add_argument("--crop", type=int, default=48, help="crop size in full-resolution pixels")
    p.add_argument("--styles", default="textured,glossy,toon", help="procedural material styles (textured,glossy,toon,ink)")
    p.add_argument("--no-denoise", dest="denoise", action="store_false", help="keep the colour and target noisy")
    p.add_argument("--threads", type=int, default=1, help="render threads")
    p.add_argument("--json", action="store_true", help="print the manifest's summary as JSON")


def run(args: argparse.Namespace) -> int:
    from farmplug.errors import FarmplugError
    from farmplug.progress import progress_bar
    from farmplug.upscale.dataset import DatasetSettings, make_dataset

    if args.resolution[0] % 2 or args.resolution[1] % 2:
        raise FarmplugError(f"--resolution must be even (got {args.resolution[0]}x{args.resolution[1]})")
    count = args.count if args.count is not None else (0 if args.scenes else 48)
    settings = DatasetSettings(frames=args.frames, resolution=tuple(args.resolution), samples=args.samples,
                               guide_samples=args.guide_samples, crop=args.crop, denoise=args.denoise,
                               styles=tuple(s.strip() for s in args.styles.split(",") if s.strip()),
                               threads=args.threads)
    command = shlex.join(["farmplug", *getattr(args, "argv", sys.argv[1:])])
    with progress_bar(len(args.scenes) + count, "dataset", unit="scene") as bar:
        manifest = make_dataset(args.out, args.scenes, count=count, seed=args.seed, settings=settings,
                                command=command, progress=lambda _name: bar.update(1))
    scenes = manifest.get("scenes", [])
    summary = {"out": str(args.out), "scenes": len(scenes), "frames": sum(len(s["frames"]) for s in scenes),
               "render_s": round(sum(s["render_s"] for s in scenes), 1)}
    if args.json:
        print_json(summary)
    else:
        print(f"dataset: {summary['scenes']} scenes, {summary['frames']} frames in {args.out} "
              f"(render {summary['render_s']} s)")
    return 0

"""``farmplug plan SHOT``: write a plan (reduced samples, the default stages, check frames)."""

from __future__ import annotations

import argparse
from pathlib import Path

from farmplug.cli.common import print_json
from farmplug.worker import add_common, help_formatter


def fraction(text: str) -> float:
    """A number or a fraction such as ``1/32`` (argparse type)."""
    from fractions import Fraction

    try:
        return float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a number or fraction: {text!r}") from None


class _Given(argparse.Action):
    """Stores the value and notes that it was given (``<dest>_given``), to tell it from the default."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_given", True)


def add_parser(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("plan", help="write a plan for a shot (reduced samples + the default stages, check frames)",
                         formatter_class=help_formatter)
    add_common(p)
    p.add_argument("shot", type=Path, help="shot YAML")
    p.add_argument("--out", type=Path, default=None, help="plan YAML to write (default: plan.yaml beside the shot)")
    p.add_argument("--samples-factor", type=fraction, default=1 / 32, help="plan samples = full x this (0.03125 or 1/32)")
    p.add_argument("--check-frames", default=None, help="frames rendered at full quality as evidence, e.g. 1,12,24")
    p.add_argument("--check-count", type=int, default=3, action=_Given,
                   help="without --check-frames: this many, spread over the shot (1 with --reuse unless given)")
    p.add_argument("--chunk-size", type=int, default=8, help="frames per farm task")
    p.add_argument("--flip-target", type=float, default=0.1, help="mean HDR-FLIP allowed on check frames")
    p.add_argument("--frame-step", type=int, default=1, help="render every Nth frame and make the rest between them")
    p.add_argument("--resolution-scale", type=fraction, default=1.0,
                   help="render at this share of the resolution (0.5 or 1/2) and upscale to full size with the "
                        "installed upscaler, guided by a cheap full-resolution render")
    p.add_argument("--guided", action="store_true", help="frame step: render cheap aux passes of the frames between")
    p.add_argument("--reuse", type=Path, default=None, metavar="CALIBRATION.json",
                   help="the plan another shot's calibration chose (same scene, look, lighting, samples and "
                        "resolution): its cost is shared with that shot; check frames default to 1")
    p.add_argument("--json", action="store_true", help="print the plan and its task list as JSON")


def run(args: argparse.Namespace) -> int:
    from farmplug.api import make_plan
    from farmplug.graph import compile_plan, default_run_dir
    from farmplug.models import load_shot
    from farmplug.schema import save_model

    shot = load_shot(args.shot)
    out = args.out or args.shot.with_name("plan.yaml")
    if args.reuse is not None:
        from farmplug.calibrate import reuse_calibration
        from farmplug.frames import parse_frames

        plan = reuse_calibration(args.reuse, args.shot, out, check_count=args.check_count if getattr(args, "check_count_given", False) else 1)
        if args.check_frames:
            plan.check_frames = parse_frames(args.check_frames)
    else:
        plan = make_plan(shot, args.shot, out, samples_factor=args.samples_factor, frame_step=args.frame_step,
                         guided=args.guided, chunk_size=args.chunk_size, flip_target=args.flip_target,
                         check_frames=args.check_frames, check_count=args.check_count,
                         resolution_scale=args.resolution_scale)
    save_model(plan, out)
    graph = compile_plan(plan, shot, plan_file=out, shot_file=args.shot, run_dir=default_run_dir(out, shot))
    if args.json:
        print_json({"plan_file": str(out), "plan": plan.model_dump(mode="json"), "tasks": [t.id for t in graph.tasks]})
        return 0
    renders = sum(1 for t in graph.tasks if t.kind == "render" and t.role == "plan")
    # Engine builds make no frame: named apart from the chunks.
    setups = sum(1 for t in graph.tasks if t.kind == "setup")
    print(f"wrote {out}")
    print(
        f"  {shot.name}: frames {shot.frames.start}-{shot.frames.end}, {plan.samples_for(shot)} spp "
        f"instead of {shot.samples} (x{plan.samples_factor:g}), stages: "
        f"{', '.join(f'{s.kind}:{s.backend}' for s in plan.stages)}"
    )
    builds = f", {setups} engine build{'' if setups == 1 else 's'} before the GPU tasks" if setups else ""
    print(f"  {len(graph.tasks)} tasks ({renders} render chunks of {plan.chunk_size}{builds}), "
          f"check frames {plan.check_frames}")
    if plan.calibration:
        print(f"  from calibration {plan.calibration} (its cost shared by the shots it plans)")
    print(f"  next: farmplug submit {out} --farm local")
    return 0

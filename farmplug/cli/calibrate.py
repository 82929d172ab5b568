"""``farmplug calibrate SHOT``: measure candidate plans on check frames; save the cheapest that meets the target.

Calibration is a job graph like any other: ``--farm local`` (the default) runs it here;
``--farm NAME --dry-run --out DIR`` writes it for that farm (``openjd run`` executes the bundle).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from farmplug.cli.common import print_json
from farmplug.cli.plan import fraction
from farmplug.cli.submit import add_farm_options, print_submission, submit_graph
from farmplug.errors import FarmplugError
from farmplug.worker import add_common, help_formatter


def add_parser(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("calibrate", help="measure candidate plans on check frames; save the cheapest that meets the target",
                         formatter_class=help_formatter)
    add_common(p)
    p.add_argument("shot", type=Path, nargs="+",
                   help="shot YAML; more shots of the same sequence (scene, look, lighting, samples, resolution) "
                        "share the calibration of the first: each gets a plan (SHOT.plan.yaml beside it) and its "
                        "share of the cost, and the budget is a share of all their full renders")
    p.add_argument("--out", type=Path, default=None, help="folder for plan.yaml and the evidence (default: beside the shot)")
    p.add_argument("--factors", default=None, help="samples factors to try, e.g. 1/64,1/32,1/16 (default: 1/64..1/8)")
    p.add_argument("--frame-steps", default=None, help="frame steps to try, e.g. 1,2 (default: 1, and 2 for 5+ frames)")
    p.add_argument("--resolution-scales", default="1",
                   help="render resolutions to try, e.g. 1,1/2 (below 1: the installed upscaler makes it full size)")
    p.add_argument("--variants", default="all",
                   help="stage settings to try as structures of their own: all the stages offer (e.g. "
                        "denoise-balanced), none, or a comma-separated list")
    p.add_argument("--check-frames", default=None, help="the frames to measure, e.g. 1,12,24")
    p.add_argument("--check-count", type=int, default=3, help="without --check-frames: this many, spread over the shot")
    p.add_argument("--flip-target", type=float, default=0.1, help="mean HDR-FLIP allowed on check frames")
    p.add_argument("--flip-p95-max", type=float, default=None, help="also bound the 95th-percentile FLIP")
    p.add_argument("--flicker-max", type=float, default=None,
                   help="also bound the temporal instability; check frames are then measured in consecutive pairs")
    p.add_argument("--chunk-size", type=int, default=8, help="frames per farm task")
    p.add_argument("--threads", type=int, default=None, help="render threads (default: all cores)")
    p.add_argument("--budget-share", type=float, default=None,
                   help="the share of the full render's predicted cost calibration may spend (default 0.10): it sets "
                        "how many check frames fit and stops the search when the next candidate would not")
    p.add_argument("--all-candidates", action="store_true",
                   help="measure every candidate in one round instead of searching from the cheapest "
                        "(a farm's calibration job always does)")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="the run folder the plan will use: its reference renders are made now and reused")
    p.add_argument("--out-files", dest="out_files", type=Path, default=None,
                   help="with --dry-run: folder for the farm's native files (default: OUT/calibration/<farm>-submission)")
    add_farm_options(p)


def candidates_from(factors: str | None, steps: str | None, shot, variants: str = "all", scales: str = "1"):
    """The candidates the options name (default: :func:`~farmplug.calibrate.default_candidates`).

    Raises:
        FarmplugError: a factor, step or variant does not parse.
    """
    from farmplug.calibrate import MIN_FRAMES_FOR_STEP, Candidate, stage_variants

    try:
        values = [fraction(f) for f in (factors or "1/64,1/32,1/16,1/8").split(",") if f.strip()]
        default_steps = "1,2" if len(shot.frames.frames) >= MIN_FRAMES_FOR_STEP else "1"
        frame_steps = [int(x) for x in (steps or default_steps).split(",") if x.strip()]
        resolutions = [fraction(x) for x in scales.split(",") if x.strip()]
    except (argparse.ArgumentTypeError, ValueError) as err:
        raise FarmplugError(f"bad --factors/--frame-steps/--resolution-scales: {err}") from None
    candidates = []
    for n in frame_steps:
        if variants == "all":
            sets = stage_variants(n)
        elif variants == "none":
            sets = [()]
        else:
            sets = [(), *((v.strip(),) for v in variants.split(",") if v.strip())]
        candidates += [Candidate(f, frame_step=n, variants=v, resolution_scale=r)
                       for r in resolutions for v in sets for f in values]
    for c in candidates:
        c.stages()  # an unknown variant is one line now, not a failed task later
    return candidates


def run(args: argparse.Namespace) -> int:
    from farmplug.calibrate import compile_calibration, summary_table, write_calibration_job
    from farmplug.execute import run_calibration
    from farmplug.frames import parse_frames
    from farmplug.models import QualityTarget, load_shot
    from farmplug.progress import progress_bar

    shot_file, *others = args.shot
    shot = load_shot(shot_file)
    out = args.out or shot_file.parent
    candidates = candidates_from(args.factors, args.frame_steps, shot, args.variants, args.resolution_scales)
    checks = parse_frames(args.check_frames) if args.check_frames else args.check_count
    from farmplug.calibrate import DEFAULT_BUDGET_SHARE

    share = DEFAULT_BUDGET_SHARE if args.budget_share is None else args.budget_share
    settings = dict(candidates=candidates, check_frames=checks, target=QualityTarget(flip_mean_max=args.flip_target, flicker_max=args.flicker_max),
                    flip_p95_max=args.flip_p95_max, chunk_size=args.chunk_size, threads=args.threads, run_dir=args.run_dir,
                    budget_share=share, also_for=others)
    if args.farm != "local" or args.dry_run:
        # A farm job cannot branch on its own measurements: it measures every candidate at once.
        job = compile_calibration(shot_file, out, **settings)
        write_calibration_job(job)
        done = submit_graph(args, job.graph, job.setup_file.parent, native_out=args.out_files)
        if args.json:
            print_json(done)
        else:
            print_submission(done)
            print(f"the job's last task writes {out / 'calibration.json'} and, when a candidate wins, {out / 'plan.yaml'}")
            for other in others:
                print(f"then: farmplug plan {other} --reuse {out / 'calibration.json'}")
        return 0
    with progress_bar(None, "calibrate", unit="task") as bar:
        def progress(done: int, total: int, label: str) -> None:
            bar.total = total
            bar.n = done
            bar.set_postfix_str(label)
            bar.refresh()

        result = run_calibration(shot_file, out, progress=progress, search=not args.all_candidates, **settings)
    written = reuse_for(others, out, result)
    if args.json:
        print_json(result.model_dump(mode="json") | {"plans": [str(p) for p in written]})
        return 0
    print(summary_table(result))
    for skipped in result.skipped:
        print(f"skipped {skipped.name}: {skipped.reason}")
    if result.budget is not None:
        b = result.budget
        allowed = f" of {b.budget_core_s:.1f} allowed ({b.share:.0%} of the full render)" if b.budget_core_s else ""
        print(f"calibration cost {b.spent_core_s:.1f} core-s{allowed}, {b.spent_share:.1%} of the full render's "
              f"predicted {b.full_render_core_s:.1f}, in {b.rounds} round(s)")
    if result.plan_file:
        print(f"chose {result.recommendation}: {result.reason}")
        print(f"wrote {out / result.plan_file}; next: farmplug submit {out / result.plan_file} --farm local")
        for plan_file in written:
            print(f"wrote {plan_file} (the same plan, sharing this calibration)")
    else:
        print(f"recommendation: full render. {result.reason}")
    return 0


def reuse_for(shots, out: Path, result) -> list[Path]:
    """Plans for the other shots of a calibration (``SHOT.plan.yaml`` beside each), when it chose one."""
    from farmplug.api import save_plan
    from farmplug.calibrate import CALIBRATION_FILE, reuse_calibration

    if result.plan_file is None:
        return []
    written = []
    for shot_file in shots:
        plan_file = shot_file.with_suffix(".plan.yaml")
        save_plan(reuse_calibration(out / CALIBRATION_FILE, shot_file, plan_file), plan_file)
        written.append(plan_file)
    return written

"""The ``farmplug`` command line: demo, plan, submit, run, report.

Errors print one line (``farmplug: error: FILE: problem``) and exit non-zero; ``-v`` shows the
traceback and debug logging.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from farmplug import __version__
from farmplug.errors import FarmplugError

log = logging.getLogger("farmplug")



def _add_common(p: argparse.ArgumentParser, *, top: bool = False) -> None:
    # Sub-commands suppress the default so `farmplug -v run ...` and `farmplug run ... -v` both work.
    p.add_argument(
        "-v", "--verbose", action="store_true", default=False if top else argparse.SUPPRESS,
        help="show tracebacks and debug logging",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="farmplug",
        description="Render less, fill the gap with AI post-processing on the farm, and prove the savings.",
    )
    parser.add_argument("--version", action="version", version=f"farmplug {__version__}")
    _add_common(parser, top=True)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    demo = verbs.add_parser("demo", help="build a Blender shot, render it cheaply, denoise, measure, report")
    _add_common(demo)
    demo.add_argument("--out", type=Path, default=Path("demo-out"), help="run folder (default: ./demo-out)")
    demo.add_argument("--frames", type=int, default=None, help="frames in the demo shot")
    demo.add_argument("--width", type=int, default=None)
    demo.add_argument("--height", type=int, default=None)
    demo.add_argument("--samples", type=int, default=None, help="full-quality samples per pixel")
    demo.add_argument("--samples-factor", type=float, default=None,
                      help="use this fixed plan (samples = full x this) instead of calibrating")
    demo.add_argument("--threads", type=int, default=None, help="render threads (default: all cores)")
    demo.add_argument("--frame-step", type=int, default=None, help="render every Nth frame, interpolate the rest")
    demo.add_argument("--guided", action="store_true", default=None, help="inbetween: guide with cheap aux renders")

    plan = verbs.add_parser("plan", help="write a plan for a shot (reduced samples + denoise, check frames)")
    _add_common(plan)
    plan.add_argument("shot", type=Path, help="shot YAML")
    plan.add_argument("--out", type=Path, default=None, help="plan YAML to write (default: plan.yaml beside the shot)")
    plan.add_argument("--samples-factor", type=float, default=1 / 32)
    plan.add_argument("--check-frames", default=None, help="frames rendered at full quality as evidence, e.g. 1,12,24")
    plan.add_argument("--chunk-size", type=int, default=8)
    plan.add_argument("--flip-target", type=float, default=0.1, help="mean HDR-FLIP allowed on check frames")
    plan.add_argument("--frame-step", type=int, default=1, help="render every Nth frame and interpolate the rest")
    plan.add_argument("--guided", action="store_true", help="inbetween: render cheap aux passes of the in-between frames")
    plan.add_argument("--json", action="store_true", help="print the plan and its task list as JSON")

    cal = verbs.add_parser("calibrate", help="measure candidate plans on check frames; save the cheapest that meets the target")
    _add_common(cal)
    cal.add_argument("shot", type=Path, help="shot YAML")
    cal.add_argument("--out", type=Path, default=None, help="folder for plan.yaml and the evidence (default: beside the shot)")
    cal.add_argument("--factors", default=None, help="samples factors to try, e.g. 1/64,1/32,1/16 (default: 1/64..1/8)")
    cal.add_argument("--frame-steps", default=None, help="frame steps to try, e.g. 1,2 (default: 1, and 2 for 5+ frames)")
    cal.add_argument("--check-frames", type=int, default=3, help="how many check frames to measure")
    cal.add_argument("--flip-target", type=float, default=0.1, help="mean HDR-FLIP allowed on check frames")
    cal.add_argument("--flip-p95-max", type=float, default=None, help="also bound the 95th-percentile FLIP")
    cal.add_argument("--chunk-size", type=int, default=8)
    cal.add_argument("--threads", type=int, default=None)
    cal.add_argument("--run-dir", type=Path, default=None,
                     help="the run folder the plan will use: its reference renders are made now and reused")

    submit = verbs.add_parser("submit", help="compile a plan into a job graph and submit it to a farm")
    _add_common(submit)
    submit.add_argument("plan", type=Path, help="plan YAML")
    submit.add_argument("--farm", default="local", help="farm backend: local, openjd, deadline, opencue, flamenco, tractor")
    submit.add_argument("--run-dir", type=Path, default=None, help="run folder (default: run-<shot> beside the plan)")
    submit.add_argument("--force", action="store_true", help="local: re-run tasks whose outputs already exist")
    submit.add_argument("--no-report", action="store_true", help="local: do not build the report after the run")
    submit.add_argument("--dry-run", action="store_true", help="write the farm's native files instead of submitting")
    submit.add_argument("--out", type=Path, default=None, help="with --dry-run: folder for the native files")
    submit.add_argument("--farm-config", type=Path, default=None,
                        help="farm addresses (default: $FARMPLUG_FARMS or ~/.config/farmplug/farms.yaml)")
    submit.add_argument("--job-name", default=None, help="job name on the farm (default: the shot name)")
    submit.add_argument("--priority", type=int, default=50, help="job priority (0-100)")
    submit.add_argument("--cpu-pool", default="cpu", help="pool/group/service for render tasks")
    submit.add_argument("--gpu-pool", default="gpu", help="pool/group/service for GPU post tasks")
    submit.add_argument("--worker-farmplug", default="farmplug", help="the farmplug executable on the workers")

    run = verbs.add_parser("run", help="run one task: render or a stage over a frame range")
    _add_common(run)
    what = run.add_subparsers(dest="what", required=True, metavar="TASK")
    render = what.add_parser("render", help="render frames of a scene with the plan's overrides")
    _add_common(render)
    render.add_argument("--scene", type=Path, required=True)
    render.add_argument("--output", required=True, help="output pattern with #### or %%04d")
    render.add_argument("--frames", required=True, help="A-B, A-BxSTEP or a comma list")
    render.add_argument("--within", default=None, help="only the frames of --frames that are in this set")
    render.add_argument("--samples", type=int, default=None)
    render.add_argument("--resolution-percentage", type=int, default=100)
    render.add_argument("--passes", default="", help="comma list of albedo,normal,depth,motion,object_index,material_index")
    render.add_argument("--threads", type=int, default=None)
    render.add_argument("--layout", choices=("multipart", "singlepart"), default="multipart")
    _add_task_args(render)

    denoise = what.add_parser("denoise", help="denoise frames with OIDN (albedo/normal AOVs when present)")
    _add_common(denoise)
    denoise.add_argument("--input", required=True, help="input pattern with #### or %%04d, or one file")
    denoise.add_argument("--output", required=True, help="output pattern, or one file")
    denoise.add_argument("--frames", default=None, help="A-B (required when the patterns have a frame token)")
    denoise.add_argument("--within", default=None, help="only the frames of --frames that are in this set")
    denoise.add_argument("--plan", type=Path, default=None, help="take the denoise settings from this plan")
    denoise.add_argument("--quality", choices=("default", "fast", "balanced", "high"), default=None)
    denoise.add_argument("--clean-aux", action="store_true", default=None, help="albedo/normal are noise-free")
    denoise.add_argument(
        "--no-prefilter-aux", dest="prefilter_aux", action="store_false", default=None,
        help="pass noisy albedo/normal straight to the colour filter (faster, slightly lower quality)",
    )
    denoise.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    denoise.add_argument("--require-aux", action="store_true", help="fail instead of warning when albedo/normal are missing")
    _add_task_args(denoise)

    inb = what.add_parser("inbetween", help="interpolate the frames between keyframes from motion vectors and depth")
    _add_common(inb)
    inb.add_argument("--input", required=True, help="keyframe pattern (#### or %%04d); needs depth and Vector passes")
    inb.add_argument("--output", required=True, help="pattern for the in-between frames that pass the confidence check")
    inb.add_argument("--frames", required=True, help="frames to make, or a range A-B holding keyframes and the frames between")
    inb.add_argument("--step", type=int, default=None, help="keyframes every STEP frames of --frames (A, A+STEP, ..., B)")
    inb.add_argument("--keys", default=None, help="the keyframes, e.g. 1-23x2,24 (instead of --step)")
    inb.add_argument("--plan", type=Path, default=None, help="take the inbetween settings from this plan")
    inb.add_argument("--guide", default=None, help="pattern of cheap aux renders (depth, Vector) of the in-between frames")
    inb.add_argument("--confidence", type=Path, default=None, help="write the per-frame verdicts here (JSON)")
    inb.add_argument("--confidence-dir", type=Path, default=None,
                     help="write the verdicts as DIR/confidence-FIRST-LAST.json (for the fallback task)")
    inb.add_argument("--rejected", default=None, help="also write frames that fail the check here, for inspection")
    inb.add_argument("--threshold", type=float, default=None, help="frame confidence needed to deliver a frame (0-1)")
    inb.add_argument("--fallback", choices=("render", "error"), default=None,
                     help="keyframes missing passes: list their frames for rendering (render) or stop (error)")
    inb.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    _add_task_args(inb)

    fallback = what.add_parser("fallback", help="render for real the frames an inbetween task could not vouch for")
    _add_common(fallback)
    fallback.add_argument("--plan", type=Path, required=True)
    fallback.add_argument("--frames", required=True, help="the in-between frames this task answers for")
    fallback.add_argument("--confidence-dir", type=Path, required=True, help="folder of the inbetween tasks' verdicts")
    fallback.add_argument("--run-dir", type=Path, required=True)
    _add_task_args(fallback)

    report = verbs.add_parser("report", help="build the savings report of finished run folders (one shot or a show)")
    _add_common(report)
    report.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    report.add_argument("--out", type=Path, default=None,
                        help="where to write report.html/json/csv (default: the run folder for one run; required for several)")
    report.add_argument("--prices", type=Path, default=None, help="prices YAML (currency, per core-hour, per GPU-hour...)")
    report.add_argument("--capacity", type=Path, default=None, help="farm capacity YAML (CPU nodes x cores, GPUs)")
    return parser


def _add_task_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layer", default=None, help="layer name; the task id is LAYER-FIRST-LAST (e.g. render-0001-0008)")
    p.add_argument("--task", default=None, help="task id (default: from --layer and the frames)")
    p.add_argument("--role", choices=("plan", "reference"), default="plan")
    p.add_argument("--timing", type=Path, default=None, help="timing record path (default: beside the outputs)")
    p.add_argument("--no-timing", action="store_true", help="do not write a timing record")


def _task_names(args: argparse.Namespace, frames: list[int], folder: str | Path) -> tuple[str, Path | None]:
    """The task id and timing-record path: given, or derived from --layer and the frames exactly as the
    job graph derives them (so a farm can run a chunk knowing only its frames)."""
    from farmplug.graph import task_id, timing_path

    default_layer = "reference" if getattr(args, "role", "plan") == "reference" and args.what == "render" else args.what
    tid = args.task or task_id(args.layer or default_layer, frames)
    if args.no_timing:
        return tid, None
    return tid, Path(args.timing) if args.timing else Path(timing_path(folder, tid))


def _write_timing(args: argparse.Namespace, record, path: Path | None) -> None:
    from farmplug.timing import write_timing

    if path is not None:
        record.command = list(getattr(args, "argv", []))
        write_timing(record, path)


def _within(args: argparse.Namespace, frames: list[int]) -> list[int]:
    from farmplug.frames import parse_frames

    if not args.within:
        return frames
    allowed = set(parse_frames(args.within))
    kept = [f for f in frames if f in allowed]
    if not kept:
        raise FarmplugError(f"no frame of {args.frames} is in --within {args.within}")
    return kept


# --- verbs -----------------------------------------------------------------------------------


def _frames_for(args: argparse.Namespace, *patterns: str) -> list[int]:
    from farmplug.frames import parse_frames
    from farmplug.render.base import has_frame_token

    if args.frames:
        return parse_frames(args.frames)
    if any(has_frame_token(p) for p in patterns):
        raise FarmplugError("--frames is required when --input/--output contain a frame token (#### or %04d)")
    return [0]


def cmd_run_render(args: argparse.Namespace) -> int:
    from farmplug.frames import parse_frames
    from farmplug.progress import progress_bar
    from farmplug.render import BlenderRenderer, RenderRequest
    frames = _within(args, parse_frames(args.frames))
    tid, timing = _task_names(args, frames, Path(args.output).parent)
    passes = frozenset(p.strip() for p in args.passes.split(",") if p.strip())
    request = RenderRequest(
        scene=args.scene,
        frames=tuple(frames),
        output_pattern=args.output,
        samples=args.samples,
        resolution_percentage=args.resolution_percentage,
        passes=passes,
        threads=args.threads,
        exr_layout=args.layout,
        task=tid,
        role=args.role,
    )
    with progress_bar(len(frames), f"render {tid}") as bar:
        record = BlenderRenderer().render(request, progress=lambda _f: bar.update(1))
    _write_timing(args, record, timing)
    return 0


def _denoise_config(args: argparse.Namespace):
    from farmplug.models import DenoiseConfig

    updates = {
        "quality": args.quality,
        "clean_aux": args.clean_aux,
        "prefilter_aux": args.prefilter_aux,
        "device": args.device,
        "missing_aux": "error" if args.require_aux else None,
    }
    return _stage_config(args, "denoise", DenoiseConfig(), updates)


def cmd_run_denoise(args: argparse.Namespace) -> int:
    from farmplug.progress import progress_bar
    from farmplug.runner import frame_jobs, run_stage

    config = _denoise_config(args)
    frames = _within(args, _frames_for(args, args.input, args.output))
    tid, timing = _task_names(args, frames, Path(args.output).parent)
    jobs = frame_jobs(args.input, args.output, frames)
    with progress_bar(len(jobs), f"denoise {tid}") as bar:
        record = run_stage(config, jobs, task=tid, role=args.role, plan=str(args.plan or ""), progress=lambda _f: bar.update(1))
    _write_timing(args, record, timing)
    return 0


def _stage_config(args: argparse.Namespace, kind: str, default, updates: dict):
    from farmplug.models import load_plan

    config = default
    if args.plan is not None:
        plan, _shot, _ = load_plan(args.plan)
        config = plan.stage(kind)
        if config is None:
            raise FarmplugError(f"the plan has no {kind} stage", path=args.plan)
    from farmplug.schema import validate_data

    merged = {**config.model_dump(), **{k: v for k, v in updates.items() if v is not None}}
    return validate_data(type(config), merged, source="command line")


def cmd_run_inbetween(args: argparse.Namespace) -> int:
    from farmplug.frames import parse_frames
    from farmplug.graph import confidence_path
    from farmplug.inbetween.stage import run_inbetween, split_span, targets_between
    from farmplug.models import InbetweenConfig
    from farmplug.progress import progress_bar
    from farmplug.schema import save_model

    config = _stage_config(
        args, "inbetween", InbetweenConfig(),
        {"confidence_threshold": args.threshold, "fallback": args.fallback, "device": args.device},
    )
    frames = parse_frames(args.frames)
    if args.keys:
        keys, targets = targets_between(frames, parse_frames(args.keys))
    elif args.step:
        keys, targets = split_span(frames, args.step)
    else:
        raise FarmplugError("give --step N (keyframes every N frames of --frames) or --keys with the keyframes")
    tid, timing = _task_names(args, targets, Path(args.output).parent)
    record_file = args.confidence or (Path(confidence_path(args.confidence_dir, targets)) if args.confidence_dir else None)
    with progress_bar(len(targets), f"inbetween {tid}") as bar:
        record, verdicts = run_inbetween(
            config, input_pattern=args.input, output_pattern=args.output, keys=keys, targets=targets,
            guide_pattern=args.guide, rejected_pattern=args.rejected,
            task=tid, plan=str(args.plan or ""), progress=lambda _f: bar.update(1),
        )
    if record_file:
        save_model(verdicts, record_file)
    _write_timing(args, record, timing)
    if verdicts.failed:
        log.warning("frames %s did not pass the confidence check and must be rendered", verdicts.failed)
    return 0


def cmd_run_fallback(args: argparse.Namespace) -> int:
    from farmplug.fallback import fallback_timing_folder, render_fallback_frames
    from farmplug.frames import parse_frames

    frames = parse_frames(args.frames)
    tid, timing = _task_names(args, frames, fallback_timing_folder(args.plan, args.run_dir))
    record = render_fallback_frames(args.plan, args.confidence_dir, args.run_dir, frames=frames, task=tid)
    _write_timing(args, record, timing)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from farmplug.frames import parse_frames
    from farmplug.graph import compile_plan
    from farmplug.models import DenoiseConfig, InbetweenConfig, Plan, QualityTarget, default_check_frames, load_shot
    from farmplug.schema import save_model

    shot = load_shot(args.shot)
    out = args.out or args.shot.with_name("plan.yaml")
    stages = [DenoiseConfig()]
    if args.frame_step > 1:
        stages.append(InbetweenConfig(guided=args.guided))
    try:
        shot_ref = str(args.shot.absolute().relative_to(out.absolute().parent))
    except ValueError:
        shot_ref = str(args.shot.absolute())
    plan = Plan(
        shot=shot_ref,
        samples_factor=args.samples_factor,
        frame_step=args.frame_step,
        stages=stages,
        chunk_size=args.chunk_size,
        quality_target=QualityTarget(flip_mean_max=args.flip_target),
    )
    keys = frozenset(plan.keyframes(shot)) if args.frame_step > 1 else frozenset()
    checks = parse_frames(args.check_frames) if args.check_frames else default_check_frames(shot, avoid=keys)
    plan.check_frames = checks
    save_model(plan, out)
    graph = compile_plan(plan, shot, plan_file=out, shot_file=args.shot, run_dir=out.parent / f"run-{shot.name}")
    if args.json:
        print(json.dumps({"plan": plan.model_dump(mode="json"), "tasks": [t.id for t in graph.tasks]}, indent=2))
    else:
        renders = sum(1 for t in graph.tasks if t.kind == "render" and t.role == "plan")
        print(f"wrote {out}")
        print(
            f"  {shot.name}: frames {shot.frames.start}-{shot.frames.end}, {plan.samples_for(shot)} spp "
            f"instead of {shot.samples} (x{plan.samples_factor:g}), stages: "
            f"{', '.join(f'{s.kind}:{s.backend}' for s in plan.stages)}"
        )
        print(f"  {len(graph.tasks)} tasks ({renders} render chunks of {plan.chunk_size}), check frames {checks}")
        print(f"  next: farmplug submit {out} --farm local")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from farmplug.graph import compile_plan, save_graph
    from farmplug.models import load_plan

    plan, shot, shot_file = load_plan(args.plan)
    run_dir = args.run_dir or args.plan.parent / f"run-{shot.name}"
    graph = compile_plan(plan, shot, plan_file=args.plan, shot_file=shot_file, run_dir=run_dir)
    if args.farm == "local" and not args.dry_run:
        if not shot.scene_path(shot_file).is_file():
            raise FarmplugError("scene file not found", path=shot.scene_path(shot_file))
        save_graph(graph, run_dir)
        from farmplug.integrations.local import LocalFarm

        summary = LocalFarm().run(graph, force=args.force)
        print(f"ran {len(summary.ran)} tasks, skipped {len(summary.skipped)} already done, in {summary.wall_s:.1f} s")
        if not args.no_report:
            from farmplug.report.build import build_report

            report, html = build_report(run_dir, run_dir)
            _print_headline(report, html)
        return 0
    return _submit_to_farm(args, graph, run_dir)


def _submit_to_farm(args: argparse.Namespace, graph, run_dir: Path) -> int:
    from farmplug.graph import save_graph
    from farmplug.integrations.base import CompileOptions, connection_for, load_farm_config, write_submission
    from farmplug.integrations.registry import create_farm

    backend = create_farm(args.farm)
    options = CompileOptions(
        job_name=args.job_name, priority=args.priority, cpu_pool=args.cpu_pool, gpu_pool=args.gpu_pool,
        farmplug_command=(args.worker_farmplug,),
    )
    submission = backend.compile(graph, options)
    if args.dry_run:
        out = args.out or run_dir / f"{args.farm}-submission"
        written = write_submission(submission, out)
        save_graph(graph, out)
        # The run folder gets the graph too: `farmplug report RUN_DIR` reads it once the farm is done.
        save_graph(graph, run_dir)
        print(f"wrote {len(written)} {args.farm} files to {out} (nothing submitted)")
        if submission.summary:
            print(submission.summary)
        return 0
    connection = connection_for(args.farm, load_farm_config(args.farm_config), f"FARMPLUG_{args.farm.upper()}")
    save_graph(graph, run_dir)
    result = backend.submit(submission, connection)
    print(f"submitted to {args.farm}: {result.message}")
    for job in result.job_ids:
        print(f"  job {job}")
    print(f"when it has finished: farmplug report {run_dir}")
    return 0


def _print_headline(report, html: Path) -> None:
    s, q = report.savings, report.quality
    verdict = "" if q.meets_target is None else ("  (meets target)" if q.meets_target else "  (MISSES target)")
    print(
        f"savings: {s.ratio:.1f}x fewer CPU core-seconds "
        f"({s.core_seconds_full:,.0f} full vs {s.core_seconds_plan:,.0f} plan, {s.frames} frames)"
    )
    print(f"quality: mean FLIP {q.flip_mean:.4f}, PSNR {q.psnr_mean:.1f} dB, SSIM {q.ssim_mean:.3f}{verdict}")
    print(f"report: {html}")


def _candidates(factors: str | None, steps: str | None, shot):
    from fractions import Fraction

    from farmplug.calibrate import Candidate, default_candidates

    if factors is None and steps is None:
        return default_candidates(shot)
    try:
        values = [float(Fraction(f.strip())) for f in (factors or "1/64,1/32,1/16,1/8").split(",") if f.strip()]
        frame_steps = [int(x) for x in (steps or "1").split(",") if x.strip()]
    except (ValueError, ZeroDivisionError) as err:
        raise FarmplugError(f"bad --factors/--frame-steps: {err}") from None
    return [Candidate(f, frame_step=n) for n in frame_steps for f in values]


def cmd_calibrate(args: argparse.Namespace) -> int:
    from farmplug.calibrate import calibrate, summary_table
    from farmplug.models import QualityTarget, load_shot
    from farmplug.progress import progress_bar

    shot = load_shot(args.shot)
    out = args.out or args.shot.parent
    candidates = _candidates(args.factors, args.frame_steps, shot)
    with progress_bar(1 + len(candidates), "calibrate", unit="step") as bar:
        def progress(done: int, _total: int, label: str) -> None:
            bar.n = done
            bar.set_postfix_str(label)
            bar.refresh()

        result = calibrate(
            args.shot, out, candidates=candidates, check_frames=args.check_frames,
            target=QualityTarget(flip_mean_max=args.flip_target), flip_p95_max=args.flip_p95_max,
            chunk_size=args.chunk_size, threads=args.threads, progress=progress, run_dir=args.run_dir,
        )
    print(summary_table(result))
    if result.plan_file:
        print(f"chose {result.recommendation}: {result.reason}")
        print(f"wrote {out / result.plan_file}; next: farmplug submit {out / result.plan_file} --farm local")
    else:
        print(f"recommendation: full render. {result.reason}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    if len(args.run_dirs) == 1 and args.prices is None and args.capacity is None:
        from farmplug.report.build import build_report

        report, html = build_report(args.run_dirs[0], args.out or args.run_dirs[0])
        _print_headline(report, html)
        return 0
    from farmplug.report.show import build_show_report

    if args.out is None:
        if len(args.run_dirs) > 1:
            raise FarmplugError("--out is required when reporting several run folders")
        args.out = args.run_dirs[0] / "show-report"
    show, html, json_path, csv_path = build_show_report(
        args.run_dirs, args.out, prices_file=args.prices, capacity_file=args.capacity
    )
    print(f"{len(show.shots)} shots: report {html}")
    print(f"  data: {json_path}, {csv_path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from farmplug.demo import DemoSettings, run_demo

    overrides = {
        k: v
        for k, v in {
            "frames": args.frames, "width": args.width, "height": args.height, "samples": args.samples,
            "samples_factor": args.samples_factor, "threads": args.threads,
            "frame_step": args.frame_step, "guided": args.guided,
        }.items()
        if v is not None
    }
    if args.samples_factor is not None:
        overrides["calibrate"] = False
    report, html = run_demo(args.out, DemoSettings(**overrides))
    _print_headline(report, html)
    return 0


def dispatch(args: argparse.Namespace) -> int:
    if args.verb == "run":
        runners = {
            "render": cmd_run_render, "denoise": cmd_run_denoise,
            "inbetween": cmd_run_inbetween, "fallback": cmd_run_fallback,
        }
        return runners[args.what](args)
    verbs = {"demo": cmd_demo, "plan": cmd_plan, "calibrate": cmd_calibrate, "submit": cmd_submit, "report": cmd_report}
    return verbs[args.verb](args)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    return args


def run_argv(argv: Sequence[str]) -> int:
    """Run a farmplug command line in this process, letting errors propagate (used by the local farm)."""
    return dispatch(_parse(argv))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if args.verbose else "%(message)s",
    )
    try:
        return dispatch(args)
    except FarmplugError as err:
        if args.verbose:
            raise
        print(f"farmplug: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("farmplug: interrupted; finished outputs are kept, run the same command again to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

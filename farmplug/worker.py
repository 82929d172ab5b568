"""``farmplug run ...``: the commands a farm worker runs, one task each.

``render`` (a Blender render of a frame set), ``fallback`` (render and post-process the frames a
stage withheld), ``calibration`` (measure a calibration's candidates once their tasks ran),
``engine`` (build the TensorRT engine a stage's GPU tasks load, once before them) and
one sub-command per registered stage, built from its descriptor and config model: the options
its mode needs (``--input``/``--output``/``--frames``; keyframes and verdicts for a stage that
makes frames between keyframes), then one option per config field (``--quality``, ``--device``...)
and the stage's aliases. Every task writes its timing record beside its outputs, holding the
exact argument list, which is how the engine knows it finished.

This module is part of the core: the local farm and calibration run tasks through
:func:`run_task` in-process, and the command line's ``run`` verb is this parser.
"""

from __future__ import annotations

import argparse
import logging
import re
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from farmplug.errors import FarmplugError
from farmplug.stages.base import StageDescriptor

log = logging.getLogger("farmplug")

#: Names a stage's config field cannot take as an option (the task's own options).
_RESERVED = {"kind", "backend"}


def add_common(p: argparse.ArgumentParser, *, top: bool = False) -> None:
    """``-v``: sub-commands suppress the default so ``farmplug -v run ...`` and ``... -v`` both work."""
    p.add_argument(
        "-v", "--verbose", action="store_true", default=False if top else argparse.SUPPRESS,
        help="show tracebacks and debug logging",
    )


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default, unless its help already says what the default is, or there is
    none to show (``None``; an on/off flag, whose default is not to give it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        flag = isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction | argparse._StoreConstAction)
        if "default" in text or action.default is None or action.default is argparse.SUPPRESS or flag:
            return text
        return super()._get_help_string(action)


def help_formatter(prog: str) -> argparse.HelpFormatter:
    """Help that shows every option's default (every verb of the command line uses it)."""
    return _DefaultsFormatter(prog, max_help_position=32)


def add_run_parsers(verbs: argparse._SubParsersAction) -> None:
    """Add the ``run`` verb and its task sub-commands to a parser's sub-commands."""
    from farmplug.stages.registry import descriptors

    run = verbs.add_parser("run", help="run one task: a render, a stage over frames, a fallback", formatter_class=help_formatter)
    add_common(run)
    what = run.add_subparsers(dest="what", required=True, metavar="TASK")

    render = what.add_parser("render", help="render frames of a scene with the plan's overrides", formatter_class=help_formatter)
    add_common(render)
    render.add_argument("--scene", type=Path, required=True, help="the .blend file")
    render.add_argument("--output", required=True, help="output pattern with #### or %%04d")
    render.add_argument("--frames", required=True, help="A-B, A-BxSTEP or a comma list")
    render.add_argument("--within", default=None, help="only the frames of --frames that are in this set")
    render.add_argument("--samples", type=int, default=None, help="samples per pixel (default: the scene's)")
    render.add_argument("--resolution-percentage", type=int, default=100, help="render at this % of the scene's size")
    render.add_argument("--passes", default="", help="comma list of albedo,normal,depth,motion,object_index,material_index")
    render.add_argument("--threads", type=int, default=None, help="render threads (default: all cores)")
    render.add_argument("--layout", choices=("multipart", "singlepart"), default="multipart", help="EXR layout")
    _add_task_args(render)

    backends: dict[str, list[StageDescriptor]] = {}
    for d in descriptors():
        backends.setdefault(d.kind, []).append(d)
    for group in backends.values():
        _add_stage_parser(what, group)

    fallback = what.add_parser("fallback", help="render for real the frames a stage could not vouch for",
                               formatter_class=help_formatter)
    add_common(fallback)
    fallback.add_argument("--plan", type=Path, required=True, help="the plan")
    fallback.add_argument("--frames", required=True, help="the frames this task answers for")
    fallback.add_argument("--confidence-dir", type=Path, required=True, help="folder of the withholding tasks' verdicts")
    fallback.add_argument("--run-dir", type=Path, required=True, help="the run folder")
    _add_task_args(fallback)

    engine = what.add_parser("engine", help="build the TensorRT engine a stage's GPU tasks load, once before them",
                             formatter_class=help_formatter)
    add_common(engine)
    engine.add_argument("--model", type=Path, required=True, help="weights file (.safetensors)")
    engine.add_argument("--shape", type=tile_shape, required=True, metavar="WxH",
                        help="the largest output tile the engine serves (the stage's tile plus its overlap)")
    engine.add_argument("--frames", required=True, help="the frames of the stage tasks that wait for it (name the task)")
    engine.add_argument("--output", type=Path, required=True, help="where to write the record of what was built (JSON)")
    engine.add_argument("--cache", type=Path, default=None,
                        help="cache folder; not given: FARMPLUG_MODEL_CACHE, else ~/.cache/farmplug/models")
    _add_task_args(engine)

    measure = what.add_parser("calibration", help="measure a calibration's candidates once their tasks have run",
                              formatter_class=help_formatter)
    add_common(measure)
    measure.add_argument("--setup", type=Path, required=True, help="the calibration's setup file (calibration-setup.json)")
    _add_task_args(measure)


def _add_task_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layer", default=None, help="layer name; the task id is LAYER-FIRST-LAST (e.g. render-0001-0008)")
    p.add_argument("--task", default=None, help="task id (default: from --layer and the frames)")
    p.add_argument("--role", choices=("plan", "reference"), default="plan", help="what the task is for")
    p.add_argument("--timing", type=Path, default=None, help="timing record path (default: beside the outputs)")
    p.add_argument("--no-timing", action="store_true", help="do not write a timing record")


_WIDTH_HEIGHT = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def width_by_height(what: str) -> Callable[[str], tuple[int, int]]:
    """An argparse type for ``WIDTHxHEIGHT`` (``"1920x1080"`` -> ``(1920, 1080)``, both at least 1);
    anything else is a usage error naming ``what`` it should have been."""

    def parse(text: str) -> tuple[int, int]:
        match = _WIDTH_HEIGHT.match(text)
        if not match or int(match[1]) < 1 or int(match[2]) < 1:
            raise argparse.ArgumentTypeError(f"not a {what} WIDTHxHEIGHT: {text!r}")
        return int(match[1]), int(match[2])

    return parse


tile_shape = width_by_height("tile shape")


def _field_option(annotation: Any) -> dict[str, Any]:
    """argparse settings for a config field's type (Literal: choices; bool: --x/--no-x; numbers)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        values = typing.get_args(annotation)
        return {"choices": values, "type": type(values[0])}
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    if annotation in (int, float, str):
        return {"type": annotation}
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(args) == 1:
        return _field_option(args[0])
    return {"type": str}


def _add_stage_parser(what: argparse._SubParsersAction, group: list[StageDescriptor]) -> None:
    """``farmplug run KIND``: one sub-command per stage kind, ``--backend`` choosing among its backends
    (the first one by default, or the plan's) and the settings of every backend."""
    d = group[0]
    summary = d.summary if len(group) == 1 else "; ".join(f"{g.backend}: {g.summary}" for g in group)
    p = what.add_parser(d.kind, help=summary, formatter_class=help_formatter)
    add_common(p)
    if d.mode == "keyframes":
        p.add_argument("--input", required=True, help="keyframe pattern (#### or %%04d)")
        p.add_argument("--output", required=True, help="pattern of the frames it makes (those that pass, if it vouches)")
        p.add_argument("--frames", required=True,
                       help="frames to make, or a range A-B holding keyframes and the frames between")
        p.add_argument("--step", type=int, default=None, help="keyframes every STEP frames of --frames (A, A+STEP, ..., B)")
        p.add_argument("--keys", default=None, help="the keyframes, e.g. 1-23x2,24 (instead of --step)")
        if d.aux_flag:
            p.add_argument(d.aux_flag, dest="aux", default=None, help="pattern of the aux render of the frames it makes")
    else:
        p.add_argument("--input", required=True, help="input pattern with #### or %%04d, or one file")
        p.add_argument("--output", required=True, help="output pattern, or one file")
        p.add_argument("--frames", default=None, help="A-B (required when the patterns have a frame token)")
        p.add_argument("--within", default=None, help="only the frames of --frames that are in this set")
    if d.withholds:
        p.add_argument("--confidence", type=Path, default=None, help="write the per-frame verdicts here (JSON)")
        p.add_argument("--confidence-dir", type=Path, default=None,
                       help="write the verdicts as DIR/confidence-FIRST-LAST.json (for the fallback task)")
        p.add_argument("--rejected", default=None, help="also write frames that fail the check here, for inspection")
    p.add_argument("--plan", type=Path, default=None, help=f"take the {d.kind} settings from this plan")
    settings = p.add_argument_group(f"{d.kind} settings (default: the plan's, else the stage's defaults)")
    if len(group) > 1:
        settings.add_argument("--backend", dest="cfg_backend", choices=[g.backend for g in group], default=None,
                              help=f"the {d.kind} backend (default: the plan's, else {d.backend})")
    added: set[str] = set()
    if len(group) > 1:
        added.add("--backend")  # chooses the backend; no alias may take the spelling
    for g in group:
        for name, info in g.config.model_fields.items():
            if name in _RESERVED or name in added:
                continue
            added.add(name)
            only = f" [{g.backend}]" if any(name not in o.config.model_fields for o in group) else ""
            settings.add_argument(f"--{name.replace('_', '-')}", dest=f"cfg_{name}", default=None,
                                  help=f"{info.description or name} (stage default: {info.default!r}){only}",
                                  **_field_option(info.annotation))
        for flag, (name, value) in g.cli_aliases.items():
            if flag in added:
                continue
            added.add(flag)
            info = g.config.model_fields[name]
            if value is None:
                settings.add_argument(flag, dest=f"cfg_{name}", default=None, help=f"same as --{name.replace('_', '-')}",
                                      **_field_option(info.annotation))
            else:
                settings.add_argument(flag, dest=f"cfg_{name}", action="store_const", const=value, default=None,
                                      help=f"same as --{name.replace('_', '-')} {value}")
    _add_task_args(p)


# --- helpers ----------------------------------------------------------------------------------


def _task_names(args: argparse.Namespace, frames: list[int], folder: str | Path) -> tuple[str, Path | None]:
    """The task id and timing-record path: given, or derived from --layer and the frames exactly as the
    job graph derives them (so a farm can run a chunk knowing only its frames). Sets ``args.key``
    (see :func:`task_key`) before the task does anything."""
    from farmplug.graph import task_id, timing_path

    default_layer = "reference" if getattr(args, "role", "plan") == "reference" and args.what == "render" else args.what
    tid = args.task or task_id(args.layer or default_layer, frames)
    timing = None if args.no_timing else Path(args.timing) if args.timing else Path(timing_path(folder, tid))
    args.key = task_key(tid, timing or Path(folder), _task_argv(args))
    return tid, timing


def _task_argv(args: argparse.Namespace) -> list[str]:
    """The task's command as a job graph spells it: from ``run`` on (without options like ``-v`` before it)."""
    argv = list(getattr(args, "argv", []))
    return argv[argv.index("run"):] if "run" in argv else argv


def task_key(tid: str, near: Path, argv: list[str]) -> str:
    """This task's key (see :func:`farmplug.execute.task_key`), computed before it runs.

    Farmplug's own engine hands it over in ``FARMPLUG_TASK_KEY``. On a farm, where a worker runs
    the command alone, the key is computed here from the run's ``graph.json`` (found above the
    task's timing record) when this command is that graph's task ``tid``, so a run a farm made is
    trusted by a later ``submit`` or ``report`` exactly as one the local farm made. A command run by
    hand, outside any run folder, has no key: its outputs are never taken as a run's.
    """
    import os

    from farmplug.timing import TASK_KEY_ENV

    given = os.environ.get(TASK_KEY_ENV, "")
    if given:
        return given
    from farmplug.graph import find_task

    found = find_task(near, tid, argv)
    if found is None:
        return ""
    from farmplug.keys import task_key as key_of

    graph, task = found
    return key_of(task, graph.run_dir)


def _write_timing(args: argparse.Namespace, record, path: Path | None) -> None:
    from farmplug.timing import write_timing

    if path is not None:
        record.command = list(getattr(args, "argv", []))
        record.key = getattr(args, "key", "")
        write_timing(record, path)


def _within(args: argparse.Namespace, frames: list[int]) -> list[int]:
    from farmplug.frames import parse_frames

    if not getattr(args, "within", None):
        return frames
    allowed = set(parse_frames(args.within))
    kept = [f for f in frames if f in allowed]
    if not kept:
        raise FarmplugError(f"no frame of {args.frames} is in --within {args.within}")
    return kept


def _frames_for(args: argparse.Namespace, *patterns: str) -> list[int]:
    from farmplug.frames import parse_frames
    from farmplug.render.base import has_frame_token

    if args.frames:
        return parse_frames(args.frames)
    if any(has_frame_token(p) for p in patterns):
        raise FarmplugError("--frames is required when --input/--output contain a frame token (#### or %04d)")
    return [0]


def stage_config(args: argparse.Namespace, d: StageDescriptor):
    """The stage's config: the plan's (``--plan``) or the defaults, with the options given on top.

    Raises:
        FarmplugError: the plan has no such stage; ConfigError for an option the config rejects.
    """
    from farmplug.models import load_plan
    from farmplug.schema import validate_data
    from farmplug.stages.registry import descriptor

    config = d.config()
    if args.plan is not None:
        plan, _shot, _ = load_plan(args.plan)
        config = plan.stage(d.kind)
        if config is None:
            raise FarmplugError(f"the plan has no {d.kind} stage", path=args.plan)
    given = {key[4:]: value for key, value in vars(args).items() if key.startswith("cfg_") and value is not None}
    backend = given.pop("backend", config.backend)
    model = descriptor(d.kind, backend).config
    base = config.model_dump()
    if backend != config.backend:
        # Another backend than the plan's: the settings both have carry over, the others are its defaults.
        base = {name: value for name, value in base.items() if name in model.model_fields and name != "backend"}
        base["backend"] = backend
    foreign = sorted(name for name in given if name not in model.model_fields)
    if foreign:
        option = "--" + foreign[0].replace("_", "-")
        raise FarmplugError(f"{option} is not a setting of {d.kind}:{backend}; choose its backend with --backend")
    return validate_data(model, {**base, **given}, source="command line")


# --- tasks ------------------------------------------------------------------------------------


def run_render(args: argparse.Namespace) -> int:
    from farmplug.frames import parse_frames
    from farmplug.progress import progress_bar
    from farmplug.render import BlenderRenderer, RenderRequest

    frames = _within(args, parse_frames(args.frames))
    tid, timing = _task_names(args, frames, Path(args.output).parent)
    passes = frozenset(p.strip() for p in args.passes.split(",") if p.strip())
    request = RenderRequest(
        scene=args.scene, frames=tuple(frames), output_pattern=args.output, samples=args.samples,
        resolution_percentage=args.resolution_percentage, passes=passes, threads=args.threads,
        exr_layout=args.layout, task=tid, role=args.role,
    )
    with progress_bar(len(frames), f"render {tid}") as bar:
        record = BlenderRenderer().render(request, progress=lambda _f: bar.update(1))
    _write_timing(args, record, timing)
    return 0


def run_frame_stage(args: argparse.Namespace, d: StageDescriptor) -> int:
    from farmplug.progress import progress_bar
    from farmplug.runner import frame_jobs, run_stage

    # A window stage's neighbours are read from the same input pattern (the runner finds them).
    config = stage_config(args, d)
    frames = _within(args, _frames_for(args, args.input, args.output))
    tid, timing = _task_names(args, frames, Path(args.output).parent)
    jobs = frame_jobs(args.input, args.output, frames)
    with progress_bar(len(jobs), f"{d.kind} {tid}") as bar:
        record = run_stage(config, jobs, task=tid, role=args.role, plan=str(args.plan or ""), key=args.key,
                           progress=lambda _f: bar.update(1))
    _write_timing(args, record, timing)
    return 0


def run_keyframe_stage(args: argparse.Namespace, d: StageDescriptor) -> int:
    from farmplug.frames import keyframe_span, parse_frames, targets_between
    from farmplug.graph import confidence_path
    from farmplug.progress import progress_bar
    from farmplug.schema import save_model
    from farmplug.stages.base import KeyframeJob
    from farmplug.stages.registry import create_stage

    config = stage_config(args, d)
    frames = parse_frames(args.frames)
    if args.keys:
        keys, targets = targets_between(frames, parse_frames(args.keys))
    elif args.step:
        keys, targets = keyframe_span(frames, args.step)
    else:
        raise FarmplugError("give --step N (keyframes every N frames of --frames) or --keys with the keyframes")
    from farmplug.render.base import has_frame_token

    for flag, pattern in (("--output", args.output), ("--rejected", getattr(args, "rejected", None))):
        if pattern and len(targets) > 1 and not has_frame_token(pattern):
            raise FarmplugError(f"{flag} {pattern} has no frame token (#### or %04d), but {len(targets)} frames "
                                "would be written to it")
    tid, timing = _task_names(args, targets, Path(args.output).parent)
    record_file = None
    if d.withholds:
        record_file = args.confidence or (Path(confidence_path(args.confidence_dir, targets)) if args.confidence_dir else None)
    job = KeyframeJob(input_pattern=args.input, output_pattern=args.output, keys=keys, targets=targets,
                      aux_pattern=getattr(args, "aux", None), rejected_pattern=getattr(args, "rejected", None),
                      task=tid, plan=str(args.plan or ""), key=args.key)
    stage = create_stage(config)
    stage.open()
    try:
        with progress_bar(len(targets), f"{d.kind} {tid}") as bar:
            record, verdicts = stage.run(job, progress=lambda _f: bar.update(1))
    finally:
        stage.close()
    if record_file:
        save_model(verdicts, record_file)
    _write_timing(args, record, timing)
    if verdicts is not None and verdicts.failed:
        log.warning("frames %s did not pass the confidence check and must be rendered", verdicts.failed)
    return 0


def run_fallback(args: argparse.Namespace) -> int:
    from farmplug.fallback import fallback_timing_folder, render_fallback_frames
    from farmplug.frames import parse_frames

    frames = parse_frames(args.frames)
    tid, timing = _task_names(args, frames, fallback_timing_folder(args.plan, args.run_dir))
    record = render_fallback_frames(args.plan, args.confidence_dir, args.run_dir, frames=frames, task=tid, key=args.key)
    _write_timing(args, record, timing)
    return 0


def run_engine(args: argparse.Namespace) -> int:
    """Build the engine, write what was built as ``--output`` (atomically), then the timing record.

    A node without TensorRT (or where the build fails) records ``built: false`` and the reason, warns
    once and succeeds: the engine only saves the GPU tasks time, and they run without it.
    """
    import time

    from farmplug.frames import parse_frames
    from farmplug.nn.prebuild import build_engine
    from farmplug.schema import save_model
    from farmplug.timing import Stopwatch, TimingRecord

    frames = parse_frames(args.frames)
    tid, timing = _task_names(args, frames, args.output.parent)
    started = time.time()
    with Stopwatch() as work:
        record = build_engine(args.model, args.shape, cache=args.cache)
    save_model(record, args.output)
    if not record.built:
        log.warning("no TensorRT engine built for %s: %s; the GPU tasks run without one", args.model, record.reason)
    _write_timing(args, TimingRecord(
        task=tid, stage="engine", role=args.role, backend=record.backend or "none", started_at=started,
        finished_at=time.time(), overhead_wall_s=work.wall_s, overhead_cpu_s=work.cpu_s,
        settings={"built": record.built, "shape": record.shape, "model": record.model, "engine": record.engine,
                  "reason": record.reason},
    ), timing)
    return 0


def run_calibration(args: argparse.Namespace) -> int:
    from farmplug.calibrate import MEASURE_TASK, measure_calibration, measure_timing_path, summary_table

    timing = None if args.no_timing else Path(args.timing or measure_timing_path(args.setup))
    args.key = task_key(args.task or MEASURE_TASK, timing or Path(args.setup), _task_argv(args))
    result, record = measure_calibration(args.setup)
    _write_timing(args, record, timing)
    log.info("%s", summary_table(result))
    return 0


def dispatch(args: argparse.Namespace) -> int:
    """Run the task ``args`` describes (parsed by the parser :func:`add_run_parsers` built)."""
    from farmplug.stages.registry import descriptor

    fixed = {"render": run_render, "fallback": run_fallback, "calibration": run_calibration, "engine": run_engine}
    if args.what in fixed:
        return fixed[args.what](args)
    d = descriptor(args.what)
    return run_keyframe_stage(args, d) if d.mode == "keyframes" else run_frame_stage(args, d)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``run ...`` arguments (``argv`` starts with ``run``)."""
    parser = argparse.ArgumentParser(prog="farmplug")
    add_common(parser, top=True)
    verbs = parser.add_subparsers(dest="verb", required=True)
    add_run_parsers(verbs)
    args = parser.parse_args(list(argv))
    args.argv = list(argv)
    return args


def run_task(argv: Sequence[str]) -> int:
    """Run one ``farmplug run ...`` command line in this process, letting errors propagate.

    Raises:
        FarmplugError: the task failed (the message names the file or the problem).
    """
    argv = list(argv)
    if not argv or argv[0] != "run":
        raise FarmplugError(f"not a task command (farmplug run ...): {' '.join(argv[:3])}")
    return dispatch(parse(argv))

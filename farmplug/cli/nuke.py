"""``farmplug nuke ...``: the Nuke menu's folder, the stages it can offer, and farm jobs over existing frames.

``path`` prints the folder to add to ``NUKE_PATH`` (it holds ``menu.py`` and the ``farmplug_nuke``
package); ``stages`` lists the installed stages from their descriptors, so the menu offers only
what is there; ``submit`` turns a frame sequence a Read node shows into a farm job of one
per-frame stage (chunked like a plan's tasks), for any farm backend, ``--dry-run`` included.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from farmplug.cli.common import print_json
from farmplug.cli.submit import add_farm_options, check_run_folder_plan, print_submission, submit_graph
from farmplug.errors import FarmplugError
from farmplug.worker import add_common, help_formatter

MENU_PACKAGE = "farmplug_nuke"
#: The request a ``nuke submit`` job was made from, in its run folder (the job's "plan").
REQUEST_FILE = "nuke-request.json"


def menu_folder() -> Path:
    """The folder holding ``menu.py`` (inside the installed ``farmplug.integrations``).

    Raises:
        FarmplugError: it is missing (a broken installation).
    """
    import farmplug.integrations

    folder = Path(farmplug.integrations.__file__).resolve().parent / "nuke_menu"
    if not (folder / "menu.py").is_file() or not (folder / MENU_PACKAGE / "__init__.py").is_file():
        raise FarmplugError("the Nuke menu is missing from this installation (reinstall farmplug)", path=folder)
    return folder


def stage_list() -> list[dict]:
    """Every installed stage, as the menu needs it: kind, backend, summary, how it reads frames, passes."""
    from farmplug.stages.registry import descriptors

    return [{"kind": d.kind, "backend": d.backend, "summary": d.summary, "mode": d.mode, "scale": d.scale,
             "withholds": d.withholds, "passes": sorted(d.config().passes()),
             "required_features": sorted(d.required_features)} for d in descriptors()]


def build_job(args: argparse.Namespace, run_dir: Path, request_file: Path):
    """The job graph of one per-frame stage over ``--frames`` of ``--input``, in chunks of ``--chunk-size``.

    Raises:
        FarmplugError: unknown stage, a stage that does not work frame by frame, bad patterns or frames.
    """
    from farmplug.frames import chunk, parse_frames
    from farmplug.graph import JobGraph, Task, task_id, timing_path
    from farmplug.render.base import frame_path, has_frame_token
    from farmplug.stages.registry import descriptor

    described = descriptor(args.stage)
    if described.mode != "frame":
        raise FarmplugError(f"the {described.kind} stage reads {described.mode}, not single frames: a farm job from "
                            f"Nuke runs per-frame stages; run it here with farmplug run {described.kind}")
    for flag, pattern in (("--input", args.input), ("--output", args.output)):
        if not has_frame_token(pattern):
            raise FarmplugError(f"{flag} {pattern!r} needs a frame token such as #### or %04d")
    if Path(args.input).absolute() == Path(args.output).absolute():
        raise FarmplugError("--output is the same pattern as --input; give the results their own name")
    frames = parse_frames(args.frames)
    if not frames:
        raise FarmplugError(f"--frames {args.frames!r} names no frame")
    if args.chunk_size < 1:
        raise FarmplugError(f"--chunk-size must be 1 or more, got {args.chunk_size}")
    input_pattern, output_pattern = str(Path(args.input).absolute()), str(Path(args.output).absolute())
    timing_dir = str(Path(output_pattern).parent)
    tasks = []
    for frames_of_task in chunk(frames, args.chunk_size):
        tid = task_id(described.kind, frames_of_task)
        tasks.append(Task(
            id=tid, layer=described.kind, kind="stage", stage=described.kind, role="plan", frames=frames_of_task,
            argv=["run", described.kind, "--layer", described.kind, "--input", input_pattern,
                  "--output", output_pattern, "--frames", f"{frames_of_task[0]}-{frames_of_task[-1]}"
                  if frames_of_task == list(range(frames_of_task[0], frames_of_task[-1] + 1))
                  else ",".join(map(str, frames_of_task))],
            outputs=[str(frame_path(output_pattern, f)) for f in frames_of_task],
            timing=timing_path(timing_dir, tid),
            inputs=[str(frame_path(input_pattern, f)) for f in frames_of_task],
        ))
    name = args.job_name or f"{described.kind} {Path(input_pattern).name}"
    return JobGraph(name=name, run_dir=str(run_dir.absolute()), plan_file=str(request_file.absolute()),
                    shot_file=str(request_file.absolute()), tasks=tasks)


def add_parser(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("nuke", help="the Nuke menu: its folder, the stages it offers, farm jobs over Read nodes' frames",
                         formatter_class=help_formatter)
    add_common(p)
    actions = p.add_subparsers(dest="nuke_action", required=True, metavar="ACTION")
    path = actions.add_parser("path", help="print the folder to add to NUKE_PATH (menu.py and farmplug_nuke)",
                              formatter_class=help_formatter)
    add_common(path)
    stages = actions.add_parser("stages", help="the installed stages the menu can offer", formatter_class=help_formatter)
    add_common(stages)
    stages.add_argument("--json", action="store_true", help="print them as JSON (what the menu reads)")
    submit = actions.add_parser("submit", help="submit one per-frame stage over a frame sequence as a farm job",
                                formatter_class=help_formatter)
    add_common(submit)
    submit.add_argument("--stage", required=True, help="stage kind, e.g. denoise (farmplug nuke stages lists them)")
    submit.add_argument("--input", required=True, help="input pattern with #### or %%04d (the Read node's file)")
    submit.add_argument("--output", required=True, help="output pattern with #### or %%04d")
    submit.add_argument("--frames", required=True, help="frames to process, e.g. 1-24")
    submit.add_argument("--chunk-size", type=int, default=8, help="frames per farm task")
    submit.add_argument("--run-dir", type=Path, default=None,
                        help="folder for the job's graph and request (default: farmplug-STAGE-run beside the output)")
    submit.add_argument("--out", type=Path, default=None, help="with --dry-run: folder for the farm's native files")
    add_farm_options(submit)


def run(args: argparse.Namespace) -> int:
    if args.nuke_action == "path":
        print(menu_folder())
        return 0
    if args.nuke_action == "stages":
        stages = stage_list()
        if args.json:
            print_json({"stages": stages})
        else:
            for s in stages:
                print(f"{s['kind']}:{s['backend']}  ({s['mode']})  {s['summary']}")
        return 0
    run_dir = args.run_dir or Path(args.output).absolute().parent / f"farmplug-{args.stage}-run"
    request_file = Path(run_dir) / REQUEST_FILE
    check_run_folder_plan(run_dir, request_file)
    graph = build_job(args, Path(run_dir), request_file)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    request = {"schema_version": 1, "made_by": "farmplug nuke submit", "stage": args.stage,
               "input": graph.tasks[0].argv[graph.tasks[0].argv.index("--input") + 1],
               "output": graph.tasks[0].argv[graph.tasks[0].argv.index("--output") + 1],
               "frames": args.frames, "chunk_size": args.chunk_size}
    temp = request_file.with_name(f".{request_file.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(request, indent=2) + "\n", encoding="utf-8")
    os.replace(temp, request_file)
    done = submit_graph(args, graph, Path(run_dir), native_out=args.out)
    done["outputs"] = args.output
    if args.json:
        print_json(done)
        return 0
    print_submission(done)
    return 0

"""``farmplug submit PLAN --farm NAME``: compile the plan's job graph and submit it (or ``--dry-run``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from farmplug.cli.common import print_headline, print_json
from farmplug.errors import FarmplugError
from farmplug.worker import add_common, help_formatter


def add_farm_options(p: argparse.ArgumentParser) -> None:
    """The options every farm submission takes (``submit`` and ``calibrate``)."""
    p.add_argument("--farm", default="local", help="farm backend: local, openjd, deadline, opencue, flamenco, tractor")
    p.add_argument("--dry-run", action="store_true", help="write the farm's native files instead of submitting")
    p.add_argument("--farm-config", type=Path, default=None,
                   help="farm addresses (default: $FARMPLUG_FARMS or ~/.config/farmplug/farms.yaml)")
    p.add_argument("--job-name", default=None, help="job name on the farm (default: the shot name)")
    p.add_argument("--priority", type=int, default=50, help="job priority (0-100)")
    p.add_argument("--cpu-pool", default="cpu", help="pool/group/service for render tasks")
    p.add_argument("--gpu-pool", default="gpu", help="pool/group/service for GPU post tasks")
    p.add_argument("--worker-farmplug", default="farmplug", help="the farmplug executable on the workers")
    p.add_argument("--json", action="store_true", help="print what was done as JSON")


def add_parser(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("submit", help="compile a plan into a job graph and submit it to a farm", formatter_class=help_formatter)
    add_common(p)
    p.add_argument("plan", type=Path, help="plan YAML (write one with farmplug plan or farmplug calibrate)")
    p.add_argument("--run-dir", type=Path, default=None, help="run folder (default: run-<shot>-<plan> beside the plan); a run folder belongs to one plan")
    p.add_argument("--force", action="store_true", help="local: re-run tasks whose outputs already exist")
    p.add_argument("--no-report", action="store_true", help="local: do not build the report after the run")
    p.add_argument("--out", type=Path, default=None, help="with --dry-run: folder for the native files")
    add_farm_options(p)


def check_run_folder_plan(run_dir: Path, plan_file: Path) -> None:
    """A run folder belongs to one plan: another plan's run there is refused.

    Raises:
        FarmplugError: the folder holds the graph of another plan (the message says what to do).
    """
    from farmplug.errors import ConfigError
    from farmplug.graph import GRAPH_FILE, load_graph

    if not (Path(run_dir) / GRAPH_FILE).is_file():
        return
    try:
        owner = Path(load_graph(run_dir).plan_file)
    except ConfigError as err:
        raise FarmplugError(f"run folder {run_dir} holds a graph this version cannot read ({err}); "
                            "use another --run-dir") from None
    if owner.resolve() != Path(plan_file).resolve():
        raise FarmplugError(f"run folder {run_dir} belongs to plan {owner}; give {plan_file} its own --run-dir "
                            "(or remove that folder)")


def submit_graph(args: argparse.Namespace, graph, run_dir: Path, *, scene: Path | None = None,
                 native_out: Path | None = None) -> dict:
    """Compile ``graph`` for ``args.farm`` and submit it, or write its files with ``--dry-run``.

    Returns what happened, for ``--json`` and the summary lines.

    Raises:
        FarmplugError: unknown farm, no address, the scene is missing (local), or the farm refused.
    """
    from farmplug.graph import save_graph
    from farmplug.integrations.base import (
        CompileOptions,
        FarmConnection,
        connection_for,
        load_farm_config,
        write_submission,
    )
    from farmplug.integrations.registry import create_farm

    backend = create_farm(args.farm)
    options = CompileOptions(
        job_name=args.job_name, priority=args.priority, cpu_pool=args.cpu_pool, gpu_pool=args.gpu_pool,
        farmplug_command=(args.worker_farmplug,),
    )
    submission = backend.compile(graph, options)
    if args.dry_run:
        out = native_out or run_dir / f"{args.farm}-submission"
        written = write_submission(submission, out)
        save_graph(graph, out)
        # A new run folder gets the graph too (`farmplug report RUN_DIR` reads it once the farm is done);
        # a dry run never writes into an existing one, whose graph describes the run that is there.
        if not (Path(run_dir) / "graph.json").exists():
            save_graph(graph, run_dir)
        return {"farm": args.farm, "submitted": False, "out": str(out), "files": [str(p) for p in written],
                "summary": submission.summary, "run_dir": str(run_dir)}
    runs_here = getattr(backend, "runs_here", False)
    if runs_here:
        if scene is not None and not scene.is_file():
            raise FarmplugError("scene file not found", path=scene)
        connection = FarmConnection(kind=args.farm, options={"force": bool(getattr(args, "force", False))})
    else:
        connection = connection_for(args.farm, load_farm_config(args.farm_config), f"FARMPLUG_{args.farm.upper()}")
    save_graph(graph, run_dir)
    result = backend.submit(submission, connection)
    return {"farm": args.farm, "submitted": True, "finished": runs_here, "message": result.message,
            "job_ids": list(result.job_ids), "run_dir": str(run_dir)}


def print_submission(done: dict) -> None:
    if not done["submitted"]:
        print(f"wrote {len(done['files'])} {done['farm']} files to {done['out']} (nothing submitted)")
        if done["summary"]:
            print(done["summary"])
        return
    if done["finished"]:
        print(done["message"])
        return
    print(f"submitted to {done['farm']}: {done['message']}")
    for job in done["job_ids"]:
        print(f"  job {job}")
    print(f"when it has finished: farmplug report {done['run_dir']}")


def run(args: argparse.Namespace) -> int:
    from farmplug.graph import compile_plan, default_run_dir
    from farmplug.models import load_plan

    plan, shot, shot_file = load_plan(args.plan)
    run_dir = args.run_dir or default_run_dir(args.plan, shot)
    check_run_folder_plan(run_dir, args.plan)
    graph = compile_plan(plan, shot, plan_file=args.plan, shot_file=shot_file, run_dir=run_dir)
    done = submit_graph(args, graph, run_dir, scene=shot.scene_path(shot_file), native_out=args.out)
    report = None
    if done["submitted"] and done["finished"] and not args.no_report:
        from farmplug.report.build import build_report

        report, html = build_report(run_dir, run_dir)
        done["report"] = str(html)
        done["savings"] = report.savings.model_dump(mode="json")
        done["quality"] = report.quality.model_dump(mode="json", exclude={"frames"})
    if args.json:
        print_json(done)
        return 0
    print_submission(done)
    if report is not None:
        print_headline(report, Path(done["report"]))
    return 0

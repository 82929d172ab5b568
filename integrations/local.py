"""The local farm: runs a job graph on this machine, in dependency order.

A task whose outputs already exist and read back, and whose timing record is valid, is skipped,
so a run killed midway can be started again: finished tasks stay, the interrupted one runs again
from the start (its outputs are written atomically, so nothing half-written is ever taken as
done) and produces the same frames.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from farmplug.errors import ConfigError, FarmplugError
from farmplug.graph import JobGraph, Task
from farmplug.imageio import image_is_valid
from farmplug.timing import read_timing

log = logging.getLogger(__name__)

TaskRunner = Callable[[Task], None]


def task_is_done(task: Task) -> bool:
    """True when every output reads back and the timing record shows this very command finished."""
    if not Path(task.timing).is_file():
        return False
    try:
        record = read_timing(task.timing)
    except ConfigError:
        return False
    if record.command != task.argv:
        return False
    return all(_output_is_valid(Path(out)) for out in task.outputs)


def _output_is_valid(path: Path) -> bool:
    if path.suffix == ".json":
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return True
    return image_is_valid(path)


def remove_stale_temp_files(task: Task) -> list[Path]:
    """Delete temp files a killed run of ``task`` left beside its outputs (``.NAME.*tmp*``)."""
    removed = []
    for target in [*task.outputs, task.timing]:
        target = Path(target)
        if target.parent.is_dir():
            for stale in target.parent.glob(f".{target.name}.*tmp*"):
                stale.unlink(missing_ok=True)
                removed.append(stale)
    return removed


@dataclass
class LocalRunSummary:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    wall_s: float = 0.0


class LocalFarm:
    """Runs a job graph here, in dependency order. ``compile`` gives the graph file; ``run`` executes it."""

    name = "local"

    def __init__(self, runner: TaskRunner | None = None) -> None:
        self._runner = runner or run_task_in_process

    def compile(self, graph: JobGraph, options=None):
        """The local farm's native form is the job graph itself (``graph.json``)."""
        from farmplug.integrations.base import NativeSubmission

        graph.topological()
        return NativeSubmission(farm=self.name, files={"graph.json": graph.model_dump_json(indent=2) + "\n"},
                                summary=f"{len(graph.tasks)} tasks; run them with: farmplug submit PLAN --farm local")

    def run(self, graph: JobGraph, *, force: bool = False) -> LocalRunSummary:
        """Run every task not already done, dependencies first.

        Raises:
            FarmplugError: a task failed; the message names it (earlier tasks' outputs are kept).
        """
        summary = LocalRunSummary()
        started = time.perf_counter()
        order = graph.topological()
        for number, task in enumerate(order, 1):
            if not force and task_is_done(task):
                log.info("[%d/%d] %s: already done, skipped", number, len(order), task.id)
                summary.skipped.append(task.id)
                continue
            log.info("[%d/%d] %s: %s frames %s-%s", number, len(order), task.id, task.stage, task.frames[0], task.frames[-1])
            for stale in remove_stale_temp_files(task):
                log.info("removed %s left by an interrupted run", stale)
            try:
                self._runner(task)
            except FarmplugError as err:
                raise FarmplugError(f"task {task.id} failed: {err}") from err
            summary.ran.append(task.id)
        summary.wall_s = time.perf_counter() - started
        return summary


def run_task_in_process(task: Task) -> None:
    """Run a task's farmplug command line in this process (the same code path a farm worker runs)."""
    from farmplug.cli import run_argv

    run_argv(task.argv)

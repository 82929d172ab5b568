"""The local farm: runs a job graph on this machine, in dependency order, as a backend like the others.

``compile`` gives the graph file (``graph.json``); ``submit`` runs it here with the core's engine
(:func:`farmplug.execute.run_graph`): a task whose outputs already exist and read back, and whose
timing record shows the same command finished, is skipped, so a killed run carries on.
"""

from __future__ import annotations

from farmplug.execute import RunSummary, TaskRunner, remove_stale_temp_files, run_graph, task_is_done
from farmplug.graph import JobGraph
from farmplug.integrations.base import CompileOptions, FarmConnection, NativeSubmission, SubmitResult

__all__ = ["LocalFarm", "LocalRunSummary", "remove_stale_temp_files", "task_is_done"]

LocalRunSummary = RunSummary


class LocalFarm:
    """Runs a job graph here. ``compile`` gives the graph file; ``submit`` (or ``run``) executes it."""

    name = "local"
    #: submit() runs the job to the end before it returns, so its report can be built at once.
    runs_here = True

    def __init__(self, runner: TaskRunner | None = None) -> None:
        self._runner = runner

    def compile(self, graph: JobGraph, options: CompileOptions | None = None) -> NativeSubmission:
        """The local farm's native form is the job graph itself (``graph.json``)."""
        graph.topological()
        return NativeSubmission(farm=self.name, files={"graph.json": graph.model_dump_json(indent=2) + "\n"},
                                summary=f"{len(graph.tasks)} tasks; run them with: farmplug submit PLAN --farm local")

    def run(self, graph: JobGraph, *, force: bool = False) -> RunSummary:
        """Run every task not already done, dependencies first.

        Raises:
            FarmplugError: a task failed; the message names it (earlier tasks' outputs are kept).
        """
        return run_graph(graph, force=force, runner=self._runner)

    def submit(self, submission: NativeSubmission, connection: FarmConnection | None = None) -> SubmitResult:
        """Run the compiled graph here (``connection.options["force"]`` re-runs finished tasks).

        Raises:
            FarmplugError: a task failed.
        """
        graph = JobGraph.model_validate_json(submission.files["graph.json"])
        force = bool(connection.options.get("force", False)) if connection is not None else False
        summary = self.run(graph, force=force)
        return SubmitResult(
            farm=self.name, job_ids=(graph.name,),
            message=f"ran {len(summary.ran)} tasks, skipped {len(summary.skipped)} already done, in {summary.wall_s:.1f} s",
        )

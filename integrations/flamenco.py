"""Flamenco 3: a custom job type script plus the ``POST /api/v3/jobs`` payload that uses it.

The job type ``farmplug`` (``flamenco_jobtype/farmplug.js``, installed once in the Manager's
``scripts`` folder) turns the job's ``tasks`` setting into Flamenco tasks: one per graph task
(a chunk), one ``exec`` command with the exact argument list (no shell), and per-chunk
dependencies that follow the graph's ``depends_on`` exactly (an inbetween chunk waits for both
keyframe chunks around it and its guide chunk).

Routing: a task's Flamenco *task type* is the CPU or GPU pool name (``--cpu-pool`` /
``--gpu-pool``); each Worker lists the pools it serves in ``task_types`` of
``flamenco-worker.yaml``. Worker tags are per job in Flamenco, so they cannot split one job's CPU
and GPU tasks; ``worker_tag`` in the farm connection's options is passed through for farms that
reserve workers for farmplug jobs.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from importlib import resources

import requests

from farmplug.graph import JobGraph
from farmplug.integrations.base import (
    ApiRequest,
    CompileOptions,
    FarmConnection,
    NativeSubmission,
    SubmitError,
    SubmitResult,
    base_url,
    endpoint,
    http_request,
    redacted_line,
    shown_address,
)

log = logging.getLogger(__name__)

JOB_TYPE = "farmplug"
JOB_TYPE_FILE = f"flamenco/scripts/{JOB_TYPE}.js"
JOBS_PATH = "/api/v3/jobs"


@cache
def job_type_script() -> str:
    """The job compiler script shipped with farmplug (package data)."""
    return resources.files("farmplug.integrations").joinpath("flamenco_jobtype", f"{JOB_TYPE}.js").read_text("utf-8")


def task_specs(graph: JobGraph, options: CompileOptions) -> list[dict]:
    """One entry per graph task, dependencies first: id, task type, exe, args, depends_on."""
    exe, *prefix = options.farmplug_command
    return [
        {
            "id": task.id,
            "type": options.gpu_pool if task.gpus else options.cpu_pool,
            "exe": exe,
            "args": [*prefix, *task.argv],
            "depends_on": list(task.depends_on),
        }
        for task in graph.topological()
    ]


class FlamencoFarm:
    """Compiles the graph into a Flamenco ``farmplug`` job and posts it to the Manager."""

    name = "flamenco"

    def compile(self, graph: JobGraph, options: CompileOptions) -> NativeSubmission:
        """The job type script (to install once) and the SubmittedJob payload."""
        body = {
            "name": options.job_name or graph.name,
            "type": JOB_TYPE,
            "priority": options.priority,
            "submitter_platform": "linux",
            "settings": {"tasks": json.dumps(task_specs(graph, options), ensure_ascii=False)},
            "metadata": {"farmplug.run_dir": graph.run_dir, "farmplug.plan": graph.plan_file},
        }
        return NativeSubmission(
            farm=self.name,
            files={JOB_TYPE_FILE: job_type_script()},
            requests=(ApiRequest(method="POST", path=JOBS_PATH, body=body, name="submit-job"),),
            summary=f"Flamenco job {body['name']!r} of type {JOB_TYPE}: {len(graph.tasks)} tasks",
        )

    def submit(self, submission: NativeSubmission, connection: FarmConnection) -> SubmitResult:
        """POST the job to the Manager at ``connection.url``.

        Raises:
            SubmitError: no address, the Manager unreachable, or the job rejected (with its answer).
        """
        base = base_url(connection, "no Flamenco Manager address: set the farm's url, e.g. http://flamenco:8080")
        shown = shown_address(base)
        secrets = connection.secrets()
        job_ids = []

        def so_far() -> str:
            return f"submitted so far: {', '.join(job_ids) or 'nothing'}"

        for request in submission.requests:
            body = dict(request.body)
            if connection.options.get("worker_tag"):
                body["worker_tag"] = str(connection.options["worker_tag"])
            try:
                response = http_request(request.method, endpoint(base, request.path), json=body,
                                        timeout_s=connection.timeout_s)
            except requests.Timeout as err:
                raise SubmitError(f"Flamenco Manager {shown} gave {redacted_line(err, secrets)} "
                                  f"(the connection's timeout_s), so the job may or may not be queued; "
                                  f"{so_far()}") from None
            except requests.RequestException as err:
                raise SubmitError(f"Flamenco Manager {shown} unreachable: {redacted_line(err, secrets)}; "
                                  f"{so_far()}") from None
            if response.status_code >= 300:
                raise SubmitError(f"Flamenco Manager {shown} rejected the job (HTTP {response.status_code}): "
                                  f"{_answer(response, secrets)}; {so_far()}")
            try:
                job_ids.append(str(response.json()["id"]))
            except (ValueError, KeyError, TypeError):
                raise SubmitError(f"Flamenco Manager {shown} answered without a job id: "
                                  f"{_answer(response, secrets)}") from None
            log.info("submitted Flamenco job %s to %s", job_ids[-1], shown)
        return SubmitResult(farm=self.name, job_ids=tuple(job_ids),
                            message=f"Flamenco job {', '.join(job_ids)} queued at {shown}")


def _answer(response: requests.Response, secrets: tuple[str, ...]) -> str:
    """The Manager's error message (its JSON ``message``), else the body, on one line, without secrets."""
    try:
        message = response.json().get("message")
    except (ValueError, AttributeError):
        message = None
    return redacted_line(str(message or response.text or response.reason), secrets)

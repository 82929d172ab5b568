"""Thinkbox Deadline 10: one Deadline job per graph layer, run by the FarmPlug application plugin.

``compile`` writes, per layer, a job info and a plugin info file (``Key=Value`` lines, the
"Manual Job Submission" format taken by ``deadlinecommand``) and the same job as a Web Service
REST request (``POST /api/jobs`` with ``JobInfo``, ``PluginInfo``, ``AuxFiles``, ``IdOnly``).
Every task of a layer runs one command; the job's plugin info holds it as a JSON argument list
with ``{frames}`` where each Deadline task's frames go, and the FarmPlug plugin
(``deadline_plugin/FarmPlug``, installed into ``<repository>/custom/plugins``) fills them in.

Layers wait for each other frame by frame (``IsFrameDependent``, with the frame offsets of the
graph: inbetween frame ``f`` waits for denoised keyframes ``f-1 .. f+1``). A job's dependencies
name job ids that exist only once the upstream job is submitted, so the files carry
placeholders (``<JOB_ID:02-denoise>``) that ``submit`` replaces with the real ids.

Values written into ``Key=Value`` files never carry control characters (a newline in a shot
name would start a new key); the exact arguments travel JSON-escaped in ``ArgumentsJson``.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path, PurePath

from farmplug.errors import ConfigError
from farmplug.frames import format_frame_set
from farmplug.graph import FarmLayer, JobGraph, farm_layers
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

PLUGIN_NAME = "FarmPlug"
JOBS_PATH = "/api/jobs"
# Reference renders are the report's evidence, not the delivery: they yield to the plan's jobs.
REFERENCE_PRIORITY_DROP = 10
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_PLACEHOLDER = re.compile(r"<JOB_ID:([^<>]+)>")


def plugin_folder() -> Path:
    """The FarmPlug Deadline plugin folder shipped with farmplug (copy it to ``<repository>/custom/plugins``)."""
    return Path(__file__).resolve().parent / "deadline_plugin" / PLUGIN_NAME


def placeholder(key: str) -> str:
    """The text standing for the id of job ``key`` until that job is submitted."""
    return f"<JOB_ID:{key}>"


def inert(value: object) -> str:
    """``value`` as one safe ``Key=Value`` value: control characters (newlines above all) become ``_``."""
    return _CONTROL.sub("_", str(value))


@dataclass(frozen=True)
class _Job:
    key: str  # "02-denoise": folder name and placeholder key
    layer: FarmLayer
    frames: list[int]
    chunk_size: int
    label: str  # layer, or layer + task id when the layer is split into one job per task


def _jobs(layers: list[FarmLayer]) -> tuple[list[_Job], dict[str, str]]:
    """Deadline jobs in dependency order, and the job key holding each graph task.

    A layer whose chunks one chunk size cannot express (``chunk_size`` None) becomes one job
    per task, so every Deadline task still runs exactly the graph's frames.
    """
    jobs: list[_Job] = []
    job_of_task: dict[str, str] = {}
    for layer in layers:
        if layer.chunk_size is not None:
            key = f"{len(jobs) + 1:02d}-{layer.name}"
            jobs.append(_Job(key, layer, layer.frames, layer.chunk_size, layer.name))
            job_of_task.update({t.id: key for t in layer.tasks})
            continue
        for task in layer.tasks:
            key = f"{len(jobs) + 1:02d}-{task.id}"
            jobs.append(_Job(key, layer, list(task.frames), len(task.frames), task.id))
            job_of_task[task.id] = key
    return jobs, job_of_task


def _dependencies(job: _Job, jobs_by_key: dict[str, _Job], job_of_task: dict[str, str]) -> dict[str, str]:
    """The job info dependency keys of ``job``: frame by frame where both sides are whole layers.

    Deadline's frame offsets apply to all of a job's dependencies at once, so a job waiting on
    several layers takes the widest offsets (inbetween: guide 0..0 and denoise -1..+1 give -1..+1).
    """
    tasks = [t for t in job.layer.tasks if job_of_task[t.id] == job.key]
    upstream = sorted({job_of_task[d] for t in tasks for d in t.depends_on})
    if not upstream:
        return {}
    info = {"JobDependencies": ",".join(placeholder(k) for k in upstream), "ResumeOnCompleteDependencies": "true"}
    whole_layers = job.chunk_size == job.layer.chunk_size and all(
        jobs_by_key[k].layer.chunk_size is not None for k in upstream
    )
    if whole_layers and job.layer.depends_on:
        start = min(d.start for d in job.layer.depends_on)
        end = max(d.end for d in job.layer.depends_on)
        info.update({"IsFrameDependent": "true", "FrameDependencyOffsetStart": str(start),
                     "FrameDependencyOffsetEnd": str(end)})
    return info


def _output(layer: FarmLayer) -> tuple[str, str | None]:
    """Where a layer writes: the folder and the ``####`` file pattern (Monitor's "browse output")."""
    command = list(layer.command)
    if "--output" in command and command.index("--output") + 1 < len(command):
        pattern = PurePath(command[command.index("--output") + 1])
        return str(pattern.parent), pattern.name
    outputs = [o for t in layer.tasks for o in t.outputs]
    return (str(PurePath(outputs[0]).parent), None) if outputs else ("", None)


def _job_info(job: _Job, graph: JobGraph, options: CompileOptions, deps: dict[str, str]) -> dict[str, str]:
    layer = job.layer
    batch = options.job_name or graph.name
    gpu = layer.gpus > 0
    priority = options.priority - (REFERENCE_PRIORITY_DROP if layer.role == "reference" else 0)
    folder, pattern = _output(layer)
    info = {
        "Plugin": PLUGIN_NAME,
        "Name": f"{batch} {job.label}",
        "BatchName": batch,
        "Comment": f"farmplug {layer.stage} ({layer.role}), {'GPU' if gpu else 'CPU'}",
        "Frames": _frame_list(job.frames),
        "ChunkSize": str(job.chunk_size),
        "Priority": str(max(0, min(100, priority))),
        "Pool": options.gpu_pool if gpu else options.cpu_pool,
    }
    group = options.gpu_group if gpu else options.cpu_group
    if group:
        info["Group"] = group
    info.update({
        "OverrideTaskFailureDetection": "true",
        "FailureDetectionTaskErrors": str(options.max_retries + 1),
        "OutputDirectory0": folder,
    })
    if pattern:
        info["OutputFilename0"] = pattern
    info.update({
        # farmplug prints progress bars the plugin's stdout handlers read; unbuffered so they arrive.
        "EnvironmentKeyValue0": "FARMPLUG_PROGRESS=1",
        "EnvironmentKeyValue1": "PYTHONUNBUFFERED=1",
        "ExtraInfoKeyValue0": f"FarmplugLayer={layer.name}",
        "ExtraInfoKeyValue1": f"FarmplugRunDir={graph.run_dir}",
    })
    info.update(deps)
    return {key: inert(value) for key, value in info.items()}


def _frame_list(frames: list[int]) -> str:
    # Deadline reads "1-11x2,12" as farmplug does (x = step), and chunks the list in this order.
    return format_frame_set(frames)


def _plugin_info(layer: FarmLayer, options: CompileOptions) -> dict[str, str]:
    executable, *prefix = options.farmplug_command
    if _CONTROL.search(executable) or not executable.strip():
        raise ConfigError(f"the worker's farmplug executable {executable!r} cannot go in a Deadline plugin info file")
    # ensure_ascii: every control or non-ASCII character becomes a \\u escape, so the line stays one line.
    return {"Executable": executable, "ArgumentsJson": json.dumps([*prefix, *layer.command], ensure_ascii=True)}


def _key_value(info: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in info.items())


def _readme(jobs: list[_Job], batch: str) -> str:
    lines = [
        f"Deadline submission of {inert(batch)} made by farmplug: one job per layer, plugin FarmPlug.",
        "",
        "Install the plugin once: copy the FarmPlug folder shipped with farmplug into <repository>/custom/plugins/;",
        "this prints where it is: python -c 'from farmplug.integrations.deadline import plugin_folder; print(plugin_folder())'",
        "",
        "Submit with the Web Service (fills in the dependencies itself):",
        "  farmplug submit PLAN --farm deadline   (FARMPLUG_DEADLINE_URL, _USER, _PASSWORD)",
        "",
        "Or with deadlinecommand, one job at a time, in this order. Each line is the exact argument",
        "list (JSON) to run, not a shell string. deadlinecommand prints JobID=<id> for each job:",
        "replace every <JOB_ID:KEY> in the later job_info.job files with the id of job KEY first.",
        "",
    ]
    for job in jobs:
        folder = f"jobs/{job.key}"
        argv = ["deadlinecommand", f"{folder}/job_info.job", f"{folder}/plugin_info.job"]
        lines.append(f"{job.key}: {json.dumps(argv)}")
    return "\n".join(lines) + "\n"


class DeadlineFarm:
    """Thinkbox Deadline 10 through the FarmPlug application plugin and the Web Service REST API."""

    name = "deadline"

    def compile(self, graph: JobGraph, options: CompileOptions) -> NativeSubmission:
        """Job and plugin info files, the same jobs as REST requests, and a README (no I/O).

        Raises:
            ConfigError: the graph is inconsistent, or the worker's farmplug executable has control characters.
        """
        layers = farm_layers(graph)
        jobs, job_of_task = _jobs(layers)
        jobs_by_key = {j.key: j for j in jobs}
        files: dict[str, str] = {}
        requests: list[ApiRequest] = []
        for job in jobs:
            job_info = _job_info(job, graph, options, _dependencies(job, jobs_by_key, job_of_task))
            plugin_info = _plugin_info(job.layer, options)
            files[f"jobs/{job.key}/job_info.job"] = _key_value(job_info)
            files[f"jobs/{job.key}/plugin_info.job"] = _key_value(plugin_info)
            body = {"JobInfo": job_info, "PluginInfo": plugin_info, "AuxFiles": [], "IdOnly": True}
            requests.append(ApiRequest(method="POST", path=JOBS_PATH, body=body, name=job.key))
        batch = options.job_name or graph.name
        files["README.txt"] = _readme(jobs, batch)
        summary = (f"{len(jobs)} Deadline jobs (plugin {PLUGIN_NAME}) for {len(graph.tasks)} tasks; "
                   "see README.txt, or submit with: farmplug submit PLAN --farm deadline")
        return NativeSubmission(farm=self.name, files=files, requests=tuple(requests), summary=summary)

    def submit(self, submission: NativeSubmission, connection: FarmConnection) -> SubmitResult:
        """POST each job to the Web Service in order, filling in the ids of the jobs it depends on.

        Raises:
            SubmitError: the Web Service cannot be reached or rejects a job; the message names the
                jobs already submitted (with their ids) so nothing is half-submitted silently.
        """
        import requests

        base = base_url(connection, "no Deadline Web Service address: set FARMPLUG_DEADLINE_URL "
                                    "(for example http://host:8081)")
        shown = shown_address(base)
        secrets = connection.secrets()
        user, secret = connection.credentials()
        auth = (user or "", secret or "") if (user or secret) else None
        ids: dict[str, str] = {}

        def already() -> str:
            if not ids:
                return "nothing was submitted"
            done = ", ".join(f"{key}={job_id}" for key, job_id in ids.items())
            return f"already submitted (remove them or submit the rest by hand): {done}"

        def answer(response) -> str:
            return redacted_line(response.text, secrets) if response.text.strip() else str(response.reason)

        for request in submission.requests:
            body = _fill_ids(request.body, ids, request.name)
            try:
                response = http_request(request.method, endpoint(base, request.path), json=body, auth=auth,
                                        timeout_s=connection.timeout_s)
            except requests.Timeout as err:
                raise SubmitError(f"Deadline Web Service at {shown} gave {redacted_line(err, secrets)} "
                                  f"(the connection's timeout_s) for job {request.name}, which may or may not "
                                  f"have been created; {already()}") from None
            except requests.RequestException as err:
                raise SubmitError(f"cannot reach Deadline Web Service at {shown}: {redacted_line(err, secrets)}; "
                                  f"{already()}") from None
            if not response.ok:
                raise SubmitError(f"Deadline Web Service at {shown} rejected job {request.name} "
                                  f"(HTTP {response.status_code}: {answer(response)}); {already()}")
            job_id = _job_id(response)
            if not job_id:
                raise SubmitError(f"Deadline Web Service at {shown} returned no job id for {request.name} "
                                  f"({answer(response)}); {already()}")
            ids[request.name] = job_id
            log.info("submitted %s as Deadline job %s at %s", request.name, job_id, shown)
        return SubmitResult(farm=self.name, job_ids=tuple(ids.values()),
                            message=f"{len(ids)} jobs submitted to {shown}")


def _fill_ids(body, ids: dict[str, str], name: str):
    """The request body with every ``<JOB_ID:KEY>`` replaced by the id job KEY got.

    Raises:
        SubmitError: a placeholder names a job not submitted before this one.
    """
    if isinstance(body, str):
        return body

    def real(match: re.Match) -> str:
        key = match.group(1)
        if key not in ids:
            raise SubmitError(f"job {name} depends on {key}, which is not submitted before it")
        return ids[key]

    filled = dict(body)
    job_info = dict(filled.get("JobInfo", {}))
    if "JobDependencies" in job_info:
        job_info["JobDependencies"] = _PLACEHOLDER.sub(real, job_info["JobDependencies"])
    filled["JobInfo"] = job_info
    return filled


def _job_id(response) -> str | None:
    """The id in the Web Service's answer: ``{"_id": ...}`` (IdOnly), a job object, or bare text."""
    try:
        data = response.json()
    except ValueError:
        text = response.text.strip().strip('"')
        return text if re.fullmatch(r"[0-9A-Za-z_-]+", text or "") else None
    if isinstance(data, dict):
        value = data.get("_id") or data.get("JobID") or data.get("ID")
        return str(value) if value else None
    if isinstance(data, str):
        return data or None
    return None

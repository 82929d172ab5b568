"""Open Job Description / AWS Deadline Cloud: the job graph as a Deadline Cloud job bundle.

``compile`` writes a job bundle: ``template.yaml`` (an OpenJD ``jobtemplate-2023-09`` template),
``parameter_values.yaml`` (this shot's paths, the worker's farmplug command, and the Deadline Cloud
submission settings such as ``deadline:priority``) and ``asset_references.yaml`` (what job
attachments upload and download). ``submit`` hands the bundle to ``deadline bundle submit``.

How the graph becomes steps (see docs/farms/openjd.md):

- An OpenJD step dependency waits for the *whole* upstream step, so per-frame post stages
  (denoise, ...) run in the same step as the render they follow: each chunk's task runs the
  render command, then the stage commands, on the same frames. A chunk's post work starts as
  soon as its own render is done, never waiting for the other chunks.
- Inbetween needs the next chunk's keyframe, so it is its own step after the render step (and
  after the guide step, when guided); the fallback renders are a step after inbetween; the
  full-quality reference renders are a step with no dependency.
- A stage's engine build (a ``setup`` layer, one task over all the stage's frames, on a GPU) is
  a step of its own that the stage's step waits for, so the renders never wait for it.
- Each OpenJD task must be exactly one task of the job graph: the CLI derives the task id and the
  timing record's path from ``--layer`` and the frames, and the report looks for those. Frame
  chunks use the ``TASK_CHUNKING`` extension (a ``CHUNK[INT]`` task parameter whose
  ``defaultTaskCount`` is the plan's chunk size) when every chunk has exactly that many frames;
  otherwise (a short last chunk, which OpenJD would even out: 10 frames in chunks of 4 become
  4+3+3) the step gets a ``STRING`` task parameter listing the graph's chunks, one task each.

Nothing from the shot (names, paths) is ever written into the template itself: OpenJD has no
escape for ``{{`` in a format string, so paths travel as job parameters (``PATH``, with
``dataFlow`` for job attachments and path mapping) that the template references; a value is
substituted as one whole argument and never parsed again. Commands are argument lists; no shell
sees them (the render step's chain script only runs its arguments, it never evaluates them).
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from farmplug.errors import ConfigError
from farmplug.frames import format_frame_set
from farmplug.graph import FRAMES_TOKEN, FarmLayer, JobGraph, farm_layers
from farmplug.integrations.base import (
    CompileOptions,
    FarmConnection,
    NativeSubmission,
    SubmitError,
    SubmitResult,
    redacted_line,
    write_submission,
)

log = logging.getLogger(__name__)

SPECIFICATION_VERSION = "jobtemplate-2023-09"
TEMPLATE_FILE = "template.yaml"
PARAMETER_VALUES_FILE = "parameter_values.yaml"
ASSET_REFERENCES_FILE = "asset_references.yaml"
FRAMES_PARAM = "Frames"
FARMPLUG_PARAM = "Farmplug"
CHAIN_FILE = "Chain"

# Runs several commands in order, each given as its argument count, then its arguments; stops at
# the first that fails. Its text is fixed: every value reaches it as an argument and is only
# ever expanded as "$@", so nothing in a path is evaluated. (It must hold no "{{": the data of
# an embedded file is an OpenJD format string.)
CHAIN_SCRIPT = """\
set -euo pipefail
while (( $# > 0 )); do
  count=$1
  shift
  "${@:1:count}"
  shift "$count"
done
"""

# Flags whose value is a path: parameter name (None = the layer's name + the flag's), OpenJD
# objectType, and whether the command writes there (dataFlow OUT) or only reads (IN).
_PATH_FLAGS: dict[str, tuple[str | None, str, bool]] = {
    "--scene": ("SceneFile", "FILE", False),
    "--plan": ("PlanFile", "FILE", False),
    "--run-dir": ("RunDir", "DIRECTORY", True),
    "--confidence-dir": ("ConfidenceDir", "DIRECTORY", True),
    "--input": (None, "FILE", False),
    "--guide": (None, "FILE", False),
    "--aux": (None, "FILE", False),
    "--model": (None, "FILE", False),
    "--output": (None, "FILE", True),
    "--rejected": (None, "FILE", True),
}
# A literal argument may go into the template as it is only if it cannot be read as anything
# but itself: no braces (OpenJD format strings), no spaces, quotes or other shell-looking text.
_LITERAL = re.compile(r"^[A-Za-z0-9_.,:=+@%/-]*$")
_JOB_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9 ._+-]+")
MAX_JOB_NAME = 64
_JOB_ID = re.compile(r"\bjob-[0-9a-f]{32}\b")


@dataclass
class _ParamUse:
    name: str
    kind: str  # PATH or STRING
    object_type: str | None = None
    written: bool = False
    description: str = ""


@dataclass
class _Parameters:
    """Job parameters by value: one parameter per distinct value, named by its first use."""

    uses: dict[str, _ParamUse] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)

    def _unique(self, name: str) -> str:
        candidate, n = name, 2
        while candidate in self.names:
            candidate, n = f"{name}{n}", n + 1
        self.names.add(candidate)
        return candidate

    def add(self, value: str, name: str, kind: str, *, object_type: str | None = None, written: bool = False,
            description: str = "") -> str:
        use = self.uses.get(value)
        if use is None:
            use = _ParamUse(self._unique(name), kind, object_type, written, description)
            self.uses[value] = use
        use.written = use.written or written
        return "{{Param." + use.name + "}}"

    def definitions(self) -> list[dict]:
        defs = []
        for use in self.uses.values():
            d: dict = {"name": use.name, "type": use.kind}
            if use.kind == "PATH":
                d["objectType"] = use.object_type
                d["dataFlow"] = "OUT" if use.written else "IN"
            d["description"] = use.description
            defs.append(d)
        return defs

    def values(self) -> list[dict]:
        return [{"name": use.name, "value": value} for value, use in self.uses.items()]


@dataclass(frozen=True)
class _Step:
    layers: tuple[FarmLayer, ...]
    depends_on: tuple[str, ...]

    @property
    def name(self) -> str:
        return step_name(layer.name for layer in self.layers)

    @property
    def head(self) -> FarmLayer:
        return self.layers[0]


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name) if part)


def job_name(graph: JobGraph, options: CompileOptions) -> str:
    """The job's display name: ``options.job_name`` or the shot name, with anything but letters,
    digits, spaces and ``._+-`` replaced (the name only; paths stay exact)."""
    raw = options.job_name or graph.name
    cleaned = " ".join(_JOB_NAME_UNSAFE.sub("_", raw).split()).strip(" _")
    return cleaned[:MAX_JOB_NAME].rstrip() or "farmplug"


def range_expression(frames: Sequence[int]) -> str:
    """An OpenJD range expression for ``frames``: ``1-11:2,12``."""
    return format_frame_set(list(frames)).replace("x", ":")


def _is_contiguous(frames: Sequence[int]) -> bool:
    return list(frames) == list(range(frames[0], frames[-1] + 1))


#: OpenJD's limit on a step name.
MAX_STEP_NAME = 64


def step_name(layer_names) -> str:
    """The step's name: its layers' names joined; past OpenJD's 64 characters (calibration's
    candidate layers), cut and made unique by a hash of the whole name."""
    name = "-".join(layer_names)
    if len(name) <= MAX_STEP_NAME:
        return name
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return f"{name[:MAX_STEP_NAME - 9]}-{digest}"


def plan_steps(layers: Sequence[FarmLayer]) -> list[_Step]:
    """Group layers into OpenJD steps: a per-frame stage joins the step of the layer it follows
    frame for frame (same chunks), so a chunk's post work needs only that chunk's render."""
    groups: list[list[FarmLayer]] = []
    step_of: dict[str, int] = {}
    for layer in layers:
        host = None
        if layer.kind == "stage" and len(layer.depends_on) == 1 and layer.depends_on[0].same_frame:
            upstream = layer.depends_on[0].layer
            index = step_of.get(upstream)
            if index is not None:
                tail = groups[index][-1]
                if tail.name == upstream and tail.chunks == layer.chunks and tail.role == layer.role:
                    host = index
        if host is None:
            groups.append([layer])
            host = len(groups) - 1
        else:
            groups[host].append(layer)
        step_of[layer.name] = host
    steps = []
    for index, group in enumerate(groups):
        deps = sorted({step_of[d.layer] for layer in group for d in layer.depends_on} - {index})
        steps.append(_Step(tuple(group), tuple(step_name(x.name for x in groups[d]) for d in deps)))
    return steps


class OpenJDFarm:
    """Compiles a job graph into a Deadline Cloud job bundle; submits it with the ``deadline`` CLI."""

    name = "openjd"

    def compile(self, graph: JobGraph, options: CompileOptions) -> NativeSubmission:
        """The job bundle for ``graph`` (no I/O).

        Raises:
            ConfigError: the priority is outside 0-100, or the worker command is empty.
        """
        if not 0 <= options.priority <= 100:
            raise ConfigError(f"priority must be 0-100 for Deadline Cloud, got {options.priority}")
        if not options.farmplug_command:
            raise ConfigError("the worker's farmplug command is empty")
        params = _Parameters()
        worker = [params.add(options.farmplug_command[0], FARMPLUG_PARAM, "STRING",
                             description="the farmplug executable on the workers")]
        for index, arg in enumerate(options.farmplug_command[1:], 1):
            worker.append(arg if _LITERAL.match(arg) else params.add(
                arg, f"FarmplugArg{index}", "STRING", description="an argument of the worker's farmplug command"))

        steps = plan_steps(farm_layers(graph))
        chunked = False
        step_docs = []
        for step in steps:
            doc, uses_chunks = self._step(step, worker, params, options)
            chunked = chunked or uses_chunks
            step_docs.append(doc)

        template: dict = {"specificationVersion": SPECIFICATION_VERSION}
        if chunked:
            template["extensions"] = ["TASK_CHUNKING"]
        template["name"] = job_name(graph, options)
        template["description"] = (
            "farmplug: a reduced-quality render with AI post stages per chunk, then in-betweens, "
            "fallback renders and full-quality reference frames"
        )
        template["parameterDefinitions"] = params.definitions()
        template["steps"] = step_docs

        values = [
            {"name": "deadline:priority", "value": options.priority},
            {"name": "deadline:maxRetriesPerTask", "value": options.max_retries},
            *params.values(),
        ]
        inputs = sorted({graph.plan_file, graph.shot_file} | {
            value for value, use in params.uses.items() if use.kind == "PATH" and not use.written
        })
        # Outputs: the run folder, and the folders of absolute delivery paths outside it (a show's
        # own folders), so job attachments bring every delivered frame back.
        run_dir = Path(graph.run_dir)
        delivery = {
            str(Path(value).parent) for value, use in params.uses.items()
            if use.kind == "PATH" and use.written and run_dir not in Path(value).parents and Path(value) != run_dir
        }
        assets = {"assetReferences": {
            "inputs": {"filenames": inputs, "directories": []},
            "outputs": {"directories": [graph.run_dir, *sorted(delivery)]},
            "referencedPaths": [],
        }}
        files = {
            TEMPLATE_FILE: _dump(template, "Open Job Description job template"),
            PARAMETER_VALUES_FILE: _dump({"parameterValues": values}, "job parameter values and Deadline Cloud settings"),
            ASSET_REFERENCES_FILE: _dump(assets, "job attachments: files the job reads, folders it writes"),
        }
        summary = "\n".join(
            f"  step {s.name}: {len(s.head.chunks)} task{'' if len(s.head.chunks) == 1 else 's'}, "
            f"frames {s.head.frame_set}"
            + (f", after {', '.join(s.depends_on)}" if s.depends_on else "")
            + (", GPU" if any(layer.gpus for layer in s.layers) else "")
            for s in steps
        )
        return NativeSubmission(farm=self.name, files=files, summary=summary)

    def _step(self, step: _Step, worker: list[str], params: _Parameters,
              options: CompileOptions) -> tuple[dict, bool]:
        head = step.head
        commands = [worker + self._args(layer, params) for layer in step.layers]
        if len(commands) == 1:
            on_run = {"command": commands[0][0], "args": commands[0][1:]}
        else:
            chained: list[str] = ["{{Task.File." + CHAIN_FILE + "}}"]
            for command in commands:
                chained += [str(len(command)), *command]
            on_run = {"command": "bash", "args": chained}

        doc: dict = {"name": step.name}
        doc["description"] = (
            f"{' then '.join(layer.name for layer in step.layers)} on each chunk of frames"
            if len(step.layers) > 1 else f"{head.name} on each chunk of frames"
        )
        if step.depends_on:
            doc["dependencies"] = [{"dependsOn": name} for name in step.depends_on]
        gpus = max(layer.gpus for layer in step.layers)
        cores = max(layer.cores for layer in step.layers)
        amounts = []
        if cores:
            amounts.append({"name": "amount.worker.vcpu", "min": cores})
        if gpus:
            amounts.append({"name": "amount.worker.gpu", "min": gpus})
            amounts.append({"name": "amount.worker.gpu.memory", "min": options.gpu_memory_mb})
        attributes = []
        if len(commands) > 1:  # the chain script needs bash
            attributes.append({"name": "attr.worker.os.family", "anyOf": ["linux", "macos"]})
        if amounts or attributes:
            doc["hostRequirements"] = {
                **({"amounts": amounts} if amounts else {}), **({"attributes": attributes} if attributes else {})
            }

        size = head.chunk_size
        # OpenJD divides a chunked range evenly (10 frames in chunks of 4 become 4+3+3), and a
        # farm may divide it its own way; only chunks that are all exactly ``size`` frames come out
        # the same everywhere. Any other chunking is listed task by task.
        if size is not None and all(len(c) == size for c in head.chunks):
            frames = head.frames
            parameter = {
                "name": FRAMES_PARAM, "type": "CHUNK[INT]", "range": range_expression(frames),
                "chunks": {"defaultTaskCount": size,
                           "rangeConstraint": "CONTIGUOUS" if _is_contiguous(frames) else "NONCONTIGUOUS"},
            }
        else:
            parameter = {"name": FRAMES_PARAM, "type": "STRING", "range": [range_expression(c) for c in head.chunks]}
        doc["parameterSpace"] = {"taskParameterDefinitions": [parameter]}
        script: dict = {"actions": {"onRun": on_run}}
        if len(commands) > 1:
            script["embeddedFiles"] = [{"name": CHAIN_FILE, "type": "TEXT", "data": _Block(CHAIN_SCRIPT)}]
        doc["script"] = script
        return doc, parameter["type"] == "CHUNK[INT]"

    @staticmethod
    def _args(layer: FarmLayer, params: _Parameters) -> list[str]:
        """The layer's command with the chunk's frames and every path as template references."""
        out = []
        for index, arg in enumerate(layer.command):
            flag = layer.command[index - 1] if index else ""
            if arg == FRAMES_TOKEN:
                out.append("{{Task.Param." + FRAMES_PARAM + "}}")
            elif flag in _PATH_FLAGS:
                name, object_type, written = _PATH_FLAGS[flag]
                name = name or _camel(layer.name) + _camel(flag)
                out.append(params.add(arg, name, "PATH", object_type=object_type, written=written,
                                      description=f"{flag} of the {layer.name} command"))
            elif _LITERAL.match(arg):
                out.append(arg)
            else:
                label = _camel(flag) if flag.startswith("--") else f"Arg{index}"
                out.append(params.add(arg, _camel(layer.name) + label, "STRING",
                                      description=f"{flag or 'an argument'} of the {layer.name} command"))
        return out

    def submit(self, submission: NativeSubmission, connection: FarmConnection) -> SubmitResult:
        """Submit the bundle with ``deadline bundle submit`` to the farm and queue in ``connection.options``
        (``farm_id``, ``queue_id``; optional ``storage_profile_id``, ``profile``, ``deadline_command``).

        The ``deadline`` CLI finds its AWS credentials itself (profile, environment); nothing
        here reads or writes them.

        Raises:
            SubmitError: no farm/queue id, the ``deadline`` CLI is missing, or it failed (its message).
        """
        opts = connection.options
        farm_id, queue_id = opts.get("farm_id"), opts.get("queue_id")
        if not farm_id or not queue_id:
            raise SubmitError("openjd: set options farm_id and queue_id for the Deadline Cloud farm in the farm configuration")
        exe = shutil.which(str(opts.get("deadline_command", "deadline")))
        if exe is None:
            raise SubmitError("openjd: the deadline CLI is not installed (pip install deadline); nothing was submitted")
        timeout = float(opts.get("submit_timeout_s", max(connection.timeout_s, 600)))
        with tempfile.TemporaryDirectory(prefix="farmplug-openjd-") as tmp:
            bundle = Path(tmp) / "bundle"
            write_submission(submission, bundle)
            cmd = [exe, "bundle", "submit", str(bundle), "--farm-id", str(farm_id), "--queue-id", str(queue_id), "--yes"]
            if opts.get("storage_profile_id"):
                cmd += ["--storage-profile-id", str(opts["storage_profile_id"])]
            if opts.get("profile"):
                cmd += ["--profile", str(opts["profile"])]
            log.debug("running %s", cmd)
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
            except (OSError, subprocess.TimeoutExpired) as err:
                raise SubmitError(f"openjd: deadline bundle submit failed: {redacted_line(err)}") from None
        output = f"{proc.stdout}\n{proc.stderr}"
        if proc.returncode != 0:
            # The CLI's last line can quote a presigned URL (X-Amz-Credential, X-Amz-Security-Token): redacted.
            raise SubmitError(
                f"openjd: deadline bundle submit failed (exit {proc.returncode}): {_last_line(proc.stderr or proc.stdout)}"
            )
        jobs = tuple(dict.fromkeys(_JOB_ID.findall(output)))
        return SubmitResult(farm=self.name, job_ids=jobs,
                            message=f"job bundle submitted to queue {queue_id} of farm {farm_id}")


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return redacted_line(lines[-1]) if lines else "no output"


class _Block(str):
    """Text written as a YAML literal block (``|``), so a script reads as a script."""


class _Dumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    # A value with a newline or other control character goes on one line, escaped ("\n"),
    # rather than folded over several lines where a reader cannot tell what it holds.
    style = '"' if any(ord(c) < 32 or ord(c) == 127 for c in text) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(_Block, lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|"))


def _dump(doc: Mapping, what: str) -> str:
    body = yaml.dump(dict(doc), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=4096,
                     default_flow_style=False)
    return f"# farmplug: {what} (generated; do not edit)\n{body}"

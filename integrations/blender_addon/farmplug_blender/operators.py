"""The add-on's operators: set up passes, write the shot, calibrate, submit, open the report, cancel.

Every one runs the farmplug command line (an argument list); the long ones (calibrate, a local
submit) run in the background: a timer reads their progress and shows it in the panel, and
``farmplug.cancel_job`` stops them. Called from a script with ``wait=True`` they block instead,
so pipeline scripts can drive the same operators (``bpy.ops.farmplug.submit(farm='openjd',
dry_run=True, directory=...)``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from .farmplug_cli import BackgroundJob, CliError, find_executable, run_json
from .passes import enable_passes
from .properties import FARMS
from .shot_file import SceneFacts, calibration_summary, report_summary, write_shot

log = logging.getLogger("farmplug_blender")

#: Seconds between the background timer's looks at a running job.
POLL_INTERVAL_S = 0.5
#: The calibration's folder beside the shot (its plan.yaml, calibration.json and evidence).
CALIBRATION_FOLDER = "calibrated"


@dataclass
class _Running:
    """The one background job of this Blender session, and the scene it reports to."""

    job: BackgroundJob | None = None
    scene: str = ""


RUNNING = _Running()


# -- helpers ------------------------------------------------------------------------------------

def settings(context):
    return context.scene.farmplug


def executable(context) -> list[str]:
    """The farmplug command, from the add-on's preference, ``$FARMPLUG_EXECUTABLE`` or PATH.

    Raises:
        CliError: none of them names an executable.
    """
    addon = context.preferences.addons.get(__package__)
    preference = getattr(getattr(addon, "preferences", None), "executable", "") if addon else ""
    return find_executable(bpy.path.abspath(preference) if preference else "")


def saved_blend() -> Path:
    """The saved .blend farmplug will render.

    Raises:
        CliError: the file has never been saved.
    """
    if not bpy.data.filepath:
        raise CliError("save the .blend first: farmplug renders the saved file, and this one has never been saved")
    return Path(bpy.data.filepath).resolve()


def absolute(path: str) -> Path:
    return Path(bpy.path.abspath(path)).expanduser().absolute()


def scene_facts(scene, blend: Path, name: str = "") -> SceneFacts:
    render = scene.render
    scale = render.resolution_percentage / 100
    return SceneFacts(
        name=name or blend.stem, blend=blend, frame_start=scene.frame_start, frame_end=scene.frame_end,
        width=max(1, round(render.resolution_x * scale)), height=max(1, round(render.resolution_y * scale)),
        samples=scene.cycles.samples, output=render.filepath,
    )


def plan_argv(s, shot: Path, plan: Path) -> list[str]:
    argv = ["plan", str(shot), "--out", str(plan), "--samples-factor", s.samples_factor.strip(),
            "--frame-step", str(s.frame_step), "--flip-target", f"{s.flip_target:g}", "--check-count", str(s.check_count)]
    if s.guided:
        argv.append("--guided")
    return argv


def calibrate_argv(s, shot: Path, out: Path) -> list[str]:
    return ["calibrate", str(shot), "--out", str(out), "--factors", s.calibrate_factors.strip(),
            "--frame-steps", s.calibrate_frame_steps.strip(), "--check-count", str(s.check_count),
            "--flip-target", f"{s.flip_target:g}", "--json"]


def submit_argv(s, plan: Path, farm: str, dry_run: bool, directory: Path | None) -> list[str]:
    """``farmplug submit`` for the plan: the farm's options from the panel, the folder as ``--out`` or ``--run-dir``."""
    argv = ["submit", str(plan), "--farm", farm, "--priority", str(s.priority), "--cpu-pool", s.cpu_pool,
            "--gpu-pool", s.gpu_pool, "--worker-farmplug", s.worker_farmplug or "farmplug"]
    if s.job_name:
        argv += ["--job-name", s.job_name]
    if s.farm_config:
        argv += ["--farm-config", str(absolute(s.farm_config))]
    if dry_run:
        argv.append("--dry-run")
        if directory is not None:
            argv += ["--out", str(directory)]
    elif directory is not None:
        argv += ["--run-dir", str(directory)]
    return argv


def needed_passes(context) -> tuple[list[str], list[str]]:
    """The passes the plan (or every calibration candidate) needs, and its stages, from farmplug.

    Raises:
        CliError: farmplug is missing or refuses the options.
    """
    s = settings(context)
    if s.plan_mode == "CALIBRATE":
        try:
            steps = sorted({int(x) for x in s.calibrate_frame_steps.split(",") if x.strip()}) or [1]
        except ValueError:
            raise CliError(f"frame steps to try {s.calibrate_frame_steps!r} are not numbers such as 1,2") from None
    else:
        steps = [s.frame_step]
    passes, stages = set(), []
    for step in steps:
        argv = ["blender", "passes", "--frame-step", str(step)] + (["--guided"] if s.guided else [])
        needs = run_json(executable(context), argv)
        passes |= set(needs["passes"])
        for stage in needs["stages"]:
            line = f"{stage['kind']}:{stage['backend']} ({', '.join(stage['passes']) or 'no passes'})"
            if line not in stages:
                stages.append(line)
    return sorted(passes), stages


def write_shot_files(context, filepath: str = "") -> tuple[Path, Path | None, list[str]]:
    """Write the scene's shot file and, with a fixed samples factor, its plan beside it (``farmplug plan``).

    Returns the shot, the plan (None when calibrating: the calibration writes it), and warnings.

    Raises:
        CliError: the .blend is unsaved, or farmplug refuses the shot or the plan (its one-line error).
        OSError: the shot's folder cannot be written.
    """
    s = settings(context)
    blend = saved_blend()
    warnings = []
    if bpy.data.is_dirty:
        warnings.append("the .blend has unsaved changes: farmplug renders the file as saved")
    if context.scene.render.engine != "CYCLES":
        warnings.append(f"the scene renders with {context.scene.render.engine}; farmplug renders it with Cycles")
    shot = absolute(filepath or s.shot_path or "//farmplug/shot.yaml")
    if shot.suffix.lower() not in (".yaml", ".yml"):
        shot = shot / "shot.yaml" if not shot.suffix else shot.with_suffix(".yaml")
    write_shot(scene_facts(context.scene, blend, s.shot_name.strip()), shot, s.output.strip() or None)
    if filepath:
        s.shot_path = str(shot)
    if s.plan_mode == "CALIBRATE":
        return shot, None, warnings
    plan = shot.with_name("plan.yaml")
    run_json(executable(context), plan_argv(s, shot, plan))
    return shot, plan, warnings


def calibrated_plan(shot: Path) -> Path:
    return shot.parent / CALIBRATION_FOLDER / "plan.yaml"


def _redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type == "PROPERTIES":
                area.tag_redraw()


def _scene_settings(name: str):
    scene = bpy.data.scenes.get(name)
    return scene.farmplug if scene is not None else None


def poll_running_job() -> float | None:
    """The timer: show the running job's progress; when it ends, apply its result. None stops the timer."""
    job = RUNNING.job
    if job is None:
        return None
    finished = job.poll()
    s = _scene_settings(RUNNING.scene)
    if s is not None and not finished:
        s.job_progress = job.progress
        s.job_label = job.label
    _redraw()
    return None if finished else POLL_INTERVAL_S


def start_job(context, name: str, argv: list[str], on_result, *, wait: bool, bar: str | None = None) -> BackgroundJob:
    """Start ``farmplug ARGV`` in the background (or, with ``wait``, run it to the end), reporting to this scene.

    Raises:
        CliError: another job is running, or farmplug cannot start.
    """
    if RUNNING.job is not None and RUNNING.job.running:
        raise CliError(f"a {RUNNING.job.name} job is already running: cancel it or wait for it")
    scene_name = context.scene.name

    def finished(job: BackgroundJob) -> None:
        s = _scene_settings(scene_name)
        RUNNING.job = None
        if s is None:
            return
        s.job, s.job_label = "", ""
        error = job.error()
        if error:
            s.job_progress = 0.0
            s.last_message = f"{name} failed: {error}"
            log.error("farmplug_blender: %s failed: %s", name, error)
            return
        s.job_progress = 1.0
        try:
            on_result(s, job.result())
        except (CliError, KeyError, TypeError) as err:
            s.last_message = f"{name}: {err}"

    job = BackgroundJob(name, executable(context), argv, bar=bar, on_done=finished)
    job.start()
    RUNNING.job, RUNNING.scene = job, scene_name
    s = settings(context)
    s.job, s.job_progress, s.job_label = name, 0.0, ""
    if wait:
        job.wait()
    elif not bpy.app.timers.is_registered(poll_running_job):
        bpy.app.timers.register(poll_running_job, first_interval=POLL_INTERVAL_S)
    return job


def stop_running_job() -> None:
    """Cancel the background job, if any (the add-on is being disabled, or the artist pressed Cancel)."""
    job = RUNNING.job
    if job is not None:
        job.cancel()
        job.poll()
    RUNNING.job = None
    if bpy.app.timers.is_registered(poll_running_job):
        bpy.app.timers.unregister(poll_running_job)


def _fail(operator, err: Exception) -> set[str]:
    message = str(err) if isinstance(err, CliError) else f"{getattr(err, 'filename', '') or ''}: {err.strerror or err}"
    operator.report({"ERROR"}, message.strip(": "))
    return {"CANCELLED"}


# -- operators ----------------------------------------------------------------------------------

class FARMPLUG_OT_setup_passes(bpy.types.Operator):
    """Enable on every view layer exactly the render passes the plan's stages need"""

    bl_idname = "farmplug.setup_passes"
    bl_label = "Set up passes"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        try:
            passes, stages = needed_passes(context)
        except CliError as err:
            return _fail(self, err)
        changes = enable_passes(context.scene, passes)
        settings(context).stages = "; ".join(stages)
        for warning in changes.warnings:
            self.report({"WARNING"}, warning)
        self.report({"INFO"}, changes.message())
        return {"FINISHED"}


class FARMPLUG_OT_write_shot(bpy.types.Operator):
    """Write shot.yaml from the scene (frames, resolution, samples, output, the saved .blend) and a plan beside it"""

    bl_idname = "farmplug.write_shot"
    bl_label = "Write shot"

    filepath: StringProperty(name="Shot file", subtype="FILE_PATH", default="")
    filter_glob: StringProperty(default="*.yaml;*.yml", options={"HIDDEN"})

    def invoke(self, context, event):
        if not self.filepath:
            self.filepath = bpy.path.abspath(settings(context).shot_path or "//farmplug/shot.yaml")
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        try:
            shot, plan, warnings = write_shot_files(context, self.filepath)
        except (CliError, OSError) as err:
            return _fail(self, err)
        for warning in warnings:
            self.report({"WARNING"}, warning)
        s = settings(context)
        s.last_message = f"wrote {shot}" + (f" and {plan}" if plan else "; calibrate to write its plan")
        self.report({"INFO"}, s.last_message)
        return {"FINISHED"}


class FARMPLUG_OT_calibrate(bpy.types.Operator):
    """Measure candidate plans on check frames in the background; the cheapest that meets the target becomes the plan"""

    bl_idname = "farmplug.calibrate"
    bl_label = "Calibrate"

    wait: BoolProperty(name="Wait", default=False, options={"HIDDEN", "SKIP_SAVE"},
                       description="Block until calibration ends (scripts)")

    def execute(self, context):
        s = settings(context)
        try:
            shot, _, warnings = write_shot_files(context)
            out = shot.parent / CALIBRATION_FOLDER

            def on_result(s, result) -> None:
                s.last_calibration = str(out / "calibration.json")
                s.last_message = calibration_summary(out / "calibration.json") or str(result.get("reason", ""))

            job = start_job(context, "calibrate", calibrate_argv(s, shot, out), on_result, wait=self.wait,
                            bar="calibrate")
        except (CliError, OSError) as err:
            return _fail(self, err)
        for warning in warnings:
            self.report({"WARNING"}, warning)
        if self.wait:
            error = job.error()
            if error:
                self.report({"ERROR"}, f"calibrate failed: {error}")
                return {"CANCELLED"}
            self.report({"INFO"}, s.last_message)
        else:
            self.report({"INFO"}, f"calibrating in the background: {out}")
        return {"FINISHED"}


class FARMPLUG_OT_submit(bpy.types.Operator):
    """Write the farm's files (dry run) or submit the plan; the local farm runs it here in the background"""

    bl_idname = "farmplug.submit"
    bl_label = "Submit"

    farm: EnumProperty(name="Farm", items=FARMS, default="local")
    dry_run: BoolProperty(name="Dry run", default=False, description="Write the farm's files instead of submitting")
    directory: StringProperty(name="Folder", subtype="DIR_PATH", default="",
                              description="Dry run: the farm's files; else the run folder (empty: the defaults)")
    wait: BoolProperty(name="Wait", default=False, options={"HIDDEN", "SKIP_SAVE"},
                       description="Block until a local run ends (scripts)")

    def execute(self, context):
        s = settings(context)
        # Unset (a script calling with no arguments): the panel's settings.
        farm = self.farm if self.properties.is_property_set("farm") else s.farm
        dry_run = self.dry_run if self.properties.is_property_set("dry_run") else s.dry_run
        directory = self.directory if self.properties.is_property_set("directory") else s.directory
        folder = absolute(directory) if directory.strip() else None
        try:
            shot, plan, warnings = write_shot_files(context)
            if plan is None:
                plan = calibrated_plan(shot)
                if not plan.is_file():
                    raise CliError(f"no calibrated plan at {plan}: calibrate first (or choose a samples factor)")
            argv = submit_argv(s, plan, farm, dry_run, folder)
            for warning in warnings:
                self.report({"WARNING"}, warning)
            if farm == "local" and not dry_run:
                job = start_job(context, "submit", argv + ["--json"], _apply_submission, wait=self.wait)
                if not self.wait:
                    self.report({"INFO"}, f"running {plan.name} on the local farm in the background")
                    return {"FINISHED"}
                error = job.error()
                if error:
                    raise CliError(f"submit failed: {error}")
            else:
                _apply_submission(s, run_json(executable(context), argv))
        except (CliError, OSError) as err:
            return _fail(self, err)
        self.report({"INFO"}, s.last_message)
        return {"FINISHED"}


def _apply_submission(s, done: dict) -> None:
    """Show what ``farmplug submit --json`` did: the farm's files, or the run, its jobs and its report."""
    if not done.get("submitted"):
        s.last_path = done["out"]
        s.last_message = f"wrote {len(done.get('files', []))} {done['farm']} files to {done['out']} (nothing submitted)"
        return
    s.last_path = done["run_dir"]
    if done.get("report"):
        s.last_report = done["report"]
        s.last_message = report_summary(Path(done["report"]).with_suffix(".json")) or done.get("message", "")
        return
    jobs = ", ".join(done.get("job_ids", []))
    s.last_message = f"submitted to {done['farm']}: {done.get('message', '')}" + (f" (jobs {jobs})" if jobs else "")


class FARMPLUG_OT_open_report(bpy.types.Operator):
    """Open the last run's savings report (report.html) in the web browser"""

    bl_idname = "farmplug.open_report"
    bl_label = "Open report"

    filepath: StringProperty(name="Report", subtype="FILE_PATH", default="",
                             description="report.html, or a run folder (empty: the last report)")

    def execute(self, context):
        given = self.filepath or settings(context).last_report
        if not given:
            self.report({"ERROR"}, "no report yet: submit to the local farm, or run farmplug report on a finished run")
            return {"CANCELLED"}
        path = absolute(given)
        if path.is_dir():
            path = path / "report.html"
        if not path.is_file():
            self.report({"ERROR"}, f"{path}: report not found")
            return {"CANCELLED"}
        settings(context).last_report = str(path)
        if not bpy.app.background:
            bpy.ops.wm.url_open(url=path.as_uri())
        self.report({"INFO"}, f"report: {path}")
        return {"FINISHED"}


class FARMPLUG_OT_cancel_job(bpy.types.Operator):
    """Stop the running calibration or local run; finished tasks are kept, run it again to carry on"""

    bl_idname = "farmplug.cancel_job"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return RUNNING.job is not None

    def execute(self, context):
        name = RUNNING.job.name if RUNNING.job else "farmplug"
        stop_running_job()
        self.report({"INFO"}, f"{name} cancelled")
        return {"FINISHED"}


CLASSES = (FARMPLUG_OT_setup_passes, FARMPLUG_OT_write_shot, FARMPLUG_OT_calibrate, FARMPLUG_OT_submit,
           FARMPLUG_OT_open_report, FARMPLUG_OT_cancel_job)

"""The Blender add-on, for real through bpy: registered from ``farmplug blender path``, every operator run headless.

The operators run the real farmplug CLI (``$FARMPLUG_EXECUTABLE`` = this venv's ``farmplug``): the
shot they write is read back by farmplug's own models and ``farmplug plan``; the OpenJD bundle
passes ``openjd check``; calibration and a local run render a tiny real shot. Modal timers do not
tick in bpy-as-a-module, so the background job is driven by calling the add-on's own timer
function, and its runner is tested on real farmplug processes (progress read from farmplug's
output, cancel by SIGTERM).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy", reason="bpy (Blender as a Python module) is not installed")

FARMPLUG = Path(sys.executable).with_name("farmplug")
BLENDER_EXT = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"


@pytest.fixture(scope="module", autouse=True)
def farmplug_executable():
    if not FARMPLUG.is_file():
        pytest.skip(f"no farmplug executable beside {sys.executable}")
    previous = os.environ.get("FARMPLUG_EXECUTABLE")
    os.environ["FARMPLUG_EXECUTABLE"] = str(FARMPLUG)
    yield FARMPLUG
    if previous is None:
        os.environ.pop("FARMPLUG_EXECUTABLE", None)
    else:
        os.environ["FARMPLUG_EXECUTABLE"] = previous


@pytest.fixture(scope="module")
def addon():
    """The add-on package imported the way a studio pipeline does: its parent from ``farmplug blender path`` on sys.path."""
    folder = Path(subprocess.run([str(FARMPLUG), "blender", "path"], capture_output=True, text=True,
                                 check=True).stdout.strip())
    assert (folder / "blender_manifest.toml").is_file() and folder.name == "farmplug_blender"
    sys.path.insert(0, str(folder.parent))
    try:
        import farmplug_blender
    finally:
        sys.path.remove(str(folder.parent))
    assert Path(farmplug_blender.__file__).resolve().parent == folder.resolve()
    return farmplug_blender


def _tiny_scene(samples: int = 16, frames: int = 2):
    bpy.ops.wm.read_factory_settings(use_empty=False)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 36, 50
    scene.frame_start, scene.frame_end = 1, frames
    return scene


@pytest.fixture
def registered(addon):
    scene = _tiny_scene()
    addon.register()
    try:
        yield addon, scene
    finally:
        if hasattr(bpy.types.Scene, "farmplug"):
            addon.unregister()


def _passes_state(scene) -> dict:
    return {layer.name: (layer.cycles.denoising_store_passes, layer.use_pass_z, layer.use_pass_vector,
                         layer.use_pass_object_index) for layer in scene.view_layers}


def _scene_state(scene) -> dict:
    """Everything of the scene an add-on could touch, but the passes."""
    r = scene.render
    system = scene.bl_system_properties_get() if hasattr(scene, "bl_system_properties_get") else None
    return {"keys": sorted(scene.keys()), "system": sorted(system.keys()) if system is not None else None, "engine": r.engine, "res": (r.resolution_x, r.resolution_y, r.resolution_percentage),
            "frames": (scene.frame_start, scene.frame_end), "samples": scene.cycles.samples, "filepath": r.filepath,
            "motion_blur": r.use_motion_blur, "denoising": scene.cycles.use_denoising,
            "layers": [layer.name for layer in scene.view_layers]}


def _save(tmp_path: Path, name: str = "shot.blend") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return path


# -- the package -----------------------------------------------------------------------------------

def test_the_addon_imports_and_registers_without_farmplug_or_heavy_packages(addon):
    """Blender's Python has no farmplug: importing and registering must not need it (nor pydantic, torch, yaml)."""
    parent = Path(addon.__file__).resolve().parents[1]
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('farmplug', 'pydantic', 'torch', 'yaml', 'pyoidn'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.path.insert(0, {str(parent)!r})\n"
        "import bpy, farmplug_blender\n"
        "farmplug_blender.register()\n"
        "assert hasattr(bpy.types, 'FARMPLUG_OT_submit') and hasattr(bpy.types, 'FARMPLUG_PT_render')\n"
        "farmplug_blender.unregister()\n"
        "print('heavy:', sorted(m for m in ('torch', 'pydantic', 'farmplug', 'yaml') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "heavy: []" in done.stdout


def test_register_and_unregister_mirror_each_other(addon):
    scene = _tiny_scene()
    names = ("FARMPLUG_OT_setup_passes", "FARMPLUG_OT_write_shot", "FARMPLUG_OT_calibrate", "FARMPLUG_OT_submit",
             "FARMPLUG_OT_open_report", "FARMPLUG_OT_cancel_job", "FARMPLUG_PT_render")
    assert not any(hasattr(bpy.types, n) for n in names) and not hasattr(bpy.types.Scene, "farmplug")
    before = _scene_state(scene)
    addon.register()
    assert all(hasattr(bpy.types, n) for n in names) and hasattr(bpy.types.Scene, "farmplug")
    scene.farmplug.frame_step = 2  # settings stored in the scene...
    assert scene.is_property_set("farmplug")
    addon.unregister()
    # ...and gone with the add-on, which leaves nothing behind.
    assert not any(hasattr(bpy.types, n) for n in names) and not hasattr(bpy.types.Scene, "farmplug")
    assert _scene_state(scene) == before
    system = scene.bl_system_properties_get() if hasattr(scene, "bl_system_properties_get") else scene
    assert "farmplug" not in system.keys()  # Blender 5 keeps add-on values apart from keys()
    addon.register()  # and it can come back
    assert scene.farmplug.frame_step == 1
    addon.unregister()


# -- set up passes -------------------------------------------------------------------------------

@pytest.mark.parametrize(("frame_step", "guided", "expected"), [
    pytest.param(1, False, {"ViewLayer": (True, False, False, False)}, id="denoise-only"),
    pytest.param(2, False, {"ViewLayer": (True, True, True, False)}, id="frame-step"),
])
def test_setup_passes_enables_exactly_what_the_plan_needs(registered, frame_step, guided, expected):
    addon, scene = registered
    assert _passes_state(scene) == {"ViewLayer": (False, False, False, False)}
    before = _scene_state(scene)
    scene.farmplug.frame_step, scene.farmplug.guided = frame_step, guided
    assert bpy.ops.farmplug.setup_passes() == {"FINISHED"}
    assert _passes_state(scene) == expected
    # The stages come from farmplug's descriptors, named in the panel.
    assert scene.farmplug.stages.startswith("denoise:oidn (albedo, normal)")
    assert ("inbetween" in scene.farmplug.stages) == (frame_step > 1)
    addon.unregister()
    # Disabling the add-on leaves the scene as it was, but for the passes the artist asked for.
    assert _scene_state(scene) == before
    assert _passes_state(scene) == expected


def test_setup_passes_covers_every_candidate_when_calibrating(registered):
    _, scene = registered
    scene.farmplug.plan_mode = "CALIBRATE"
    scene.farmplug.calibrate_frame_steps = "1,2"
    assert bpy.ops.farmplug.setup_passes() == {"FINISHED"}
    assert _passes_state(scene) == {"ViewLayer": (True, True, True, False)}


def test_the_passes_come_from_the_stage_descriptors():
    """What ``farmplug blender passes`` says is what a plan with those options needs (Plan.passes())."""
    import json

    from farmplug.api import make_plan
    from farmplug.models import FrameRangeModel, Resolution, Shot

    shot = Shot(name="s", scene="s.blend", frames=FrameRangeModel(start=1, end=9), resolution=Resolution(width=8, height=8),
                samples=64, output="f.####.exr")
    for step, guided in ((1, False), (2, False), (2, True)):
        argv = [str(FARMPLUG), "blender", "passes", "--frame-step", str(step), "--json"] + (["--guided"] if guided else [])
        needs = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
        plan = make_plan(shot, "shot.yaml", "plan.yaml", frame_step=step, guided=guided)
        assert needs["passes"] == sorted(plan.passes())
        assert [s["kind"] for s in needs["stages"]] == [s.kind for s in plan.stages]
        assert (needs["stages"][-1]["aux_render"] is not None) == guided


def test_enable_passes_warns_about_settings_that_break_them(registered):
    addon, scene = registered
    from farmplug_blender.passes import enable_passes

    scene.render.use_motion_blur = True
    scene.cycles.use_denoising = True
    scene.render.engine = "BLENDER_EEVEE"
    changes = enable_passes(scene, {"albedo", "normal", "depth", "motion", "cryptomatte"})
    text = " | ".join(changes.warnings)
    assert "motion blur is on" in text and "BLENDER_EEVEE" in text and "own denoiser" in text
    assert "no Blender setting known for pass cryptomatte" in text
    # Warned about, never changed: the scene is the artist's.
    assert scene.render.use_motion_blur and scene.cycles.use_denoising and scene.render.engine == "BLENDER_EEVEE"
    assert changes.message() == "enabled Denoising Data, Z, Vector on view layer 'ViewLayer'"
    assert enable_passes(scene, {"depth"}).message().startswith("every pass the plan needs was already on")


# -- write shot ------------------------------------------------------------------------------------

def test_write_shot_of_an_unsaved_file_is_a_clear_error(registered, tmp_path):
    with pytest.raises(RuntimeError, match=r"save the \.blend first"):
        bpy.ops.farmplug.write_shot(filepath=str(tmp_path / "shot.yaml"))
    assert not (tmp_path / "shot.yaml").exists()


def test_write_shot_writes_a_shot_and_plan_farmplug_reads(registered, tmp_path):
    from farmplug.models import load_plan, load_shot

    _, scene = registered
    # A hostile folder name: quotes, a colon, a '#' and spaces must survive the YAML.
    blend = _save(tmp_path / "it's a \"take\": #2", "my shot.blend")
    scene.farmplug.samples_factor = "1/16"
    scene.farmplug.check_count = 2
    out = tmp_path / "farm files" / "shot.yaml"
    assert bpy.ops.farmplug.write_shot(filepath=str(out)) == {"FINISHED"}
    shot = load_shot(out)
    assert shot.scene_path(out).resolve() == blend.resolve()
    assert (shot.name, shot.frames.start, shot.frames.end, shot.samples) == ("my shot", 1, 2, 16)
    assert (shot.resolution.width, shot.resolution.height) == (32, 18)
    assert shot.output == "frames/my shot.####.exr"
    plan, _, shot_file = load_plan(out.with_name("plan.yaml"))
    assert plan.samples_factor == pytest.approx(1 / 16) and shot_file.resolve() == out.resolve()
    assert scene.farmplug.shot_path == str(out)
    # ``farmplug plan`` accepts the shot as it is.
    done = subprocess.run([str(FARMPLUG), "plan", str(out), "--out", str(tmp_path / "again.yaml")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_write_shot_takes_the_scenes_output_path(registered, tmp_path):
    from farmplug.models import load_shot

    _, scene = registered
    scene.render.filepath = "//renders/beauty_"
    blend = _save(tmp_path)
    scene.farmplug.plan_mode = "CALIBRATE"  # the shot only: calibration writes the plan
    assert bpy.ops.farmplug.write_shot(filepath=str(tmp_path / "s" / "shot.yaml")) == {"FINISHED"}
    assert load_shot(tmp_path / "s" / "shot.yaml").output == str(blend.parent / "renders" / "beauty_####.exr")
    assert not (tmp_path / "s" / "plan.yaml").exists()


def test_farmplug_errors_reach_the_artist_in_one_line(registered, tmp_path):
    _, scene = registered
    _save(tmp_path)
    scene.farmplug.samples_factor = "a lot"
    with pytest.raises(RuntimeError) as caught:
        bpy.ops.farmplug.write_shot(filepath=str(tmp_path / "shot.yaml"))
    message = str(caught.value).strip()
    assert "not a number or fraction" in message and "\n" not in message


def test_a_missing_executable_says_where_it_is_looked_for(registered, tmp_path, monkeypatch):
    monkeypatch.setenv("FARMPLUG_EXECUTABLE", str(tmp_path / "nowhere" / "farmplug"))
    with pytest.raises(RuntimeError, match="farmplug executable not found: .*nowhere/farmplug .*FARMPLUG_EXECUTABLE"):
        bpy.ops.farmplug.setup_passes()


# -- submit ----------------------------------------------------------------------------------------

def test_submit_openjd_dry_run_writes_a_bundle_that_passes_openjd_check(registered, tmp_path):
    _, scene = registered
    _save(tmp_path)
    scene.farmplug.shot_path = str(tmp_path / "farmplug" / "shot.yaml")
    bundle = tmp_path / "bundle"
    assert bpy.ops.farmplug.submit(farm="openjd", dry_run=True, directory=str(bundle)) == {"FINISHED"}
    assert {p.name for p in bundle.iterdir()} >= {"template.yaml", "parameter_values.yaml", "asset_references.yaml"}
    assert scene.farmplug.last_path == str(bundle)
    assert scene.farmplug.last_message.startswith(f"wrote 3 openjd files to {bundle}")
    openjd = shutil.which("openjd", path=str(Path(sys.executable).parent))
    if openjd is None:
        pytest.skip("openjd-cli is not installed")
    done = subprocess.run([openjd, "check", str(bundle / "template.yaml")], capture_output=True, text=True)
    assert done.returncode == 0 and "passes validation" in done.stdout, done.stdout + done.stderr


def test_submit_without_a_calibration_says_calibrate_first(registered, tmp_path):
    _, scene = registered
    _save(tmp_path)
    scene.farmplug.plan_mode = "CALIBRATE"
    scene.farmplug.shot_path = str(tmp_path / "f" / "shot.yaml")
    with pytest.raises(RuntimeError, match="no calibrated plan at .*calibrated/plan.yaml: calibrate first"):
        bpy.ops.farmplug.submit(farm="openjd", dry_run=True, directory=str(tmp_path / "b"))


# -- the panel -------------------------------------------------------------------------------------

class _Layout:
    """Records a panel's draw calls and checks each names a real property or operator."""

    def __init__(self, calls: list):
        self.calls = calls
        self.use_property_split = self.use_property_decorate = self.enabled = False

    def _sub(self, *_, **__):
        return _Layout(self.calls)

    column = row = box = _sub

    def prop(self, data, name, **_):
        assert name in data.bl_rna.properties, f"no property {name} on {data}"
        self.calls.append(("prop", name))

    def label(self, text="", **_):
        self.calls.append(("label", text))

    def progress(self, factor=0.0, type="BAR", text=""):
        assert 0.0 <= factor <= 1.0
        self.calls.append(("progress", text))

    def operator(self, idname, **_):
        module, name = idname.split(".")
        properties = getattr(getattr(bpy.ops, module), name).get_rna_type().properties
        self.calls.append(("operator", idname))
        return _OperatorProperties(properties)


class _OperatorProperties:
    def __init__(self, properties):
        object.__setattr__(self, "_properties", properties)

    def __setattr__(self, name, value):
        assert name in self._properties, f"no operator property {name}"


def test_the_panel_draws_every_setting_and_button(registered, tmp_path):
    addon, scene = registered
    calls = []
    panel = type("P", (), {"layout": _Layout(calls)})()
    bpy.types.FARMPLUG_PT_render.draw(panel, bpy.context)
    operators = [c[1] for c in calls if c[0] == "operator"]
    assert operators == ["farmplug.setup_passes", "farmplug.write_shot", "farmplug.calibrate", "farmplug.submit",
                         "farmplug.open_report"]
    props = {c[1] for c in calls if c[0] == "prop"}
    assert {"plan_mode", "samples_factor", "frame_step", "guided", "flip_target", "farm", "dry_run", "directory"} <= props
    assert ("label", "Calibration: none yet") in calls and ("label", "Report: none yet") in calls
    # A remote farm shows its options; calibrating shows what it tries.
    calls.clear()
    scene.farmplug.farm, scene.farmplug.plan_mode = "deadline", "CALIBRATE"
    bpy.types.FARMPLUG_PT_render.draw(panel, bpy.context)
    props = {c[1] for c in calls if c[0] == "prop"}
    assert {"job_name", "priority", "cpu_pool", "gpu_pool", "calibrate_factors"} <= props
    assert "samples_factor" not in props


# -- the background runner, on real farmplug processes ---------------------------------------------

def _tiny_demo_shot(tmp_path: Path, frames: int):
    from farmplug.render.demo_scene import build_demo_scene

    blend = tmp_path / "demo" / "tiny.blend"
    build_demo_scene(blend, frames=frames, resolution=(32, 18), samples=16)
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    return blend, bpy.context.scene


def _drive(operators, timeout: float = 600) -> list[float]:
    """Tick the add-on's timer until the job ends (bpy-as-a-module has no event loop); returns the progress seen."""
    seen, deadline = [], time.monotonic() + timeout
    while operators.RUNNING.job is not None:
        assert time.monotonic() < deadline, "the background job did not finish"
        job = operators.RUNNING.job
        interval = operators.poll_running_job()
        seen.append(job.progress)
        if interval is None:
            break
        time.sleep(0.2)
    return seen


def test_background_job_progress_and_cancel_on_a_real_local_run(addon, tmp_path):
    from farmplug_blender import operators
    from farmplug_blender.farmplug_cli import BackgroundJob

    _, scene = _tiny_demo_shot(tmp_path, frames=12)
    addon.register()
    try:
        s = scene.farmplug
        s.shot_path, s.samples_factor = str(tmp_path / "f" / "shot.yaml"), "1/4"
        bpy.ops.wm.save_mainfile()
        # One task a frame, so the job has many steps to be cancelled in.
        assert bpy.ops.farmplug.submit(farm="local", dry_run=False, directory=str(tmp_path / "run")) == {"FINISHED"}
        job = operators.RUNNING.job
        assert isinstance(job, BackgroundJob) and job.running and s.job == "submit"
        deadline = time.monotonic() + 300
        while job.total == 0 and job.running:
            assert time.monotonic() < deadline
            operators.poll_running_job()
            time.sleep(0.2)
        assert job.total >= 3 and job.label.startswith("render-")  # read from the engine's "[n/N] task:" lines
        assert s.job_progress == pytest.approx(job.progress)
        calls = []
        bpy.types.FARMPLUG_PT_render.draw(type("P", (), {"layout": _Layout(calls)})(), bpy.context)
        bar = next(c[1] for c in calls if c[0] == "progress")
        assert bar.startswith("submit: ") and ("operator", "farmplug.cancel_job") in calls
        with pytest.raises(RuntimeError, match="already running"):
            bpy.ops.farmplug.calibrate()
        assert bpy.ops.farmplug.cancel_job() == {"FINISHED"}
        assert job.returncode == 143  # farmplug's SIGTERM exit: children stopped, temp files removed
        assert operators.RUNNING.job is None and s.job == ""
        assert "cancelled" in s.last_message
        with pytest.raises(ProcessLookupError):  # the whole process group is gone
            os.killpg(job._process.pid, 0)
        assert not bpy.app.timers.is_registered(operators.poll_running_job)
    finally:
        addon.unregister()


def test_a_failed_background_job_shows_farmplugs_one_line(addon, tmp_path):
    from farmplug_blender.farmplug_cli import BackgroundJob

    seen = []
    job = BackgroundJob("submit", [str(FARMPLUG)], ["submit", str(tmp_path / "missing.yaml"), "--json"],
                        on_done=seen.append).start()
    assert job.wait(timeout=120) == 1
    assert seen == [job] and job.poll() and seen == [job]  # on_done once
    assert job.error().endswith("missing.yaml: file not found") and "\n" not in job.error()


@pytest.mark.slow
def test_calibrate_then_submit_locally_and_open_the_report(addon, tmp_path):
    from farmplug_blender import operators

    from farmplug.calibrate import CalibrationResult
    from farmplug.schema import load_model

    # Enough frames for two check frames to be a small share of the full render (calibration's budget).
    blend, scene = _tiny_demo_shot(tmp_path, frames=40)
    addon.register()
    try:
        s = scene.farmplug
        s.shot_path = str(tmp_path / "f" / "shot.yaml")
        # 1024 spp at full quality: the reference costs enough for the saving to be real.
        scene.cycles.samples = 1024
        s.plan_mode, s.calibrate_factors, s.calibrate_frame_steps = "CALIBRATE", "1/64", "1"
        s.check_count, s.flip_target = 2, 0.9  # a lenient target: a 32x18 frame is about the machinery
        assert bpy.ops.farmplug.setup_passes() == {"FINISHED"}
        bpy.ops.wm.save_mainfile()
        assert bpy.ops.farmplug.calibrate() == {"FINISHED"}  # in the background
        assert s.job == "calibrate" and operators.RUNNING.job is not None
        seen = _drive(operators)
        assert seen == sorted(seen) and seen[-1] == 1.0 and len(set(seen)) > 2
        assert s.last_calibration == str(tmp_path / "f" / "calibrated" / "calibration.json")
        result = load_model(CalibrationResult, s.last_calibration)
        assert result.recommendation == "x1-64_denoise", result.reason
        assert s.last_message.startswith("x1-64_denoise: predicted ") and "mean FLIP" in s.last_message
        # Submit the calibrated plan to the local farm; wait=True blocks, as a pipeline script would.
        assert bpy.ops.farmplug.submit(farm="local", dry_run=False, directory="", wait=True) == {"FINISHED"}
        report = Path(s.last_report)
        assert report.name == "report.html" and report.is_file()
        assert Path(s.last_path) == tmp_path / "f" / "calibrated" / "run-tiny-plan"
        assert "fewer core-seconds over 40 frames, mean FLIP" in s.last_message
        assert bpy.ops.farmplug.open_report() == {"FINISHED"}
        assert len(list((tmp_path / "f").glob("frames/*.exr"))) == 0  # delivered into the run folder
        delivered = sorted(p.name for p in (Path(s.last_path) / "frames").glob("*.exr"))
        assert delivered == [f"tiny.{f:04d}.exr" for f in range(1, 41)]
    finally:
        addon.unregister()
    assert blend.is_file()


def test_open_report_without_a_report_is_a_clear_error(registered, tmp_path):
    with pytest.raises(RuntimeError, match="no report yet"):
        bpy.ops.farmplug.open_report()
    with pytest.raises(RuntimeError, match="report.html: report not found"):
        bpy.ops.farmplug.open_report(filepath=str(tmp_path))


# -- the installable zip ---------------------------------------------------------------------------

def test_the_package_zip_is_a_valid_extension_that_blender_installs(tmp_path):
    import tomllib

    done = subprocess.run([str(FARMPLUG), "blender", "package", "--out", str(tmp_path / "dist")], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    archive = tmp_path / "dist" / "farmplug_blender-0.1.0.zip"
    with zipfile.ZipFile(archive) as z:
        names = set(z.namelist())
        manifest = tomllib.loads(z.read("blender_manifest.toml").decode())
    assert {"blender_manifest.toml", "__init__.py", "operators.py", "panel.py", "farmplug_cli.py"} <= names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert (manifest["id"], manifest["type"], manifest["blender_version_min"]) == ("farmplug_blender", "add-on", "4.2.0")
    if not BLENDER_EXT.is_file():
        pytest.skip(f"Blender's extension tool is not at {BLENDER_EXT}")
    # Blender's own validator, then Blender's own "Install from Disk" (offline, into a scratch user folder).
    done = subprocess.run([sys.executable, str(BLENDER_EXT), "validate", str(archive)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    code = (
        "import bpy\n"
        f"r = bpy.ops.extensions.package_install_files(filepath={str(archive)!r}, repo='user_default', enable_on_install=True)\n"
        "assert r == {'FINISHED'}, r\n"
        "assert 'bl_ext.user_default.farmplug_blender' in bpy.context.preferences.addons.keys()\n"
        "prefs = bpy.context.preferences.addons['bl_ext.user_default.farmplug_blender'].preferences\n"
        f"prefs.executable = {str(FARMPLUG)!r}\n"
        "assert bpy.ops.farmplug.setup_passes() == {'FINISHED'}\n"  # farmplug found through the preference
        "assert bpy.context.scene.view_layers[0].cycles.denoising_store_passes\n"
        "print('installed and ran')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "FARMPLUG_EXECUTABLE"}
    env["BLENDER_USER_RESOURCES"] = str(tmp_path / "user")
    env["PATH"] = "/usr/bin:/bin"  # no farmplug on PATH: only the preference can find it
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0 and "installed and ran" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    assert (tmp_path / "user" / "extensions" / "user_default" / "farmplug_blender" / "blender_manifest.toml").is_file()


def test_cancel_stops_the_whole_process_group(addon, tmp_path):
    """A job whose children ignore nothing: SIGTERM goes to the group, and SIGKILL follows if it is ignored."""
    from farmplug_blender.farmplug_cli import BackgroundJob

    stubborn = tmp_path / "stubborn.py"
    stubborn.write_text("import signal, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                        "print('[1/4] render-0001-0001: render frames 1', file=sys.stderr, flush=True)\n"
                        "time.sleep(120)\n")
    job = BackgroundJob("submit", [sys.executable, str(stubborn)], []).start()
    deadline = time.monotonic() + 30
    while job.total == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (job.done, job.total, job.label) == (0, 4, "render-0001-0001")
    job.cancel(grace_s=1)
    assert job.returncode == -signal.SIGKILL
    assert "cancelled" in job.error()

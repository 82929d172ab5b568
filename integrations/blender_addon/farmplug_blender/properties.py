"""The add-on's settings: per scene (plan, farm, the last results) and per user (where farmplug is)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

#: The farm backends farmplug ships (``farmplug submit --help``); the panel offers these.
FARMS = (
    ("local", "Local", "Run the job graph on this machine and build the report"),
    ("openjd", "Open Job Description", "An OpenJD job bundle (AWS Deadline Cloud: deadline bundle submit)"),
    ("deadline", "Deadline 10", "Deadline job and plugin info files, or the Web Service"),
    ("opencue", "OpenCue", "A pyoutline job spec, or the Cuebot"),
    ("flamenco", "Flamenco 3", "A Flamenco job, or the Manager"),
    ("tractor", "Tractor", "An Alfred job script, or the engine"),
)


class FarmplugPreferences(bpy.types.AddonPreferences):
    """Per user: which farmplug to run (else $FARMPLUG_EXECUTABLE, else farmplug on PATH)."""

    bl_idname = __package__

    executable: StringProperty(
        name="farmplug executable", subtype="FILE_PATH", default="",
        description="The farmplug command (empty: $FARMPLUG_EXECUTABLE, else farmplug on PATH)",
    )

    def draw(self, context):
        self.layout.prop(self, "executable")


class FarmplugSettings(bpy.types.PropertyGroup):
    """Per scene: the plan's options, the farm's, and what farmplug last reported."""

    shot_path: StringProperty(
        name="Shot file", subtype="FILE_PATH", default="//farmplug/shot.yaml",
        description="The shot.yaml to write (// is the .blend's folder); the plan goes beside it",
    )
    shot_name: StringProperty(name="Shot name", default="", description="Empty: the .blend's name")
    output: StringProperty(
        name="Delivery pattern", default="",
        description="Where the finished frames go, with #### (empty: the scene's output path, else the run folder)",
    )
    plan_mode: EnumProperty(
        name="Plan", default="FIXED",
        items=(("FIXED", "Samples factor", "Render the samples factor below, fill the gap with the stages"),
               ("CALIBRATE", "Calibrate", "Measure candidate plans on check frames and use the cheapest that meets "
                                          "the quality target")),
    )
    samples_factor: StringProperty(name="Samples factor", default="1/32",
                                   description="Plan samples = the scene's samples x this (0.03125 or 1/32)")
    frame_step: IntProperty(name="Frame step", default=1, min=1, max=16,
                            description="Render every Nth frame and make the frames between them")
    guided: BoolProperty(name="Guided", default=False,
                         description="Frame step: render cheap aux passes of the frames between to guide them")
    flip_target: FloatProperty(name="Quality target (mean FLIP)", default=0.1, min=0.001, max=1.0, precision=3,
                               description="Mean HDR-FLIP allowed on the check frames (lower is stricter)")
    check_count: IntProperty(name="Check frames", default=3, min=2, max=50,
                             description="Frames rendered at full quality as evidence")
    calibrate_factors: StringProperty(name="Factors to try", default="1/64,1/32,1/16",
                                      description="Samples factors calibration measures")
    calibrate_frame_steps: StringProperty(name="Frame steps to try", default="1",
                                          description="Frame steps calibration measures, e.g. 1,2")
    farm: EnumProperty(name="Farm", items=FARMS, default="local")
    dry_run: BoolProperty(name="Dry run", default=False,
                          description="Write the farm's files instead of submitting")
    directory: StringProperty(
        name="Folder", subtype="DIR_PATH", default="",
        description="Dry run: the folder for the farm's files; else the run folder (empty: beside the plan)",
    )
    job_name: StringProperty(name="Job name", default="", description="Empty: the shot name")
    priority: IntProperty(name="Priority", default=50, min=0, max=100)
    cpu_pool: StringProperty(name="CPU pool", default="cpu", description="Pool/group/service for render tasks")
    gpu_pool: StringProperty(name="GPU pool", default="gpu", description="Pool/group/service for GPU post tasks")
    worker_farmplug: StringProperty(name="farmplug on workers", default="farmplug",
                                    description="The farmplug executable on the farm's workers")
    farm_config: StringProperty(name="Farm config", subtype="FILE_PATH", default="",
                                description="Farm addresses (empty: $FARMPLUG_FARMS or ~/.config/farmplug/farms.yaml)")

    # What farmplug last said (shown in the panel, written by the operators).
    stages: StringProperty(name="Stages", default="", description="The plan's stages and the passes they need")
    job: StringProperty(name="Running", default="")
    job_progress: FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    job_label: StringProperty(default="")
    last_message: StringProperty(name="Last result", default="")
    last_path: StringProperty(name="Result", subtype="FILE_PATH", default="",
                              description="The farm's files, or the run folder, of the last submission")
    last_calibration: StringProperty(subtype="FILE_PATH", default="", description="The last calibration.json")
    last_report: StringProperty(subtype="FILE_PATH", default="", description="The last report.html")


CLASSES = (FarmplugPreferences, FarmplugSettings)


def register_settings() -> None:
    bpy.types.Scene.farmplug = bpy.props.PointerProperty(type=FarmplugSettings)


def unregister_settings() -> None:
    """Reset the settings each scene stored, then remove them from Scene, so the scene is as it was."""
    scenes = getattr(bpy.data, "scenes", None)  # None while Blender quits: nothing left to clean
    for scene in scenes or ():
        scene.property_unset("farmplug")
    del bpy.types.Scene.farmplug

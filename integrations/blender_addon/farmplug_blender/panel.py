"""The farmplug panel in Render Properties: plan, quality target, farm, and what farmplug last measured."""

from __future__ import annotations

from pathlib import Path

import bpy

from .operators import RUNNING
from .shot_file import calibration_summary, report_summary


class FARMPLUG_PT_render(bpy.types.Panel):
    bl_label = "farmplug"
    bl_idname = "FARMPLUG_PT_render"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"

    def draw(self, context):
        layout = self.layout
        s = context.scene.farmplug
        layout.use_property_split = True
        layout.use_property_decorate = False

        col = layout.column(heading="Plan")
        col.prop(s, "plan_mode")
        if s.plan_mode == "FIXED":
            col.prop(s, "samples_factor")
            col.prop(s, "frame_step")
        else:
            col.prop(s, "calibrate_factors")
            col.prop(s, "calibrate_frame_steps")
        col.prop(s, "guided")
        col.prop(s, "flip_target")
        col.prop(s, "check_count")
        if s.stages:
            col.label(text=f"Stages: {s.stages}")
        col.operator("farmplug.setup_passes", icon="RENDERLAYERS")

        col = layout.column(heading="Shot")
        col.prop(s, "shot_path")
        col.prop(s, "shot_name")
        col.prop(s, "output")
        col.operator("farmplug.write_shot", icon="FILE_TICK").filepath = bpy.path.abspath(s.shot_path)

        col = layout.column(heading="Farm")
        col.prop(s, "farm")
        col.prop(s, "dry_run")
        col.prop(s, "directory")
        if s.farm != "local":
            col.prop(s, "job_name")
            col.prop(s, "priority")
            col.prop(s, "cpu_pool")
            col.prop(s, "gpu_pool")
            col.prop(s, "worker_farmplug")
            col.prop(s, "farm_config")

        row = layout.row(align=True)
        row.operator("farmplug.calibrate", icon="SETTINGS")
        submit = row.operator("farmplug.submit", icon="EXPORT")
        submit.farm, submit.dry_run, submit.directory = s.farm, s.dry_run, s.directory

        if RUNNING.job is not None and s.job:
            box = layout.box()
            box.progress(factor=s.job_progress, type="BAR",
                         text=f"{s.job}: {s.job_progress:.0%}" + (f" ({s.job_label})" if s.job_label else ""))
            box.operator("farmplug.cancel_job", icon="CANCEL")

        box = layout.box()
        calibration = calibration_summary(Path(s.last_calibration)) if s.last_calibration else None
        box.label(text=f"Calibration: {calibration or 'none yet'}")
        report = report_summary(Path(s.last_report).with_suffix(".json")) if s.last_report else None
        box.label(text=f"Report: {report or 'none yet'}")
        if s.last_message:
            box.label(text=s.last_message)
        if s.last_path:
            box.prop(s, "last_path")
        row = box.row()
        row.enabled = bool(s.last_report)
        row.operator("farmplug.open_report", icon="URL")


CLASSES = (FARMPLUG_PT_render,)

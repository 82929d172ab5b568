"""farmplug's pass names to Blender view-layer settings, and the settings that spoil them.

The passes a plan needs come from farmplug itself (``farmplug blender passes --json``, read from
the stage descriptors), so a new stage's needs reach the add-on without a change here; only the
way Blender spells each pass lives in this table. Takes Blender objects but imports no ``bpy``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: farmplug pass -> (owner of the setting on a view layer, property, what Blender's UI calls it).
#: Albedo and normal come together from Cycles' "Denoising Data".
BLENDER_PASSES: dict[str, tuple[str, str, str]] = {
    "albedo": ("cycles", "denoising_store_passes", "Denoising Data"),
    "normal": ("cycles", "denoising_store_passes", "Denoising Data"),
    "depth": ("", "use_pass_z", "Z"),
    "motion": ("", "use_pass_vector", "Vector"),
    "object_index": ("", "use_pass_object_index", "Object Index"),
    "material_index": ("", "use_pass_material_index", "Material Index"),
}


@dataclass
class PassChanges:
    """What :func:`enable_passes` did: settings turned on (per view layer), and warnings."""

    enabled: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def message(self) -> str:
        if self.enabled:
            return "enabled " + "; ".join(self.enabled)
        return "every pass the plan needs was already on" + (f" ({'; '.join(self.already)})" if self.already else "")


def _owner(view_layer, where: str):
    return getattr(view_layer, where) if where else view_layer


def missing_settings(view_layer, passes) -> list[tuple[str, str, str]]:
    """The (owner, property, UI name) settings of ``view_layer`` still off for ``passes``."""
    seen, missing = set(), []
    for name in sorted(passes):
        setting = BLENDER_PASSES.get(name)
        if setting is None or setting[:2] in seen:
            continue
        seen.add(setting[:2])
        if not getattr(_owner(view_layer, setting[0]), setting[1]):
            missing.append(setting)
    return missing


def enable_passes(scene, passes) -> PassChanges:
    """Turn on, on every view layer that renders, exactly the settings ``passes`` need; nothing else changes.

    Settings that would spoil a pass are warned about, not changed (farmplug's own renders turn
    them off; the artist's scene is theirs).
    """
    changes = PassChanges()
    unknown = sorted(p for p in passes if p not in BLENDER_PASSES)
    if unknown:
        changes.warnings.append(f"no Blender setting known for pass {', '.join(unknown)}; enable it by hand")
    for layer in scene.view_layers:
        if not getattr(layer, "use", True):
            continue
        turned_on = []
        for where, prop, label in missing_settings(layer, passes):
            setattr(_owner(layer, where), prop, True)
            turned_on.append(label)
        done_labels = sorted({BLENDER_PASSES[p][2] for p in passes if p in BLENDER_PASSES} - set(turned_on))
        if turned_on:
            changes.enabled.append(f"{', '.join(turned_on)} on view layer {layer.name!r}")
        if done_labels:
            changes.already.append(f"{', '.join(done_labels)} on {layer.name!r}")
    changes.warnings += scene_warnings(scene, passes)
    return changes


def scene_warnings(scene, passes) -> list[str]:
    """Settings of the scene that break or waste the passes and the plan (one line each)."""
    warnings = []
    render = scene.render
    if "motion" in passes and getattr(render, "use_motion_blur", False):
        warnings.append("motion blur is on: Cycles writes no Vector pass with it, so farmplug's renders turn it off "
                        "(the in-between frames will have no motion blur)")
    if render.engine != "CYCLES" and any(BLENDER_PASSES.get(p, ("",))[0] == "cycles" for p in passes):
        warnings.append(f"render engine is {render.engine}: farmplug renders with Cycles, whose Denoising Data "
                        "pass the denoiser reads")
    cycles = getattr(scene, "cycles", None)
    if cycles is not None and getattr(cycles, "use_denoising", False):
        warnings.append("Cycles' own denoiser is on: farmplug turns it off and denoises on the farm instead")
    return warnings

"""``farmplug blender ...``: the Blender add-on's folder, its installable zip, and what a plan needs of a scene.

``path`` prints the add-on's source folder (put its parent on ``sys.path`` and import
``farmplug_blender``, or point Blender at it); ``package --out DIR`` builds the extension zip
that Blender's "Install from Disk" takes; ``passes`` tells the add-on which stages a plan with
these options has and which render passes they need, read from the stage descriptors, so the
add-on never hard-codes a stage.
"""

from __future__ import annotations

import argparse
import os
import tomllib
import zipfile
from pathlib import Path

from farmplug.cli.common import print_json
from farmplug.errors import FarmplugError
from farmplug.worker import add_common, help_formatter

ADDON_PACKAGE = "farmplug_blender"
MANIFEST = "blender_manifest.toml"
#: Never shipped in the zip (Blender's own builder leaves these out too).
_LEFT_OUT_DIRS = {"__pycache__", ".git"}
_LEFT_OUT_SUFFIXES = (".pyc", ".pyo", ".zip")


def addon_folder() -> Path:
    """The add-on's source folder (inside the installed ``farmplug.integrations``).

    Raises:
        FarmplugError: the folder or its manifest is missing (a broken installation).
    """
    import farmplug.integrations

    folder = Path(farmplug.integrations.__file__).resolve().parent / "blender_addon" / ADDON_PACKAGE
    if not (folder / MANIFEST).is_file():
        raise FarmplugError("the Blender add-on is missing from this installation (reinstall farmplug)",
                            path=folder / MANIFEST)
    return folder


def read_manifest(folder: Path) -> dict:
    """The add-on's manifest.

    Raises:
        FarmplugError: it does not parse.
    """
    path = folder / MANIFEST
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise FarmplugError(f"bad manifest: {err}", path=path) from None


def addon_files(folder: Path) -> list[Path]:
    """The files the zip holds, relative to the add-on folder, sorted."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in _LEFT_OUT_DIRS and not d.startswith("."))
        for name in sorted(files):
            if name.endswith(_LEFT_OUT_SUFFIXES) or name.startswith("."):
                continue
            found.append((Path(root) / name).relative_to(folder))
    return sorted(found)


def build_package(out: Path) -> Path:
    """Write ``<id>-<version>.zip`` into ``out``: the manifest and ``__init__.py`` at the archive's root,
    as Blender's extension builder lays it out. Written to a temp file and renamed into place.

    Raises:
        FarmplugError: the add-on is missing or its manifest is bad.
        OSError: ``out`` cannot be written.
    """
    folder = addon_folder()
    manifest = read_manifest(folder)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{manifest['id']}-{manifest['version']}.zip"
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for relative in addon_files(folder):
                archive.write(folder / relative, relative.as_posix())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return target


def plan_needs(frame_step: int, guided: bool) -> dict:
    """The stages a plan with these options gets (as ``farmplug plan`` makes it) and the passes they need.

    Raises:
        FarmplugError: no stage can fill a frame step, or the stage cannot be guided.
    """
    from farmplug.api import plan_stages
    from farmplug.stages.registry import descriptor_of

    if frame_step < 1:
        raise FarmplugError(f"--frame-step must be 1 or more, got {frame_step}")
    stages = plan_stages(frame_step=frame_step, guided=guided)
    listed, passes = [], set()
    for stage in stages:
        described = descriptor_of(stage)
        aux = stage.aux_render()
        passes |= stage.passes()
        listed.append({"kind": stage.kind, "backend": stage.backend, "summary": described.summary,
                       "passes": sorted(stage.passes()),
                       "aux_render": None if aux is None else {"layer": aux.layer, "samples": aux.samples,
                                                                "passes": sorted(aux.passes)}})
    return {"frame_step": frame_step, "guided": guided, "stages": listed, "passes": sorted(passes)}


def add_parser(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("blender", help="the Blender add-on: its folder, its installable zip, the passes a plan needs",
                         formatter_class=help_formatter)
    add_common(p)
    actions = p.add_subparsers(dest="blender_action", required=True, metavar="ACTION")
    path = actions.add_parser("path", help="print the add-on's source folder (its parent goes on sys.path)",
                              formatter_class=help_formatter)
    add_common(path)
    path.add_argument("--json", action="store_true", help="print the folder and the manifest as JSON")
    package = actions.add_parser("package", help="build the extension zip for Blender's Install from Disk",
                                 formatter_class=help_formatter)
    add_common(package)
    package.add_argument("--out", type=Path, required=True, help="folder to write <id>-<version>.zip into")
    package.add_argument("--json", action="store_true", help="print the zip's path and contents as JSON")
    passes = actions.add_parser("passes", help="the stages of a plan with these options and the render passes they need",
                                formatter_class=help_formatter)
    add_common(passes)
    passes.add_argument("--frame-step", type=int, default=1, help="the plan's frame step")
    passes.add_argument("--guided", action="store_true", help="frame step: guided by cheap aux passes")
    passes.add_argument("--json", action="store_true", help="print them as JSON (what the add-on reads)")


def run(args: argparse.Namespace) -> int:
    if args.blender_action == "path":
        folder = addon_folder()
        if args.json:
            print_json({"path": str(folder), "sys_path": str(folder.parent), "package": ADDON_PACKAGE,
                        "manifest": read_manifest(folder)})
        else:
            print(folder)
        return 0
    if args.blender_action == "package":
        target = build_package(args.out)
        with zipfile.ZipFile(target) as archive:
            names = archive.namelist()
        if args.json:
            print_json({"zip": str(target), "files": names})
        else:
            print(f"wrote {target} ({len(names)} files); install it with Blender's Edit > Preferences > "
                  "Get Extensions > Install from Disk")
        return 0
    needs = plan_needs(args.frame_step, args.guided)
    if args.json:
        print_json(needs)
        return 0
    for stage in needs["stages"]:
        print(f"{stage['kind']}:{stage['backend']}: {', '.join(stage['passes']) or 'no passes'}  ({stage['summary']})")
    print(f"passes: {', '.join(needs['passes']) or 'none'}")
    return 0

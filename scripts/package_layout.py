"""Lay the repository's folders out as the installed ``farmplug.*`` package (pyproject's package-dir).

The build maps ``denoise/``, ``inbetween/``, ``upscale/`` and ``integrations/`` into the
``farmplug`` namespace; tools that walk a package's folder on disk (import-linter's grimp) or run a
modified copy of the project (the mutation check) need that layout as real folders.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def package_dirs(root: Path = ROOT) -> dict[str, str]:
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    return config["tool"]["setuptools"]["package-dir"]


def assemble(source: Path, site: Path) -> Path:
    """Copy ``source``'s package folders into ``site`` as the installed namespace; returns ``site``."""
    for package, folder in sorted(package_dirs(source).items(), key=lambda item: item[0].count(".")):
        shutil.copytree(source / folder, site / Path(*package.split(".")), dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return site

"""Check the import-linter contracts of pyproject.toml against the package as it is installed.

``lint-imports`` builds its graph by walking ``farmplug``'s folder, where the stages and farm
backends (mapped in by package-dir) are not; this runs it on an assembled copy instead.

    .venv/bin/python scripts/lint_imports.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from package_layout import ROOT, assemble


def main() -> int:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if lint is None:
        print("lint-imports is not installed (pip install import-linter)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="farmplug-layers-") as scratch:
        if (ROOT / "farmplug").is_dir():
            site = assemble(ROOT, Path(scratch) / "site")
        else:
            # A copy already laid out as installed (the mutation check's): lint that package.
            import farmplug

            site = Path(farmplug.__file__).resolve().parents[1]
        shutil.copy(ROOT / "pyproject.toml", Path(scratch) / "pyproject.toml")
        env = {**os.environ, "PYTHONPATH": str(site)}
        return subprocess.run([lint, "--no-cache"], cwd=scratch, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())

"""The architecture: the core names no stage, and the import layers hold.

The import layers themselves are import-linter contracts (pyproject.toml, run by ``make test``
through scripts/lint_imports.py); the test here runs the same check so a plain ``pytest`` sees it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import farmplug

ROOT = Path(__file__).resolve().parents[2]
#: The package as it is imported: the source folder, or a copy laid out as installed (where the
#: stages and farm backends sit inside it; the mutation check runs on such a copy).
CORE = Path(farmplug.__file__).resolve().parent
MAPPED = {CORE / name for name in ("denoise", "inbetween", "upscale", "integrations")}
#: Above the core (they may name stages as data, e.g. the demo's defaults), the stages and farm
#: backends, and the one file where built-in stages are registered.
NOT_CORE = {CORE / "cli", CORE / "api.py", *MAPPED}
REGISTRATION = CORE / "stages" / "registry.py"


def _stage_words() -> set[str]:
    from farmplug.stages.registry import descriptors

    words = set()
    for d in descriptors():
        words |= {d.kind, d.backend}
        aux = d.config().model_copy(update={"guided": True}) if "guided" in d.config.model_fields else d.config()
        if aux.aux_render() is not None:
            words.add(aux.aux_render().layer)
    return words


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _registration_lines(tree: ast.AST) -> set[int]:
    """The constants of the built-in stages' table (the one place a stage is named: one line each)."""
    found = set()
    for node in ast.walk(tree):
        target = getattr(node, "target", None) or (node.targets[0] if isinstance(node, ast.Assign) else None)
        if isinstance(target, ast.Name) and target.id == "BUILTIN_STAGES" and isinstance(node.value, ast.Dict):
            found |= {id(c) for c in [*node.value.keys, *node.value.values]}
    return found


def core_files() -> list[Path]:
    return sorted(p for p in CORE.rglob("*.py")
                  if not any(p == n or n in p.parents for n in NOT_CORE))


def test_no_core_module_names_a_stage():
    assert len(core_files()) > 20, f"the scan found no core modules under {CORE}"
    words = _stage_words()
    assert {"denoise", "inbetween", "oidn", "splat", "guide"} <= words  # the check knows what to look for
    found = []
    for path in core_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _docstrings(tree) | (_registration_lines(tree) if path == REGISTRATION else set())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                text = node.value
                named = [w for w in words if text == w or text.startswith(f"{w}:") or f"farmplug.{w}" in text]
                if named:
                    found.append(f"{path.relative_to(CORE.parent)}:{node.lineno}: {text!r}")
    assert not found, "core modules name stages (read the descriptor instead):\n" + "\n".join(found)


def test_the_check_finds_a_stage_named_in_the_core(tmp_path):
    """The scan itself works: a literal stage kind in code is found, one in a docstring is not."""
    source = 'def f(plan):\n    """Uses the denoise stage."""\n    return plan.stage("denoise")\n'
    tree = ast.parse(source)
    skip = _docstrings(tree)
    literals = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and id(n) not in skip]
    assert literals == ["denoise"]


def test_import_layers_hold():
    pytest.importorskip("importlinter", reason="import-linter is not installed")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "lint_imports.py")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_the_contracts_cover_every_core_module():
    """A new core module must be put in the core's contract, or the layers stop being checked for it."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    core_contract = next(c for c in config["contracts"] if c["name"].startswith("the core imports no"))
    listed = set(core_contract["source_modules"])
    top = {f"farmplug.{p.stem if p.is_file() else p.name}" for p in CORE.iterdir() if p not in MAPPED and (
           (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").is_file()))}
    assert top - {"farmplug.cli", "farmplug.api"} == listed

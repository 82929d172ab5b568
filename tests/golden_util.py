"""Golden files: compare generated text with ``tests/golden/<farm>/<case>/``; regenerate on request.

Regenerate with ``FARMPLUG_REGEN_GOLDEN=1 make test`` (or the same variable on pytest), then
review the diff like any other change.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent / "golden"


def regenerate() -> bool:
    return os.environ.get("FARMPLUG_REGEN_GOLDEN") == "1"


def check_golden(farm: str, case: str, files: Mapping[str, str]) -> None:
    """Assert ``files`` (relative path -> text) equal the golden copies; rewrite them when regenerating."""
    folder = GOLDEN / farm / case
    if regenerate():
        if folder.exists():
            for old in sorted(folder.rglob("*"), reverse=True):
                old.unlink() if old.is_file() else old.rmdir()
        for rel, text in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(text, encoding="utf-8")
        return
    expected = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []
    assert sorted(files) == expected, f"golden files differ for {farm}/{case}; regenerate with FARMPLUG_REGEN_GOLDEN=1"
    for rel, text in files.items():
        golden = (folder / rel).read_text(encoding="utf-8")
        assert text == golden, f"{farm}/{case}/{rel} differs from the golden copy; regenerate with FARMPLUG_REGEN_GOLDEN=1"

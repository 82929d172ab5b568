"""The fault-injection suite: real runs of a real shot, broken on purpose, then checked frame by frame.

Every scenario runs ``farmplug`` for real (Blender renders, OIDN denoises, the local farm's engine),
injects one fault (``kill -9`` of the parent or its process group at several points, SIGTERM, two
``submit``s at once, a plan change in one folder, deleted, foreign and corrupt outputs, a moved or
copied run folder, a read-only folder, a full disk, hostile names, a header bomb), and then checks
what a render wrangler relies on:

* no wrong frame is ever at the delivery path: every delivered frame has the pixels of an
  uninterrupted run of the same plan (:func:`check_delivery`);
* a failure exits non-zero with one line (``farmplug: error: ...``), never a traceback;
* a rerun converges: it exits 0 and every frame has the uninterrupted run's pixels.

Each scenario records what it checked in the ledger; the summary at the end of the session gives
the suite's figures (scenarios tried, delivered frames checked, wrong frames delivered), and
``FARMPLUG_FAULTS_REPORT=FILE`` writes them as JSON too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml

FRAMES = 4
#: Cycles renders the same frame to the same pixels on one machine; this allows for the last bit.
PIXEL_TOLERANCE = 1e-4


@dataclass
class Scenario:
    name: str
    frames_checked: int = 0
    frames_wrong: int = 0
    notes: list[str] = field(default_factory=list)


_LEDGER: list[Scenario] = []


@pytest.fixture
def ledger(request) -> Scenario:
    """This test's entry in the suite's ledger (one scenario per test)."""
    entry = Scenario(name=request.node.nodeid.split("::", 1)[-1])
    _LEDGER.append(entry)
    return entry


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _LEDGER:
        return
    checked = sum(s.frames_checked for s in _LEDGER)
    wrong = sum(s.frames_wrong for s in _LEDGER)
    terminalreporter.write_sep("-", "fault-injection suite")
    terminalreporter.write_line(f"{len(_LEDGER)} fault scenarios tried; {checked} delivered frames checked against an "
                                f"uninterrupted run; {wrong} wrong frames delivered")
    target = os.environ.get("FARMPLUG_FAULTS_REPORT")
    if target:
        Path(target).write_text(json.dumps({"scenarios": [asdict(s) for s in _LEDGER], "frames_checked": checked,
                                            "frames_wrong": wrong}, indent=2) + "\n")


# --- the shot ----------------------------------------------------------------------------------


def write_shot(folder: Path, scene: Path, *, name: str = "tiny", output: str = "frames/tiny.####.exr") -> Path:
    """The tiny demo shot (64x36, 4 frames, 64 spp) and its plan (1/8 of the samples, denoise,
    one frame per task, check frame 2): 4 renders, 4 denoise tasks and a reference render."""
    from farmplug.cli import main

    folder.mkdir(parents=True, exist_ok=True)
    shot = {"name": name, "scene": str(scene), "frames": {"start": 1, "end": FRAMES},
            "resolution": {"width": 64, "height": 36}, "samples": 64, "output": output}
    (folder / "shot.yaml").write_text(yaml.safe_dump(shot))
    assert main(["plan", str(folder / "shot.yaml"), "--samples-factor", "0.125", "--chunk-size", "1",
                 "--check-frames", "2"]) == 0
    return folder / "plan.yaml"


def farmplug_cmd(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "farmplug.cli", *map(str, args)]


def submit_cmd(plan: Path, run_dir: Path, *more: str) -> list[str]:
    return farmplug_cmd("submit", plan, "--run-dir", run_dir, "--no-report", *more)


def run_farmplug(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(farmplug_cmd(*args), capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> str:
    """A failure: non-zero, and stderr ends in one ``farmplug: error:`` line (no traceback)."""
    assert done.returncode != 0, done.stdout[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("farmplug: error:"), done.stderr[-2000:]
    for fragment in fragments:
        assert fragment in last, last
    return last


def delivered(run_dir: Path) -> dict[int, Path]:
    return {f: run_dir / "frames" / f"tiny.{f:04d}.exr" for f in range(1, FRAMES + 1)}


def colour(path: Path) -> np.ndarray:
    from farmplug.imageio import read_frame

    return read_frame(path).feature("color")


def check_delivery(run_dir: Path, baseline: dict[int, np.ndarray], scenario: Scenario, *,
                   complete: bool) -> None:
    """Every frame at the delivery path has the uninterrupted run's pixels (all of them when
    ``complete``); the scenario's ledger entry counts what was checked and what was wrong."""
    wrong = []
    for frame, path in delivered(run_dir).items():
        if not path.exists():
            assert not complete, f"{path.name} is missing after a run that said it finished"
            continue
        scenario.frames_checked += 1
        try:
            same = np.allclose(colour(path), baseline[frame], atol=PIXEL_TOLERANCE)
        except Exception as err:  # a frame that does not even read back is a wrong frame
            scenario.notes.append(f"{path.name}: {err}")
            same = False
        if not same:
            scenario.frames_wrong += 1
            wrong.append(path.name)
    assert not wrong, f"wrong frames delivered: {wrong}"


@pytest.fixture(scope="session")
def baseline(tiny_scene, tmp_path_factory) -> dict[int, np.ndarray]:
    """The delivered frames of an uninterrupted run of the plan: what every scenario must converge to."""
    folder = tmp_path_factory.mktemp("faults-baseline")
    plan = write_shot(folder, tiny_scene)
    done = subprocess.run(submit_cmd(plan, folder / "run"), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {f: colour(p) for f, p in delivered(folder / "run").items()}

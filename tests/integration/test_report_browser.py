"""The report pages open in a real browser (headless Chromium): no console errors, not blank.

The pages have no scripts, so any console message from the page (an uncaught error, a blocked
resource, a bad data URI) is a failure. Chromium prints page console messages on stderr with
``--enable-logging=stderr`` as ``...:CONSOLE:<line>] "<message>", source: <url> (<line>)``.
Set ``FARMPLUG_SCREENSHOT_DIR`` to keep the screenshots for a look.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest

from farmplug.report.build import build_report
from farmplug.report.show import ShowSize, build_show_report
from farmplug.schedule import Capacity
from tests.unit.test_report_rollup import EXAMPLES, SHOTS, make_run

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CONSOLE_LINE = re.compile(r":CONSOLE(?::\d+)?\]\s*(?P<message>.*)")


def console_errors(stderr: str) -> list[str]:
    """Page console messages and uncaught errors in Chromium's stderr log."""
    found = []
    for line in stderr.splitlines():
        match = CONSOLE_LINE.search(line)
        if match:
            found.append(match.group("message"))
        elif "Uncaught" in line:
            found.append(line.strip())
    return found


def screenshot(page: Path, png: Path, profile: Path, *, height: int = 2400) -> str:
    """Open ``page`` in headless Chromium, write a screenshot, return Chromium's stderr."""
    cmd = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--hide-scrollbars",
        f"--screenshot={png}", f"--window-size=1280,{height}", page.resolve().as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def assert_not_blank(png: Path) -> None:
    assert png.is_file() and png.stat().st_size > 0, f"no screenshot at {png}"
    buf = oiio.ImageBuf(str(png))
    assert not buf.has_error, buf.geterror()
    pixels = buf.get_pixels(oiio.UINT8).astype(np.float32)
    assert pixels.std() > 10, f"screenshot {png} is (nearly) one flat colour"
    # Something besides the background: at least 2% of pixels differ from the most common colour.
    flat = pixels.reshape(-1, pixels.shape[-1])
    background = np.median(flat, axis=0)
    assert (np.abs(flat - background).max(axis=1) > 16).mean() > 0.02, f"screenshot {png} is nearly empty"


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.is_file():
        pytest.skip("Chromium is not installed at /usr/bin/chromium (run .ci/install-chromium)")
    return CHROMIUM


def test_console_check_catches_a_broken_page(chromium: Path, tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><p>x</p><script>throw new Error('boom')</script>")
    errors = console_errors(screenshot(page, tmp_path / "b.png", tmp_path / "profile", height=300))
    assert any("Uncaught Error: boom" in e for e in errors), errors


def _pages(root: Path) -> dict[str, Path]:
    runs = [make_run(root / "runs", name, frames) for name, frames in SHOTS.items()]
    capacity = Capacity(cpu_nodes=2, cores_per_node=32, gpus=0)
    _, show, *_ = build_show_report(runs, root / "show", prices_file=EXAMPLES / "prices.yaml", capacity=capacity)
    _, one, *_ = build_show_report(runs[2:], root / "one", prices_file=EXAMPLES / "prices.yaml",
                                   capacity_file=EXAMPLES / "capacity.yaml")
    _, bare, *_ = build_show_report(runs, root / "bare", default_prices=False)
    _, single = build_report(runs[0], root / "single")
    _, farm = build_report(runs[1], root / "single-farm", capacity=Capacity(cpu_nodes=2, cores_per_node=32, core_speed=2),
                           project=ShowSize(2400, 1920, 1080))
    return {"show": show, "one-shot": one, "no-prices": bare, "single-run": single, "single-farm": farm}


@pytest.mark.parametrize("name", ["show", "one-shot", "no-prices", "single-run", "single-farm"])
def test_report_page_opens_cleanly(name: str, chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.getbasetemp() / "browser-pages"
    if not root.exists():
        _pages(root)
    page = {"show": root / "show", "one-shot": root / "one", "no-prices": root / "bare",
            "single-run": root / "single", "single-farm": root / "single-farm"}[name] / "report.html"
    png = root / f"{name}.png"
    stderr = screenshot(page, png, root / f"profile-{name}")
    assert console_errors(stderr) == []
    assert_not_blank(png)
    keep = os.environ.get("FARMPLUG_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(keep) / png.name)

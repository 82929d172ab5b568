"""Render faults for real: a full disk, a killed parent, a frame the child wrote wrong. No wrong frame is published."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from farmplug.errors import RenderError
from farmplug.imageio import read_frame
from farmplug.render import BlenderRenderer, RenderRequest

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path):
    """A 300 KB tmpfs: room for the scene's frames to start, not to finish (needs root to mount)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root and mount(8); the full-disk test cannot run here")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_publishes_nothing_and_fails_in_one_line(tiny_scene, small_disk, capsys):
    from farmplug.cli import main

    pattern = str(small_disk / "frames" / "tiny.####.exr")
    rc = main(["run", "render", "--scene", str(tiny_scene), "--output", pattern, "--frames", "1-4", "--samples", "2",
               "--passes", "albedo,normal,depth,motion", "--no-timing"])
    err = capsys.readouterr().err.strip()
    assert rc == 1, "a render into a full disk must fail"
    assert err.count("\n") == 0 and err.startswith("farmplug: error:") and "no space left" in err.lower(), err
    # Every frame that is there reads back whole; nothing half-written is under a final name.
    for path in (small_disk / "frames").glob("tiny.*.exr"):
        read_frame(path)
    assert not list((small_disk / "frames").glob(".*tmp*")), "temp frames must be cleaned"


class TruncatingRenderer(BlenderRenderer):
    """A stand-in child (named as such): writes a truncated EXR where Blender's frame would be and
    announces it, as a Blender that hit a write error would. The parent must not publish it."""

    def command(self, request_json: Path, result_json: Path) -> list[str]:
        script = (
            "import json, os, sys\n"
            "from pathlib import Path\n"
            "req = json.loads(Path(sys.argv[1]).read_text())\n"
            "for item in req['frames']:\n"
            "    final = Path(item['output'])\n"
            "    final.parent.mkdir(parents=True, exist_ok=True)\n"
            "    temp = final.with_name(f'.{final.name}.{os.getpid()}.tmp.exr')\n"
            "    temp.write_bytes(b'v/1\\x01' + b'\\x00' * 64)\n"
            "    print('FARMPLUG_FRAME_DONE', item['frame'], flush=True)\n"
            "sys.exit(0)\n"
        )
        return [sys.executable, "-c", script, str(request_json), str(result_json)]


def test_a_frame_the_child_wrote_wrong_is_never_published(tiny_scene, tmp_path):
    pattern = str(tmp_path / "out" / "tiny.####.exr")
    with pytest.raises(RenderError, match=r"tiny\.0001\.exr: Blender's frame did not read back, nothing published"):
        TruncatingRenderer().render(RenderRequest(scene=tiny_scene, frames=(1, 2), output_pattern=pattern, samples=2))
    assert not (tmp_path / "out" / "tiny.0001.exr").exists() and not (tmp_path / "out" / "tiny.0002.exr").exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_a_killed_parent_takes_its_blender_child_with_it(tiny_scene, tmp_path):
    """kill -9 of `farmplug run render`: the child dies too, and can never publish a stale frame later."""
    pattern = str(tmp_path / "out" / "tiny.####.exr")
    # 65536 spp: a frame takes minutes, so a child that outlived its parent would still be rendering.
    cmd = [sys.executable, "-m", "farmplug.cli", "run", "render", "--scene", str(tiny_scene), "--output", pattern,
           "--frames", "1-4", "--samples", "65536", "--no-timing"]
    parent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    child = None
    deadline = time.time() + 60
    while child is None and time.time() < deadline:
        found = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True).stdout.split()
        child = int(found[0]) if found else None
        time.sleep(0.1)
    assert child is not None, "the render child did not start"
    time.sleep(1.0)  # Blender is rendering its first frame
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    gone = time.time() + 5
    while time.time() < gone and Path(f"/proc/{child}").exists() and "Z" not in _state(child):
        time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists() or "Z" in _state(child), "the Blender child outlived its parent"
    published = list((tmp_path / "out").glob("tiny.*.exr")) if (tmp_path / "out").exists() else []
    assert published == [], "no frame of the killed task may be published"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return "X"


def test_sigterm_stops_the_task_like_ctrl_c(tiny_scene, tmp_path):
    """A farm cancelling a task (SIGTERM): one message, exit 143, the child stopped, no frame or temp left."""
    pattern = str(tmp_path / "out" / "tiny.####.exr")
    cmd = [sys.executable, "-m", "farmplug.cli", "run", "render", "--scene", str(tiny_scene), "--output", pattern,
           "--frames", "1-4", "--samples", "4096", "--no-timing"]
    parent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    child = None
    while child is None and time.time() < deadline:
        found = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True).stdout.split()
        child = int(found[0]) if found else None
        time.sleep(0.1)
    assert child is not None, "the render child did not start"
    time.sleep(1.0)
    parent.send_signal(signal.SIGTERM)
    _out, err = parent.communicate(timeout=30)
    assert parent.returncode == 143
    assert err.strip().splitlines()[-1].startswith("farmplug: terminated;")
    assert not Path(f"/proc/{child}").exists() or "Z" in _state(child)
    leftovers = list((tmp_path / "out").iterdir()) if (tmp_path / "out").exists() else []
    assert leftovers == [], f"a cancelled render left {leftovers}"

"""Header bombs: a small file whose header claims a huge image is refused before its pixels are read."""

from __future__ import annotations

import resource
import struct
import subprocess
import sys

import numpy as np
import OpenImageIO as oiio
import pytest

from farmplug.errors import ImageError
from farmplug.imageio import read_frame, write_frame
from farmplug.imageio.exr import Frame, Part, memory_budget_mb


def _small_exr(path):
    spec = oiio.ImageSpec(16, 16, 3, oiio.FLOAT)
    spec.channelnames = ("R", "G", "B")
    spec.attribute("compression", "zip")
    write_frame(path, Frame((Part(spec, np.full((16, 16, 3), 0.25, dtype=np.float32)),)))
    return path


def _bomb(path, width: int, height: int):
    """Patch the dataWindow (and displayWindow) of a real 16x16 EXR to claim width x height."""
    data = bytearray(_small_exr(path).read_bytes())
    for name in (b"dataWindow\x00box2i\x00", b"displayWindow\x00box2i\x00"):
        at = data.index(name) + len(name) + 4  # the attribute's size (16) comes first
        data[at:at + 16] = struct.pack("<4i", 0, 0, width - 1, height - 1)
    path.write_bytes(bytes(data))
    return path


def test_a_header_claiming_gigapixels_is_refused_before_reading(tmp_path, monkeypatch):
    bomb = _bomb(tmp_path / "bomb.exr", 16000, 16000)
    assert bomb.stat().st_size < 10_000
    monkeypatch.setenv("FARMPLUG_IMAGE_MEMORY_MB", "512")
    with pytest.raises(ImageError, match=r"bomb\.exr: needs \d+ MB of memory to read .*16000x16000.*over the budget of 512 MB"):
        read_frame(bomb)


def test_the_refusal_costs_no_memory(tmp_path):
    """In a process of its own: refusing the bomb leaves the peak memory where it was (the header
    alone is read), and the CLI says so in one line."""
    bomb = _bomb(tmp_path / "bomb.exr", 16000, 16000)
    code = (
        "import resource, sys\n"
        "from farmplug.cli import main\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"rc = main(['run', 'denoise', '--input', {str(bomb)!r}, '--output', {str(tmp_path / 'out.exr')!r}])\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(rc, after - before)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "FARMPLUG_IMAGE_MEMORY_MB": "512"})
    rc, grown_kb = done.stdout.split()[-2:]
    assert rc == "1"
    assert int(grown_kb) < 200_000, f"refusing the bomb grew the process by {int(grown_kb) // 1024} MB"
    err = done.stderr.strip().splitlines()[-1]
    assert err.startswith("farmplug: error:") and "over the budget" in err
    assert not (tmp_path / "out.exr").exists()


def test_a_plausible_image_under_the_budget_reads(tmp_path, monkeypatch):
    monkeypatch.setenv("FARMPLUG_IMAGE_MEMORY_MB", "1")
    frame = read_frame(_small_exr(tmp_path / "ok.exr"))
    assert frame.parts[0].pixels.shape == (16, 16, 3)


@pytest.mark.parametrize("value", ["0", "-3", "lots"])
def test_a_bad_budget_is_one_error(value, monkeypatch):
    monkeypatch.setenv("FARMPLUG_IMAGE_MEMORY_MB", value)
    with pytest.raises(ImageError, match="FARMPLUG_IMAGE_MEMORY_MB"):
        memory_budget_mb()


def test_the_default_budget_follows_the_machine(monkeypatch):
    monkeypatch.delenv("FARMPLUG_IMAGE_MEMORY_MB", raising=False)
    assert memory_budget_mb() >= 1024
    assert resource.getpagesize() > 0


def _depth_only(path, width: int = 16, height: int = 16):
    spec = oiio.ImageSpec(width, height, 1, oiio.FLOAT)
    spec.channelnames = ("Z",)
    write_frame(path, Frame((Part(spec, np.full((height, width, 1), 3.0, dtype=np.float32)),)))
    return path


def test_a_stage_s_passes_are_checked_from_the_header_before_the_pixels(tmp_path, monkeypatch, capsys):
    """A depth-only file claiming 16000x16000 for the denoise stage: the missing colour is what is
    reported (from the header), not the memory its pixels would need, and nothing is written."""
    from farmplug.cli import main
    from farmplug.imageio import read_header

    path = _depth_only(tmp_path / "depth.exr")
    header = read_header(path)
    assert header.has("depth") and not header.has("color") and header.parts[0].pixels.size == 0
    data = bytearray(path.read_bytes())
    for name in (b"dataWindow\x00box2i\x00", b"displayWindow\x00box2i\x00"):
        at = data.index(name) + len(name) + 4
        data[at:at + 16] = struct.pack("<4i", 0, 0, 15999, 15999)
    path.write_bytes(bytes(data))
    monkeypatch.setenv("FARMPLUG_IMAGE_MEMORY_MB", "512")
    assert main(["run", "denoise", "--input", str(path), "--output", str(tmp_path / "out.exr")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "depth.exr: no color pass, which the denoise stage needs" in err
    assert not (tmp_path / "out.exr").exists()


def test_every_damaged_file_s_header_is_one_error(exr_images):
    """read_header meets the same fuzzed files as read_frame: each is an ImageError, never a crash."""
    from farmplug.imageio import read_header
    from tests.conftest import damaged_files

    files = damaged_files()
    assert files
    crashes = []
    for path in files:
        try:
            read_header(path)
        except ImageError:
            continue
        except Exception as err:  # noqa: BLE001 - the point is to find any other exception
            crashes.append(f"{path.name}: {type(err).__name__}: {err}")
    assert not crashes, crashes[:5]

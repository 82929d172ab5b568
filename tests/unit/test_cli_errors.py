"""Every failure is one line naming the path: operating-system errors, and outputs that would collide."""

from __future__ import annotations

import numpy as np
import OpenImageIO as oiio
import pytest

from farmplug.cli import main
from farmplug.imageio import write_frame
from farmplug.imageio.exr import Frame, Part


def _exr(path):
    spec = oiio.ImageSpec(8, 8, 3, oiio.FLOAT)
    spec.channelnames = ("R", "G", "B")
    write_frame(path, Frame((Part(spec, np.full((8, 8, 3), 0.5, dtype=np.float32)),)))
    return path


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("farmplug: error:") and "Traceback" not in err
    return err


@pytest.mark.parametrize("what, extra", [
    pytest.param("denoise", [], id="denoise"),
    pytest.param("inbetween", ["--step", "2"], id="inbetween"),
])
def test_an_output_without_a_frame_token_for_several_frames_is_refused(what, extra, tmp_path, capsys):
    out = tmp_path / "one.exr"
    assert main(["run", what, "--input", str(tmp_path / "in.####.exr"), "--output", str(out), "--frames", "1-5", *extra]) == 1
    err = _one_line(capsys)
    assert str(out) in err and "no frame token" in err
    assert not out.exists()


def test_an_output_path_that_is_a_folder_is_one_line(tmp_path, capsys):
    src = _exr(tmp_path / "in.exr")
    folder = tmp_path / "out.exr"
    folder.mkdir()
    assert main(["run", "denoise", "--input", str(src), "--output", str(folder)]) == 1
    err = _one_line(capsys)
    assert str(folder) in err
    assert list(folder.iterdir()) == []


def test_an_output_below_a_file_is_one_line(tmp_path, capsys):
    src = _exr(tmp_path / "in.exr")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file")
    assert main(["run", "denoise", "--input", str(src), "--output", str(blocker / "out.exr")]) == 1
    assert str(blocker) in _one_line(capsys)


def test_os_errors_show_their_traceback_with_verbose(tmp_path):
    src = _exr(tmp_path / "in.exr")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file")
    with pytest.raises(OSError):
        main(["-v", "run", "denoise", "--input", str(src), "--output", str(blocker / "out.exr")])

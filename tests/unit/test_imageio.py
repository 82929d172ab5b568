"""Image I/O on OpenImageIO with real third-party EXR files and real Blender renders."""

from __future__ import annotations

import os
import time

import numpy as np
import OpenImageIO as oiio
import pytest

from farmplug.errors import ImageError, MissingPassError
from farmplug.imageio import read_frame, split_channel, write_frame
from farmplug.imageio.channels import candidates
from tests.conftest import damaged_files


@pytest.mark.parametrize(
    "name, expected",
    [
        pytest.param("ViewLayer.Combined.R", ("ViewLayer", "Combined", "R"), id="blender"),
        pytest.param("ViewLayer.Denoising Albedo.G", ("ViewLayer", "Denoising Albedo", "G"), id="space-in-pass"),
        pytest.param("N.X", ("", "N", "X"), id="pass-component"),
        pytest.param("R", ("", "", "R"), id="bare"),
        pytest.param("a.b.c.Z", ("a.b", "c", "Z"), id="nested-layer"),
    ],
)
def test_split_channel(name, expected):
    assert split_channel(name) == expected


def test_unknown_feature_is_an_error_listing_known_ones():
    with pytest.raises(KeyError, match="albedo"):
        candidates("shininess")


def test_beachball_multipart_reads_every_part(exr_images):
    path = exr_images / "Beachball" / "multipart.0001.exr"
    frame = read_frame(path)
    assert len(frame.parts) == 10
    assert {"color", "alpha", "depth"} <= frame.features()
    # Colour and depth come from the same view of this stereo file.
    color_part = frame.parts[frame.locate("color").part]
    depth_part = frame.parts[frame.locate("depth").part]
    assert color_part.spec.getattribute("view") == depth_part.spec.getattribute("view")
    # Data windows differ from the display window and between parts.
    windows = {p.data_window for p in frame.parts}
    assert len(windows) > 1
    assert frame.parts[0].display_window.width == 2048
    assert np.isfinite(frame.feature("color")).all()


def test_beachball_round_trip_keeps_parts_windows_formats_and_metadata(exr_images, tmp_path):
    src = exr_images / "Beachball" / "multipart.0002.exr"
    frame = read_frame(src)
    changed = frame.with_feature("color", frame.feature("color") * 0.5)
    out = write_frame(tmp_path / "out.exr", changed, provenance={"stage": "test", "plan": "p.yaml"}, inputs=[src])
    back = read_frame(out)
    assert [p.name for p in back.parts] == [p.name for p in frame.parts]
    for a, b in zip(frame.parts, back.parts, strict=True):
        assert a.channels == b.channels
        assert a.data_window == b.data_window
        assert a.display_window == b.display_window
        assert str(a.spec.format) == str(b.spec.format) == "half"
        assert a.spec.getattribute("view") == b.spec.getattribute("view")
        assert b.spec.getattribute("farmplug:stage") == "test"
        assert b.spec.getattribute("farmplug:plan") == "p.yaml"
    np.testing.assert_allclose(back.feature("color"), frame.feature("color") * 0.5, rtol=1e-3, atol=1e-3)
    # Layers the stage did not touch are bit-identical (half -> float32 -> half is exact).
    np.testing.assert_array_equal(back.feature("depth"), frame.feature("depth"))
    np.testing.assert_array_equal(back.feature("alpha"), frame.feature("alpha"))
    untouched = [i for i in range(len(frame.parts)) if i != frame.locate("color").part]
    for i in untouched:
        np.testing.assert_array_equal(back.parts[i].pixels, frame.parts[i].pixels)


def test_display_window_files_keep_their_windows(exr_images, tmp_path):
    for src in sorted((exr_images / "DisplayWindow").glob("*.exr"))[:6]:
        frame = read_frame(src)
        back = read_frame(write_frame(tmp_path / src.name, frame, inputs=[src]))
        assert back.parts[0].data_window == frame.parts[0].data_window
        assert back.parts[0].display_window == frame.parts[0].display_window


def test_nan_and_inf_survive_a_round_trip(exr_images, tmp_path):
    src = exr_images / "TestImages" / "BrightRingsNanInf.exr"
    frame = read_frame(src)
    color = frame.feature("color")
    assert not np.isfinite(color).all()
    back = read_frame(write_frame(tmp_path / "rings.exr", frame))
    np.testing.assert_array_equal(np.isnan(back.feature("color")), np.isnan(color))
    np.testing.assert_array_equal(np.isinf(back.feature("color")), np.isinf(color))


def test_write_refuses_to_replace_an_input(exr_images, tmp_path):
    src = tmp_path / "in.exr"
    frame = read_frame(exr_images / "TestImages" / "GammaChart.exr")
    write_frame(src, frame)
    before = src.read_bytes()
    again = read_frame(src)
    with pytest.raises(ImageError, match="refusing to overwrite the input"):
        write_frame(src, again)
    with pytest.raises(ImageError, match="refusing to overwrite"):
        write_frame(tmp_path / "link.exr", frame, inputs=[tmp_path / "link.exr"])
    assert src.read_bytes() == before


def test_write_is_atomic_and_leaves_no_temp_files(exr_images, tmp_path):
    frame = read_frame(exr_images / "TestImages" / "GammaChart.exr")
    write_frame(tmp_path / "a.exr", frame)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.exr"]
    assert oct(os.stat(tmp_path / "a.exr").st_mode & 0o777) != oct(0o600)


def test_failed_write_leaves_nothing_behind(exr_images, tmp_path):
    frame = read_frame(exr_images / "Beachball" / "multipart.0001.exr")
    with pytest.raises(ImageError, match="cannot hold 10 parts"):
        write_frame(tmp_path / "out.png", frame)
    assert list(tmp_path.iterdir()) == []


def test_missing_file_names_it(tmp_path):
    with pytest.raises(ImageError, match=r"nope\.exr: file not found"):
        read_frame(tmp_path / "nope.exr")


def test_missing_pass_says_what_to_enable(exr_images):
    frame = read_frame(exr_images / "TestImages" / "GammaChart.exr")
    with pytest.raises(MissingPassError, match="Denoising Data"):
        frame.feature("albedo")


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name[:40]) for p in damaged_files()])
def test_every_damaged_file_is_rejected_naming_it(path):
    started = time.perf_counter()
    with pytest.raises(ImageError) as info:
        read_frame(path)
    assert str(path) in str(info.value)
    assert time.perf_counter() - started < 10


def test_damaged_collection_is_present(exr_images):
    assert len(damaged_files()) > 150


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["multipart", "singlepart"])
def test_blender_multilayer_features_in_both_layouts(tiny_renders, layout):
    from farmplug.render.base import frame_path

    frame = read_frame(frame_path(str(tiny_renders[layout]), 1))
    assert frame.features() >= {"color", "alpha", "albedo", "normal", "depth", "motion"}
    assert len(frame.parts) > 1 if layout == "multipart" else len(frame.parts) == 1
    assert frame.locate("color").names == ("ViewLayer.Combined.R", "ViewLayer.Combined.G", "ViewLayer.Combined.B")
    assert frame.locate("albedo").names[0] == "ViewLayer.Denoising Albedo.R"
    assert frame.locate("normal").names[0] == "ViewLayer.Denoising Normal.X"
    assert frame.locate("depth").names == ("ViewLayer.Depth.Z",)
    assert frame.locate("motion").names[0] == "ViewLayer.Vector.X"
    assert frame.feature("color").shape == (36, 64, 3)
    normal = frame.feature("normal")
    lengths = np.linalg.norm(normal, axis=-1)
    assert np.median(lengths[lengths > 0]) == pytest.approx(1.0, abs=0.1)
    assert frame.header.get("Software", "").startswith("Blender") or layout == "multipart"


@pytest.mark.slow
def test_both_layouts_hold_the_same_pixels(tiny_renders):
    from farmplug.render.base import frame_path

    a = read_frame(frame_path(str(tiny_renders["multipart"]), 2))
    b = read_frame(frame_path(str(tiny_renders["singlepart"]), 2))
    for feature in ("color", "albedo", "normal", "depth", "motion"):
        np.testing.assert_array_equal(a.feature(feature), b.feature(feature))


def test_oiio_is_the_3_0_line():
    assert oiio.VERSION_MAJOR == 3 and oiio.VERSION_MINOR == 0

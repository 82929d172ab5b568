"""The inbetween test sequences build and render with real Blender, and move where they should."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from farmplug.errors import ConfigError
from farmplug.imageio import read_frame
from farmplug.render import BlenderRenderer, RenderRequest
from farmplug.render.base import frame_path
from farmplug.render.sequences import SEQUENCES, build_sequence, sequence_command

WIDTH, HEIGHT = 64, 36
MOVING_PX = 0.05  # a vector longer than this (pixels) counts as motion


def test_unknown_sequence_lists_valid_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="camera_pan"):
        sequence_command("no_such_sequence", tmp_path / "x.blend")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "min_moving", "max_moving"),
    [
        # Objects move in front of a static camera: most of the frame (floor, wall) is still.
        pytest.param("translate_rotate", 0.01, 0.4, id="translate_rotate"),
        # A moving camera moves every pixel but the (distant, vector-free) sky.
        pytest.param("camera_pan", 0.9, 1.0, id="camera_pan"),
        pytest.param("camera_dolly", 0.9, 1.0, id="camera_dolly"),
        pytest.param("occlusion", 0.03, 0.5, id="occlusion"),
        pytest.param("glossy", 0.01, 0.4, id="glossy"),
    ],
)
def test_sequence_renders_with_motion_where_expected(
    tmp_path: Path, name: str, min_moving: float, max_moving: float
) -> None:
    pytest.importorskip("bpy", reason="the bpy module builds and renders the sequences")
    assert name in SEQUENCES
    blend = tmp_path / f"{name}.blend"
    build_sequence(name, blend, frames=2, resolution=(WIDTH, HEIGHT), samples=8)
    pattern = str(tmp_path / "f.####.exr")
    BlenderRenderer().render(
        RenderRequest(scene=blend, frames=(1, 2), output_pattern=pattern, samples=8,
                      passes=frozenset({"depth", "motion"}))
    )
    for frame in (1, 2):
        image = read_frame(frame_path(pattern, frame))
        color, depth, motion = image.feature("color"), image.feature("depth"), image.feature("motion")
        assert color.shape == (HEIGHT, WIDTH, 3)
        assert np.isfinite(color).all() and color.mean() > 0.01
        assert depth.shape == (HEIGHT, WIDTH, 1)
        # Keys sit one frame outside the range, so both vectors are live on the first and last frame.
        to_prev, to_next = np.hypot(motion[..., 0], motion[..., 1]), np.hypot(motion[..., 2], motion[..., 3])
        for speed in (to_prev, to_next):
            moving = float((speed > MOVING_PX).mean())
            assert min_moving <= moving <= max_moving, (name, frame, moving)

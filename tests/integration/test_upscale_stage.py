"""The upscale stage on real frames through the command line: layers, provenance, backends, bad input.

A tiny procedural scene is rendered with Blender at half resolution (colour) and at full
resolution (the 2-sample guide); a tiny random model runs the stage (the shipped weights' quality
is tested in test_dataset_train.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest

from farmplug.cli import main
from farmplug.imageio import Frame, Part, read_frame, write_frame

torch = pytest.importorskip("torch", reason="torch not installed")
pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install farmplug[models])")



@pytest.fixture(scope="module")
def renders(tmp_path_factory) -> dict[str, str]:
    """Frames 1-2 of a procedural scene: colour at 32x18 (50%), guide and target at 64x36."""
    pytest.importorskip("bpy", reason="bpy (Blender as a Python module) is not installed")
    from farmplug.nn.scenes import build_scene
    from farmplug.render import BlenderRenderer, RenderRequest

    folder = tmp_path_factory.mktemp("upscale")
    scene = build_scene(folder / "scene.blend", seed=3, frames=2, resolution=(64, 36), samples=16)
    renderer = BlenderRenderer()
    patterns = {tag: str(folder / tag / f"{tag}.####.exr") for tag in ("low", "guide", "noguide")}
    renderer.render(RenderRequest(scene=scene, frames=(1, 2), output_pattern=patterns["low"], samples=16,
                                  resolution_percentage=50, passes=frozenset({"albedo", "normal"}), threads=1))
    renderer.render(RenderRequest(scene=scene, frames=(1, 2), output_pattern=patterns["guide"], samples=2,
                                  passes=frozenset({"albedo", "normal", "depth"}), threads=1))
    # A guide without depth: the real guide with its depth parts left out.
    guide = read_frame(patterns["guide"].replace("####", "0001"))
    kept = tuple(p for p in guide.parts if "Depth" not in p.name)
    write_frame(patterns["noguide"].replace("####", "0001"), Frame(kept))
    return patterns


def upscale(renders, out: Path, *extra: str, frames: str = "1-2") -> int:
    # The spelling (--guide); the bad-input cases below use the plan's (--aux).
    return main(["run", "upscale", "--input", renders["low"], "--guide", renders["guide"], "--output",
                 str(out / "up.####.exr"), "--frames", frames, "--threads", "1", *extra])


@pytest.mark.slow
@pytest.mark.parametrize("flag,runtime,backend", [("--runtime", "onnxruntime", "onnxruntime-cpu fp32"),
                                                  ("--backend", "torch", "torch-cpu fp32")])
def test_stage_upscales_real_frames_and_names_its_backend(renders, tiny_model, tmp_path, flag, runtime, backend,
                                                          monkeypatch):
    monkeypatch.setenv("FARMPLUG_MODEL_CACHE", str(tmp_path / "cache"))
    assert upscale(renders, tmp_path, "--model", str(tiny_model), flag, runtime) == 0
    low = read_frame(renders["low"].replace("####", "0001"))
    guide = read_frame(renders["guide"].replace("####", "0001"))
    made = read_frame(tmp_path / "up.0001.exr")
    assert [p.name for p in made.parts] == [p.name for p in low.parts]
    assert made.feature("color").shape == (36, 64, 3) and low.feature("color").shape == (18, 32, 3)
    assert made.parts[0].display_window == guide.parts[0].display_window
    # Albedo, normal and depth are the guide's, never interpolated.
    for feature in ("albedo", "normal"):
        assert np.array_equal(made.feature(feature), guide.feature(feature))
    spec = made.parts[0].spec
    assert spec.getattribute("farmplug:inference") == backend
    assert spec.getattribute("farmplug:stage") == "upscale" and spec.getattribute("farmplug:backend") == "guided"
    assert "tiny.safetensors guided-sr-2x v1 sha256:" in spec.getattribute("farmplug:model")
    assert spec.getattribute("farmplug:guide").endswith("guide.0001.exr")
    record = json.loads((tmp_path / "upscale-0001-0002.timing.json").read_text())
    assert record["settings"]["device"] == "cpu" and record["settings"]["runtime"] == runtime
    assert [f["frame"] for f in record["frames"]] == [1, 2]
    # The tiny untrained model starts as albedo-demodulated upsampling: finite, non-negative HDR.
    color = made.feature("color")
    assert np.isfinite(color).all() and color.min() >= 0 and color.mean() > 0


@pytest.mark.slow
def test_bad_inputs_are_one_line_errors(renders, tiny_model, tmp_path, capsys):
    cases = [
        (["--model", str(tiny_model)], {"aux": renders["noguide"]}, "1",
         ["noguide.0001.exr", "has no depth pass", "low.0001.exr", "Z/Depth pass"]),
        (["--model", str(tiny_model)], {"aux": renders["low"]}, "1",
         ["is 32x18 but the colour", "is 32x18; the guide must be the colour's size times 2"]),
        (["--model", str(tiny_model)], {"aux": str(tmp_path / "none.####.exr")}, "1",
         ["none.0001.exr: guide frame not found"]),
        (["--model", str(tmp_path / "absent.safetensors")], {}, "1", ["absent.safetensors: weights file not found"]),
    ]
    for extra, override, frames, expected in cases:
        argv = ["run", "upscale", "--input", renders["low"], "--aux", override.get("aux", renders["guide"]),
                "--output", str(tmp_path / "bad.####.exr"), "--frames", frames, "--threads", "1", *extra]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        for words in expected:
            assert words in err, err
    pickle = tmp_path / "model.safetensors"
    torch.save({"w": torch.zeros(1)}, pickle)
    assert upscale(renders, tmp_path, "--model", str(pickle), frames="1") == 1
    assert "never unpickles" in capsys.readouterr().err
    no_aux = ["run", "upscale", "--input", renders["low"], "--output", str(tmp_path / "x.####.exr"), "--frames", "1",
              "--model", str(tiny_model)]
    assert main(no_aux) == 1
    assert "no guide frames: give --guide PATTERN" in capsys.readouterr().err


def _part(name: str, channels: tuple[str, ...], pixels: np.ndarray) -> Part:
    h, w, _ = pixels.shape
    spec = oiio.ImageSpec(w, h, len(channels), "float")
    spec.channelnames = channels
    spec.attribute("name", name)
    return Part(spec, pixels.astype(np.float32))


def test_layers_follow_their_rules(tmp_path, tiny_model):
    """Alpha with its colour, IDs and vectors from the guide or never blended, others resampled and listed."""
    from farmplug.upscale.config import UpscaleConfig
    from farmplug.upscale.stage import GuidedUpscaleStage

    rng = np.random.default_rng(0)
    h, w = 8, 12
    ids_low = rng.integers(0, 4, (h, w, 1)).astype(np.float32)
    low = Frame((
        _part("ViewLayer.Combined", ("ViewLayer.Combined.R", "ViewLayer.Combined.G", "ViewLayer.Combined.B",
                                     "ViewLayer.Combined.A"),
              np.concatenate([rng.uniform(0, 2, (h, w, 3)), (rng.uniform(size=(h, w, 1)) > 0.5)], -1)),
        _part("ViewLayer.IndexOB", ("ViewLayer.IndexOB.X",), ids_low),
        _part("ViewLayer.Vector", tuple(f"ViewLayer.Vector.{c}" for c in "XYZW"), np.ones((h, w, 4))),
        _part("ViewLayer.Emit", ("ViewLayer.Emit.R", "ViewLayer.Emit.G", "ViewLayer.Emit.B"), rng.uniform(size=(h, w, 3))),
    ), path=tmp_path / "low.0001.exr")
    ids_high = rng.integers(0, 4, (2 * h, 2 * w, 1)).astype(np.float32)
    guide = Frame((
        _part("ViewLayer.Denoising Albedo", tuple(f"ViewLayer.Denoising Albedo.{c}" for c in "RGB"),
              rng.uniform(size=(2 * h, 2 * w, 3))),
        _part("ViewLayer.Denoising Normal", tuple(f"ViewLayer.Denoising Normal.{c}" for c in "XYZ"),
              rng.normal(size=(2 * h, 2 * w, 3))),
        _part("ViewLayer.Depth", ("ViewLayer.Depth.Z",), rng.uniform(1, 5, (2 * h, 2 * w, 1))),
        _part("ViewLayer.IndexOB", ("ViewLayer.IndexOB.X",), ids_high),
    ), path=tmp_path / "guide.0001.exr")
    stage = GuidedUpscaleStage(UpscaleConfig(model=str(tiny_model), threads=1, runtime="torch"))
    made, _info = stage.upscale(low, guide)
    stage.close()
    write_frame(tmp_path / "made.exr", made)
    made = read_frame(tmp_path / "made.exr")
    alpha = made.feature("alpha")
    assert alpha.shape == (2 * h, 2 * w, 1) and alpha.min() >= 0 and alpha.max() <= 1
    assert np.array_equal(made.parts[1].pixels, ids_high)  # the guide's IDs
    assert np.allclose(made.parts[2].pixels, 2.0)  # vectors in pixels double, not blended with anything
    assert made.parts[0].spec.getattribute("farmplug:resampled") == "ViewLayer.Vector (bilinear), ViewLayer.Emit (bicubic)"
    # Without the guide's ID layer, IDs are nearest-neighbour: only labels of the input.
    guide_without_ids = Frame(guide.parts[:3], path=guide.path)
    stage = GuidedUpscaleStage(UpscaleConfig(model=str(tiny_model), threads=1, runtime="torch"))
    made, _info = stage.upscale(low, guide_without_ids)
    stage.close()
    assert set(np.unique(made.parts[1].pixels)) <= set(np.unique(ids_low))
    assert "ViewLayer.IndexOB (nearest)" in made.parts[0].spec.getattribute("farmplug:resampled")

"""The temporal denoise backend on real Cycles renders: command line, metric, bad input, local farm."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from farmplug.cli import main
from farmplug.imageio import read_frame
from farmplug.quality import psnr_tonemapped, temporal_instability
from farmplug.render.base import frame_path

pytestmark = pytest.mark.slow

FRAMES = 6
PASSES = frozenset({"albedo", "normal", "depth", "motion", "object_index"})


@pytest.fixture(scope="module")
def sequence(tmp_path_factory) -> dict[str, object]:
    """A camera pan at 64x36: 6 frames at 8 spp with every pass (a new noise pattern per frame, Cycles'
    animated seed), their 256 spp references with another seed, and 3 frames without a Vector pass."""
    pytest.importorskip("bpy", reason="bpy (Blender as a Python module) is not installed")
    from farmplug.render import BlenderRenderer, RenderRequest
    from farmplug.render.sequences import build_sequence

    out = tmp_path_factory.mktemp("temporal")
    scene = out / "pan.blend"
    build_sequence("camera_pan", scene, frames=FRAMES, resolution=(64, 36), samples=64)
    frames = tuple(range(1, FRAMES + 1))
    noisy, reference, flat = (str(out / d / "f.####.exr") for d in ("noisy", "reference", "flat"))
    renderer = BlenderRenderer()
    renderer.render(RenderRequest(scene=scene, frames=frames, output_pattern=noisy, samples=8, passes=PASSES))
    renderer.render(RenderRequest(scene=scene, frames=frames, output_pattern=reference, samples=256, seed=977,
                                  passes=frozenset({"motion"})))
    renderer.render(RenderRequest(scene=scene, frames=(1, 2, 3), output_pattern=flat, samples=4,
                                  passes=frozenset({"albedo", "normal"})))
    return {"scene": scene, "noisy": noisy, "reference": reference, "flat": flat, "folder": out}


def _colors(pattern: str, frames=range(1, FRAMES + 1)) -> list[np.ndarray]:
    return [read_frame(frame_path(pattern, f)).feature("color") for f in frames]


def _denoise(sequence, backend: str, *extra: str) -> str:
    out = str(Path(sequence["folder"]) / backend / "f.####.exr")
    assert main(["run", "denoise", "--backend", backend, "--device", "cpu", "--input", sequence["noisy"],
                 "--output", out, "--frames", f"1-{FRAMES}", *extra]) == 0
    return out


def test_temporal_denoise_beats_per_frame_oidn_and_flickers_less(sequence):
    temporal = _colors(_denoise(sequence, "temporal"))
    oidn = _colors(_denoise(sequence, "oidn"))
    refs = [read_frame(frame_path(sequence["reference"], f)) for f in range(1, FRAMES + 1)]
    ref_color = [r.feature("color") for r in refs]
    motion = [r.feature("motion") for r in refs]
    psnr_t = np.mean([psnr_tonemapped(r, t) for r, t in zip(ref_color, temporal, strict=True)])
    psnr_o = np.mean([psnr_tonemapped(r, t) for r, t in zip(ref_color, oidn, strict=True)])
    assert psnr_t > psnr_o + 0.3, f"temporal {psnr_t:.2f} dB, oidn {psnr_o:.2f} dB"
    flicker_t = temporal_instability(temporal, ref_color, motion=motion)
    flicker_o = temporal_instability(oidn, ref_color, motion=motion)
    # The result itself changes less from frame to frame along the vectors, and scores better.
    assert flicker_t.result_change < 0.8 * flicker_o.result_change
    assert flicker_t.mean < flicker_o.mean


def test_the_metric_scores_a_flickering_real_sequence_worse_than_a_stable_one(sequence):
    refs = [read_frame(frame_path(sequence["reference"], f)) for f in range(1, FRAMES + 1)]
    ref_color = [r.feature("color") for r in refs]
    motion = [r.feature("motion") for r in refs]
    noisy = _colors(sequence["noisy"])  # a new noise pattern every frame: flicker
    stable = [c * 1.05 for c in ref_color]  # wrong by 5 %, the same way every frame
    for vectors in (None, motion):
        flickering = temporal_instability(noisy, ref_color, motion=vectors).mean
        assert flickering > 5 * temporal_instability(stable, ref_color, motion=vectors).mean
    # A camera pan changes every pixel: without the vectors a frozen frame looks like flicker.
    frozen = [ref_color[0]] * FRAMES
    assert temporal_instability(frozen, ref_color).mean > 0.01


def test_without_a_vector_pass_each_frame_is_denoised_on_its_own(sequence, capsys, caplog):
    folder = Path(sequence["folder"])
    temporal, oidn = str(folder / "flat-t" / "f.####.exr"), str(folder / "flat-o" / "f.####.exr")
    assert main(["run", "denoise", "--backend", "temporal", "--device", "cpu", "--input", sequence["flat"],
                 "--output", temporal, "--frames", "1-3"]) == 0
    assert sum("no Vector pass" in r.getMessage() and "on its own" in r.getMessage() for r in caplog.records) == 3
    assert main(["run", "denoise", "--device", "cpu", "--input", sequence["flat"], "--output", oidn,
                 "--frames", "1-3"]) == 0
    for a, b in zip(_colors(temporal, (1, 2, 3)), _colors(oidn, (1, 2, 3)), strict=True):
        np.testing.assert_array_equal(a, b)
    failed = str(folder / "flat-x" / "f.####.exr")
    assert main(["run", "denoise", "--backend", "temporal", "--require-motion", "--input", sequence["flat"],
                 "--output", failed, "--frames", "1-3"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "f.0001.exr" in err and "no Vector pass" in err


def test_a_temporal_plan_runs_on_the_local_farm_across_chunk_boundaries(sequence, tmp_path, capsys):
    shot = {"name": "pan", "scene": str(sequence["scene"]), "frames": {"start": 1, "end": FRAMES},
            "resolution": {"width": 64, "height": 36}, "samples": 64, "output": "frames/pan.####.exr"}
    (tmp_path / "shot.yaml").write_text(yaml.safe_dump(shot))
    plan = {"shot": "shot.yaml", "samples_factor": 0.125, "chunk_size": 3, "check_frames": [3],
            "stages": [{"kind": "denoise", "backend": "temporal", "device": "cpu"}]}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    run_dir = tmp_path / "run"
    assert main(["submit", str(tmp_path / "plan.yaml"), "--run-dir", str(run_dir)]) == 0
    capsys.readouterr()
    graph = json.loads((run_dir / "graph.json").read_text())
    denoise = {t["id"]: t for t in graph["tasks"] if t["layer"] == "denoise"}
    assert denoise["denoise-0001-0003"]["depends_on"] == ["render-0001-0003", "render-0004-0006"]
    assert denoise["denoise-0004-0006"]["depends_on"] == ["render-0004-0006", "render-0001-0003"]
    assert {t["reads"] for t in denoise.values()} == {"window"}
    for f in range(1, FRAMES + 1):
        delivered = read_frame(run_dir / "frames" / f"pan.{f:04d}.exr")
        assert delivered.parts[0].spec.getattribute("farmplug:backend") == "temporal"
    report = json.loads((run_dir / "report.json").read_text())
    assert report["plan"]["stages"] == ["denoise:temporal"]
    # Chunked in two tasks, every frame is what one task over the whole shot makes of the same
    # renders: a frame's result depends on its reach alone (window + stabilize), never on its chunk.
    whole = str(tmp_path / "whole" / "pan.####.exr")
    assert main(["run", "denoise", "--backend", "temporal", "--device", "cpu", "--input",
                 str(run_dir / "work" / "render" / "pan.####.exr"), "--output", whole, "--frames", f"1-{FRAMES}"]) == 0
    for f in range(1, FRAMES + 1):
        np.testing.assert_array_equal(read_frame(run_dir / "frames" / f"pan.{f:04d}.exr").feature("color"),
                                      read_frame(frame_path(whole, f)).feature("color"), err_msg=f"frame {f}")
    # Finished tasks are trusted by a second submit: nothing runs again.
    before = {f: (run_dir / "frames" / f"pan.{f:04d}.exr").stat().st_mtime_ns for f in range(1, FRAMES + 1)}
    assert main(["submit", str(tmp_path / "plan.yaml"), "--run-dir", str(run_dir)]) == 0
    assert before == {f: (run_dir / "frames" / f"pan.{f:04d}.exr").stat().st_mtime_ns for f in range(1, FRAMES + 1)}

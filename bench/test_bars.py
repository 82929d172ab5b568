"""Measure the scores behind the integration tests' bars: the real stage against wrong implementations.

The integration tests' thresholds (tests/integration/test_pipeline.py, test_inbetween_stage.py)
sit between what the real stage scores on their fixture renders and what the nearest plausible
wrong implementation scores. This script renders the same fixtures (same scenes, sizes, samples
and frames as tests/conftest.py and the inbetween tests) and prints both, so a bar can be re-set
from measurements when a fixture or a stage changes.

    .venv/bin/python bench/test_bars.py --out /tmp/bars

Renders are cached in ``--out``; a second run only measures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def box_blur(color: np.ndarray, size: int) -> np.ndarray:
    from scipy.ndimage import uniform_filter

    return np.stack([uniform_filter(color[..., c], size=size, mode="nearest") for c in range(3)], axis=-1)


def denoise_bars(out: Path) -> None:
    from farmplug.denoise.oidn import OidnDenoiser, OidnOptions
    from farmplug.imageio import read_frame
    from farmplug.quality import measure
    from farmplug.render import BlenderRenderer, RenderRequest
    from farmplug.render.base import frame_path
    from farmplug.render.demo_scene import build_demo_scene

    # tests/conftest.py: tiny_scene and tiny_renders.
    scene = out / "denoise" / "tiny.blend"
    if not scene.is_file():
        build_demo_scene(scene, frames=4, resolution=(64, 36), samples=64)
    noisy = str(out / "denoise" / "multipart" / "tiny.####.exr")
    reference = str(out / "denoise" / "reference" / "tiny.####.exr")
    renderer = BlenderRenderer()
    if not frame_path(noisy, 2).is_file():
        renderer.render(RenderRequest(scene=scene, frames=(1, 2), output_pattern=noisy, samples=4,
                                      passes=frozenset({"albedo", "normal", "depth", "motion"})))
    if not frame_path(reference, 2).is_file():
        renderer.render(RenderRequest(scene=scene, frames=(1, 2), output_pattern=reference, samples=256))
    print("denoise: gain over the noisy 4-spp frame against 256 spp (PSNR dB, FLIP ratio)")
    with OidnDenoiser(OidnOptions()) as oidn:
        for frame in (1, 2):
            render = read_frame(frame_path(noisy, frame))
            ref = read_frame(frame_path(reference, frame)).feature("color")
            color, albedo, normal = render.feature("color"), render.feature("albedo"), render.feature("normal")
            base = measure(ref, color)
            candidates = {
                "OIDN, albedo + normal": oidn.denoise(color, albedo=albedo, normal=normal),
                "OIDN, albedo only": oidn.denoise(color, albedo=albedo),
                "OIDN, colour only": oidn.denoise(color),
                "box blur 3x3": box_blur(color, 3),
                "box blur 5x5": box_blur(color, 5),
                "box blur 7x7": box_blur(color, 7),
                "identity": color,
            }
            for name, result in candidates.items():
                q = measure(ref, result)
                print(f"  frame {frame}  {name:22s} {q.psnr - base.psnr:+6.2f} dB  FLIP x{q.flip_mean / base.flip_mean:.3f}"
                      f"  ({q.psnr:.2f} dB, FLIP {q.flip_mean:.4f})")


def inbetween_bars(out: Path) -> None:
    from farmplug.cli import main
    from farmplug.imageio import read_frame
    from farmplug.quality import measure
    from farmplug.render import BlenderRenderer, RenderRequest
    from farmplug.render.base import frame_path
    from farmplug.render.sequences import build_sequence

    # tests/integration/test_inbetween_stage.py: translate_seq and translate_guide.
    folder = out / "inbetween"
    scene = folder / "seq.blend"
    pattern = str(folder / "frames" / "seq.####.exr")
    guide = str(folder / "guide" / "seq.####.exr")
    if not scene.is_file():
        build_sequence("translate_rotate", scene, frames=9, resolution=(96, 54), samples=256)
    renderer = BlenderRenderer()
    if not frame_path(pattern, 3).is_file():
        renderer.render(RenderRequest(scene=scene, frames=(1, 2, 3), output_pattern=pattern, samples=256,
                                      passes=frozenset({"albedo", "normal", "depth", "motion", "object_index"})))
    if not frame_path(guide, 2).is_file():
        renderer.render(RenderRequest(scene=scene, frames=(2,), output_pattern=guide, samples=2,
                                      passes=frozenset({"albedo", "depth", "motion", "normal"})))
    real, a, b = (read_frame(frame_path(pattern, f)) for f in (2, 1, 3))
    index = next(i for i, p in enumerate(real.parts) if p.name.endswith("Object Index"))
    print("inbetween: frame 2 from keyframes 1 and 3, against the real render of frame 2")
    for mode, extra in (("unguided", []), ("guided", ["--guide", guide])):
        dest = folder / mode
        rc = main(["run", "inbetween", "--input", pattern, "--output", str(dest / "ib.####.exr"), "--frames", "1-3",
                          "--step", "2", "--confidence", str(dest / "conf.json"), "--threshold", "0", *extra])
        if rc != 0:
            raise SystemExit("the inbetween stage failed")
        score = json.loads((dest / "conf.json").read_text())["frames"][0]["score"]
        made = read_frame(dest / "ib.0002.exr")
        confident = made.parts[-1].pixels[..., 0] > 0.9
        real_depth = real.feature("depth")[..., 0]
        within = np.abs(made.feature("depth")[..., 0] - real_depth) <= 0.01 * real_depth
        real_vectors = real.feature("motion")
        vector_error = np.linalg.norm(made.feature("motion") - real_vectors, axis=-1)[confident].mean()
        ids = made.parts[index].pixels[..., 0] == real.parts[index].pixels[..., 0]
        q = measure(real.feature("color"), made.feature("color"))
        print(f"  {mode:9s} score {score:.3f} (halved {score / 2:.3f}); confident pixels {confident.mean():.1%}; "
              f"depth within 1 % {within[confident].mean():.2%}; vector error {vector_error:.4f} px; "
              f"IDs right {ids[confident].mean():.2%} confident, {ids.mean():.2%} all; colour {q.psnr:.2f} dB")
        print(f"  {'':9s} zero vectors' error {np.linalg.norm(real_vectors, axis=-1)[confident].mean():.4f} px; "
              f"keyframe 1's vectors {np.linalg.norm(a.feature('motion') - real_vectors, axis=-1)[confident].mean():.4f} px")
    held = a.parts[index].pixels[..., 0] == real.parts[index].pixels[..., 0]
    fade = measure(real.feature("color"), 0.5 * (a.feature("color") + b.feature("color")))
    hold = measure(real.feature("color"), a.feature("color"))
    print(f"  keyframe 1 held: IDs right {held.mean():.2%}, colour {hold.psnr:.2f} dB; cross-fade colour {fade.psnr:.2f} dB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/test-bars"), help="render cache and outputs")
    args = parser.parse_args()
    denoise_bars(args.out)
    inbetween_bars(args.out)


if __name__ == "__main__":
    main()

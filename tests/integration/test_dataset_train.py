"""``farmplug dataset`` on a tiny real Blender scene, a few-iteration ``farmplug train`` (CI runs this one),
resuming both, and the shipped weights against bicubic on a scene they were never trained on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from farmplug.cli import main

torch = pytest.importorskip("torch", reason="torch not installed")
pytest.importorskip("safetensors", reason="safetensors not installed (pip install farmplug[models])")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Two procedural scenes, 2 frames each, 64x36 full resolution (the dataset command for real)."""
    pytest.importorskip("bpy", reason="bpy (Blender as a Python module) is not installed")
    out = tmp_path_factory.mktemp("data") / "set"
    assert main(["dataset", "--out", str(out), "--count", "2", "--seed", "100", "--frames", "2", "--resolution", "64x36",
                 "--samples", "16", "--crop", "24"]) == 0
    return out


def test_dataset_has_its_manifest_and_resumes(dataset, capsys):
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert [s["name"] for s in manifest["scenes"]] == ["proc-00100", "proc-00101"]
    assert manifest["command"].startswith("farmplug dataset --out")
    assert manifest["settings"]["samples"] == 16 and manifest["settings"]["guide_samples"] == 2
    with np.load(dataset / manifest["scenes"][0]["shard"], allow_pickle=False) as shard:
        assert shard["color"].shape == (2, 3, 18, 32)
        assert shard["guide"].shape == (2, 7, 36, 64) and shard["target"].shape == (2, 3, 36, 64)
    assert manifest["scenes"][0]["crops"][0] == [0, 0]
    shard = dataset / manifest["scenes"][0]["shard"]
    before = shard.stat().st_mtime_ns
    # Run again (one more scene asked for): the finished scenes are kept, not rendered again.
    assert main(["dataset", "--out", str(dataset), "--count", "2", "--seed", "100", "--frames", "2",
                 "--resolution", "64x36", "--samples", "16", "--crop", "24"]) == 0
    assert shard.stat().st_mtime_ns == before
    # Other settings into the same folder are refused.
    capsys.readouterr()
    assert main(["dataset", "--out", str(dataset), "--count", "1", "--samples", "32"]) == 1
    assert "made with other settings" in capsys.readouterr().err


def stopped_after(train, iteration: int, *args) -> None:
    """Run ``train(*args)`` and stop it (as Ctrl-C would) once ``iteration`` is done."""
    def stop(done, _loss):
        if done == iteration:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(*args, progress=stop)


def test_training_smoke_writes_weights_report_and_resumes_identically(dataset, tmp_path):
    """A few iterations: weights with their metadata, the report, and a resumed run equal to an unbroken one."""
    from farmplug.nn.weights import load_weights
    from farmplug.upscale.train import TrainSettings, checkpoint_path, train

    out = tmp_path / "m.safetensors"
    args = ["train", "upscale", "--data", str(dataset), "--out", str(out), "--iterations", "6", "--batch", "2",
            "--crop", "24", "--val-every", "3", "--checkpoint-every", "3", "--seed", "5"]
    assert main(args) == 0
    weights = load_weights(out)
    assert weights.arch.name == "guided-sr-2x"
    assert weights.metadata["command"].startswith("farmplug train upscale --data")
    assert weights.training["iterations"] == 6 and weights.training["scenes_validation"]
    report = json.loads((tmp_path / "m.report.json").read_text())
    assert [i for i, _ in report["loss_curve"]] == [6] and [i for i, _ in report["validation_psnr_curve"]] == [3, 6]
    assert set(report["validation"]) == {"model", "bicubic", "nearest", "demodulated"}
    assert "| model |" in (tmp_path / "m.report.md").read_text()
    assert not checkpoint_path(out).exists()

    # Stopped after iteration 4 (the checkpoint holds iteration 3), then run again.
    settings = TrainSettings(iterations=6, batch=2, crop=24, val_every=3, checkpoint_every=3, seed=5)
    resumed = tmp_path / "r.safetensors"
    stopped_after(train, 4, dataset, resumed, settings)
    assert checkpoint_path(resumed).is_file()
    train(dataset, resumed, settings)
    a, b = load_weights(out).tensors, load_weights(resumed).tensors
    assert all(np.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_keep_best_writes_the_weights_of_the_best_validation(dataset, tmp_path):
    """``--keep best``: the written weights are those of the validation with the highest PSNR (their
    validation PSNR is that one), not the last iteration's; resumed, the best so far survives."""
    from farmplug.nn.weights import load_weights
    from farmplug.upscale.dataset import load_shards
    from farmplug.upscale.train import (
        TrainSettings,
        _frames_of,
        _torch_predict,
        best_path,
        evaluate,
        split_scenes,
        train,
    )

    # A learning rate far too high for the network: the validation PSNR wanders, so the best is
    # (almost surely) not the last; what is checked holds whichever it is.
    settings = TrainSettings(iterations=8, batch=2, crop=24, val_every=1, checkpoint_every=2, seed=5, lr=0.05,
                             keep="best")
    out = tmp_path / "best.safetensors"
    stopped_after(train, 5, dataset, out, settings)
    assert best_path(out).is_file()
    report = train(dataset, out, settings)
    curve = report["validation_psnr_curve"]
    assert [i for i, _ in curve] == list(range(1, 9))
    best_iteration, best_psnr = max(curve, key=lambda ip: ip[1])
    assert report["kept_iteration"] == best_iteration
    shards = load_shards(dataset)
    _train, val = split_scenes(list(shards), settings.val_fraction, settings.seed)
    psnr = evaluate(_torch_predict(load_weights(out).module()), _frames_of(shards, val))["model"]["psnr"]
    assert psnr == pytest.approx(best_psnr, abs=1e-4)
    assert load_weights(out).training["kept_iteration"] == best_iteration
    assert not best_path(out).exists()


@pytest.mark.slow
def test_shipped_weights_beat_bicubic_on_scenes_never_trained_on(tmp_path):
    """The committed weights on the demo shot and the glossy sequence (not in the procedural training set),
    against their real full-resolution renders at the same samples."""
    pytest.importorskip("bpy", reason="bpy is not installed")
    from farmplug.upscale.stage import SHIPPED_WEIGHTS

    if not SHIPPED_WEIGHTS.is_file():
        pytest.skip("no shipped weights in this checkout")
    from farmplug.nn.weights import load_weights
    from farmplug.render.demo_scene import build_demo_scene
    from farmplug.render.sequences import build_sequence
    from farmplug.upscale.dataset import DatasetSettings, load_shards, make_dataset
    from farmplug.upscale.train import _frames_of, _torch_predict, evaluate

    build_demo_scene(tmp_path / "demo.blend", frames=24, resolution=(128, 72), samples=128)
    build_sequence("glossy", tmp_path / "glossy.blend", frames=9, resolution=(128, 72), samples=128)
    make_dataset(tmp_path / "data", [tmp_path / "demo.blend", tmp_path / "glossy.blend"],
                 settings=DatasetSettings(frames=1, samples=128))
    shards = load_shards(tmp_path / "data")
    predict = _torch_predict(load_weights(SHIPPED_WEIGHTS).module())
    for name in ("demo", "glossy"):
        metrics = evaluate(predict, _frames_of(shards, [name]))
        assert metrics["model"]["psnr"] > metrics["bicubic"]["psnr"] + 1.0, (name, metrics)
        assert metrics["model"]["psnr"] > metrics["demodulated"]["psnr"] + 1.0, (name, metrics)

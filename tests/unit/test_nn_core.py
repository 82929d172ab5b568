"""farmplug.nn: the architecture registry, safetensors weights, ONNX export, backend choice, tiling, OOM retries.

Tiny random models on 16-64 px inputs; TensorRT and CUDA paths are exercised with stand-ins here
(the real providers are tested in tests/unit/test_nn_gpu.py, which skips without them).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest

from farmplug.errors import FarmplugError

torch = pytest.importorskip("torch", reason="torch not installed")
pytest.importorskip("safetensors", reason="safetensors not installed (pip install farmplug[models])")

from farmplug.nn.registry import ARCHITECTURES, architecture  # noqa: E402
from farmplug.nn.weights import WeightsError, load_weights, read_metadata, save_weights  # noqa: E402

TINY = {"features": 8, "blocks": 1, "head_features": 8}


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A tiny guided-sr-2x with random (non-zero) weights, saved as safetensors."""
    torch.manual_seed(0)
    arch = architecture("guided-sr-2x")
    net = arch.build(**TINY)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_weights(path, arch, net.state_dict(), hparams=TINY, version="7", training={"scenes": 3},
                 command="pytest tiny")
    return load_weights(path)


def inputs(weights, height, width, seed=0):
    from farmplug.nn.export import example_inputs

    return example_inputs(weights, height, width, seed=seed)


# --- registry -------------------------------------------------------------------------------


def test_registry_describes_the_guided_upscaler():
    d = architecture("guided-sr-2x")
    assert d.scale == 2 and d.size_multiple == 2 and d.half and d.out_channels == 3
    assert [(i.name, i.features, i.channels, i.scale) for i in d.inputs] == [
        ("color", ("color",), 3, 0.5), ("guidance", ("albedo", "normal", "depth"), 7, 1.0)]
    assert set(ARCHITECTURES) == {"guided-sr-2x"}


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(FarmplugError, match=r"unknown model architecture 'esrgan'; known: guided-sr-2x"):
        architecture("esrgan")


def test_importing_the_model_layer_pulls_no_torch_or_onnxruntime():
    code = ("import sys, json, farmplug.nn, farmplug.nn.registry, farmplug.nn.weights, farmplug.nn.backends, "
            "farmplug.nn.tiling, farmplug.nn.engine, farmplug.nn.export, farmplug.upscale.config; "
            "print(json.dumps([m for m in ('torch', 'onnxruntime', 'onnx', 'bpy') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


# --- weights --------------------------------------------------------------------------------


def test_weights_round_trip_with_metadata(tiny_weights):
    w = tiny_weights
    assert w.arch.name == "guided-sr-2x" and w.hparams == TINY
    assert w.metadata["version"] == "7" and w.metadata["command"] == "pytest tiny"
    assert w.training == {"scenes": 3}
    assert "log1p" in w.metadata["normalisation"]
    assert len(w.sha256) == 64
    net = w.module()
    again = {k: v.numpy() for k, v in net.state_dict().items()}
    assert again.keys() == w.tensors.keys()
    assert all(np.array_equal(again[k], w.tensors[k]) for k in again)
    # The header reads without the tensors, and says the same.
    assert read_metadata(w.path)["architecture"] == "guided-sr-2x"


def test_a_pickle_is_refused_by_name_never_loaded(tmp_path, tiny_weights):
    path = tmp_path / "model.pth"
    torch.save(tiny_weights.module().state_dict(), path)
    with pytest.raises(WeightsError, match=r"model.pth: is a pickle \(torch.save\) file; farmplug never unpickles"):
        load_weights(path)


@pytest.mark.parametrize("content,message", [
    pytest.param(b"", "not a safetensors weights file", id="empty"),
    pytest.param(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage}", "not a safetensors weights file", id="garbage"),
], )
def test_corrupt_weights_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=message) as err:
        load_weights(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_foreign_safetensors_and_other_versions_are_refused(tmp_path, tiny_weights):
    from safetensors.numpy import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(foreign))
    with pytest.raises(WeightsError, match="without farmplug's metadata"):
        load_weights(foreign)
    other = tmp_path / "other.safetensors"
    save_file(tiny_weights.tensors, str(other), metadata={"farmplug:architecture": "guided-sr-2x",
                                                           "farmplug:arch_version": "99"})
    with pytest.raises(WeightsError, match="version 99, this farmplug has version 1"):
        load_weights(other)
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(WeightsError, match="weights file not found"):
        load_weights(missing)


def test_tensors_that_do_not_fit_the_architecture(tmp_path, tiny_weights):
    path = tmp_path / "misfit.safetensors"
    save_weights(path, tiny_weights.arch, tiny_weights.tensors, hparams={**TINY, "features": 16})
    with pytest.raises(WeightsError, match="do not fit architecture guided-sr-2x"):
        load_weights(path).module()


# --- ONNX export ------------------------------------------------------------------------------


def test_onnx_export_matches_torch_at_any_size(tmp_path, tiny_weights):
    pytest.importorskip("onnxruntime")
    from farmplug.nn.export import export_onnx, max_relative_diff, onnx_sha, run_onnx_cpu

    result = export_onnx(tiny_weights, tmp_path / "tiny.onnx", check_shape=(256, 256))
    assert result.max_abs_diff <= 1e-3
    assert onnx_sha(result.path) == tiny_weights.sha256
    net = tiny_weights.module()
    for shape in ((16, 16), (40, 64)):  # dynamic height and width
        x = inputs(tiny_weights, *shape, seed=1)
        with torch.no_grad():
            expected = net(torch.from_numpy(x["color"]), torch.from_numpy(x["guidance"])).numpy()
        got = run_onnx_cpu(result.path, x)
        assert got.shape == (1, 3, *shape)
        assert max_relative_diff(expected, got) <= 1e-4


# --- backends ---------------------------------------------------------------------------------


class FakeBackend:
    def __init__(self, name, fn=None):
        self.name, self.device, self.precision = name, "cuda" if "cuda" in name or "tensorrt" in name else "cpu", "fp32"
        self.fn = fn
        self.calls: list[tuple[int, int]] = []

    def run(self, feeds):
        self.calls.append(feeds["guidance"].shape[2:])
        return self.fn(feeds)

    def close(self):
        pass


def fakes(fail=()):
    def make(name):
        def factory(_w, _o):
            if name in fail:
                raise RuntimeError(f"{name} libraries missing\nsecond line")
            return FakeBackend(name)
        return factory
    from farmplug.nn.backends import BACKEND_ORDER

    return {name: make(name) for name in BACKEND_ORDER}


EVERYTHING = dict(ort_providers=("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
                  torch=True, torch_cuda=True)


@pytest.mark.parametrize("machine,runtime,device,expected", [
    pytest.param(EVERYTHING, "auto", "auto", ["onnxruntime-tensorrt", "onnxruntime-cuda", "torch-cuda",
                                               "onnxruntime-cpu", "torch-cpu"], id="gpu-node"),
    pytest.param(EVERYTHING, "torch", "auto", ["torch-cuda", "torch-cpu"], id="torch-only"),
    pytest.param(EVERYTHING, "auto", "cpu", ["onnxruntime-cpu", "torch-cpu"], id="cpu-asked"),
    pytest.param(dict(ort_providers=("CPUExecutionProvider",), torch=True), "auto", "auto",
                 ["onnxruntime-cpu", "torch-cpu"], id="cpu-node"),
    pytest.param(dict(ort_providers=("CPUExecutionProvider",)), "auto", "auto", ["onnxruntime-cpu"], id="no-torch"),
    pytest.param(dict(torch=True), "onnxruntime", "auto", [], id="no-onnxruntime"),
])
def test_backends_are_tried_in_order_of_preference(machine, runtime, device, expected):
    from farmplug.nn.backends import Machine, candidates

    assert candidates(runtime, device, Machine(**machine)) == expected


def test_a_backend_that_fails_to_start_falls_back_with_a_warning(tiny_weights, caplog):
    from farmplug.nn.backends import Machine, open_backend

    with caplog.at_level(logging.WARNING):
        backend = open_backend(tiny_weights, machine=Machine(**EVERYTHING),
                               factories=fakes(fail={"onnxruntime-tensorrt", "onnxruntime-cuda"}))
    assert backend.name == "torch-cuda"
    assert "inference on torch-cuda (onnxruntime-tensorrt: onnxruntime-tensorrt libraries missing; " \
           "onnxruntime-cuda: onnxruntime-cuda libraries missing could not start)" in caplog.text


def test_cuda_asked_for_but_missing_is_an_error(tiny_weights):
    from farmplug.nn.backends import Machine, open_backend

    cpu_only = Machine(ort_providers=("CPUExecutionProvider",), torch=True)
    with pytest.raises(FarmplugError, match="no inference backend for runtime auto, device cuda: none of them is "
                                            "installed here"):
        open_backend(tiny_weights, device="cuda", machine=cpu_only, factories=fakes())
    with pytest.raises(FarmplugError, match="torch-cuda: torch-cuda libraries missing"):
        open_backend(tiny_weights, device="cuda", machine=Machine(**EVERYTHING),
                     factories=fakes(fail={"onnxruntime-tensorrt", "onnxruntime-cuda", "torch-cuda"}))


@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_real_cpu_backends_agree(tmp_path, tiny_weights, runtime):
    pytest.importorskip("onnxruntime")
    from farmplug.nn.backends import BackendOptions, open_backend

    backend = open_backend(tiny_weights, runtime=runtime, device="cpu",
                           options=BackendOptions(cache=tmp_path, threads=1))
    assert backend.name == f"{runtime}-cpu" and backend.device == "cpu" and backend.precision == "fp32"
    x = inputs(tiny_weights, 32, 48)
    with torch.no_grad():
        expected = tiny_weights.module()(torch.from_numpy(x["color"]), torch.from_numpy(x["guidance"])).numpy()
    assert np.allclose(backend.run(x), expected, rtol=1e-4, atol=1e-5)
    backend.close()


# --- tiling and out-of-memory -------------------------------------------------------------------


@pytest.mark.parametrize("tile,shape", [
    pytest.param(16, (64, 64), id="16px-tiles"),
    pytest.param(24, (48, 62), id="uneven-frame"),
    pytest.param(1024, (40, 40), id="one-tile"),
])
def test_tiled_output_equals_untiled(tiny_weights, tile, shape):
    from farmplug.nn.backends import BackendOptions, TorchBackend
    from farmplug.nn.tiling import plan_tiles, run_tiles

    backend = TorchBackend(tiny_weights, BackendOptions(threads=1), "cpu")
    x = inputs(tiny_weights, *shape)
    whole = backend.run(x)
    tiled = run_tiles(backend, tiny_weights.arch, x, tile=tile)
    assert np.max(np.abs(whole - tiled) / np.maximum(1, np.abs(whole))) < 1e-5
    tiles = plan_tiles(*shape, tile, tiny_weights.arch.receptive_field, 2)
    covered = np.zeros(shape, int)
    for t in tiles:
        covered[t.y0:t.y1, t.x0:t.x1] += 1
        assert t.y0 % 2 == 0 and t.x0 % 2 == 0
    assert (covered == 1).all()


def test_without_overlap_the_seams_show(tiny_weights):
    """The overlap is what makes tiling exact (the test above would pass for a trivial reason otherwise)."""
    from farmplug.nn.backends import BackendOptions, TorchBackend
    from farmplug.nn.tiling import run_tiles

    backend = TorchBackend(tiny_weights, BackendOptions(threads=1), "cpu")
    x = inputs(tiny_weights, 64, 64)
    assert np.max(np.abs(backend.run(x) - run_tiles(backend, tiny_weights.arch, x, tile=16, overlap=0))) > 1e-3


def oom_above(pixels, kind="torch"):
    """A backend that runs out of memory on windows larger than ``pixels`` (the way each runtime says it)."""
    class OutOfMemoryError(RuntimeError):
        pass

    def fn(feeds):
        h, w = feeds["guidance"].shape[2:]
        if h * w > pixels:
            if kind == "torch":
                raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested "
                               "buffer of size 123")
        n = feeds["guidance"].shape[0]
        return np.broadcast_to(feeds["guidance"][:, :1], (n, 3, h, w)) * 1.0
    return FakeBackend("torch-cuda", fn)


@pytest.mark.parametrize("kind", ["torch", "onnxruntime"])
def test_out_of_memory_retries_with_smaller_tiles(tiny_weights, kind, caplog):
    from farmplug.nn.tiling import run_with_retry

    backend = oom_above(100 * 100, kind)
    x = inputs(tiny_weights, 256, 256)
    with caplog.at_level(logging.WARNING):
        out, tile = run_with_retry(backend, tiny_weights.arch, x, tile=256, overlap=8)
    assert tile == 64  # 256 and 128 (+ overlap) ran out; 64 fits
    assert np.array_equal(out, np.broadcast_to(x["guidance"][:, :1], out.shape))
    assert "out of memory on torch-cuda with 256-pixel tiles; retrying with 128" in caplog.text


def test_out_of_memory_at_the_smallest_tile_fails_the_task_with_one_line(tiny_weights):
    from farmplug.nn.tiling import OutOfMemory, run_with_retry

    with pytest.raises(OutOfMemory, match="out of memory on torch-cuda even with 64-pixel tiles"):
        run_with_retry(oom_above(10), tiny_weights.arch, inputs(tiny_weights, 128, 128), tile=128, overlap=8)


def test_other_errors_are_not_retried(tiny_weights):
    from farmplug.nn.tiling import run_with_retry

    def broken(_feeds):
        raise ValueError("shape mismatch")

    backend = FakeBackend("onnxruntime-cpu", broken)
    with pytest.raises(ValueError, match="shape mismatch"):
        run_with_retry(backend, tiny_weights.arch, inputs(tiny_weights, 64, 64), tile=64)
    assert len(backend.calls) == 1


def test_tile_size_follows_the_memory_budget(tiny_weights):
    from farmplug.nn.tiling import MIN_TILE, tile_for_budget

    small, large = tile_for_budget(tiny_weights.arch, 256, 28), tile_for_budget(tiny_weights.arch, 8192, 28)
    assert MIN_TILE <= small < large and small % 2 == 0 == large % 2
    assert tile_for_budget(tiny_weights.arch, 1, 28) == MIN_TILE

"""The GPU paths of farmplug.nn: TensorRT through ONNX Runtime, ONNX Runtime CUDA, torch CUDA fp16.

The option and cache-key logic runs everywhere; the real providers run only where they exist and
skip with the reason otherwise (no CI machine has a GPU or TensorRT).
"""

from __future__ import annotations

import numpy as np
import pytest

from farmplug.nn.engine import engine_cache_dir, tensorrt_provider_options

torch = pytest.importorskip("torch", reason="torch not installed")


def _providers() -> tuple[str, ...]:
    try:
        import onnxruntime as ort
    except ImportError:
        return ()
    return tuple(ort.get_available_providers())


needs_trt = pytest.mark.skipif("TensorrtExecutionProvider" not in _providers(),
                               reason="ONNX Runtime has no TensorRT execution provider here (onnxruntime-gpu and "
                                      "TensorRT are not installable on the development machines)")
needs_ort_cuda = pytest.mark.skipif("CUDAExecutionProvider" not in _providers(),
                                    reason="ONNX Runtime has no CUDA execution provider here")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")


def test_engine_cache_is_keyed_by_model_gpu_and_tensorrt_version(tmp_path):
    a = engine_cache_dir(tmp_path, "ab" * 32, "NVIDIA H200", "10.9.0")
    assert a == tmp_path / "trt" / "abababababababab-nvidia-h200-trt10.9.0"
    assert engine_cache_dir(tmp_path, "cd" * 32, "NVIDIA H200", "10.9.0") != a
    assert engine_cache_dir(tmp_path, "ab" * 32, "NVIDIA L40S", "10.9.0") != a
    assert engine_cache_dir(tmp_path, "ab" * 32, "NVIDIA H200", "10.8.0") != a


def test_tensorrt_provider_options(tmp_path):
    options = tensorrt_provider_options(tmp_path, fp16=True,
                                        min_input_shapes={"color": (3, 16, 16), "guidance": (7, 32, 32)},
                                        max_input_shapes={"color": (3, 540, 540), "guidance": (7, 1080, 1080)})
    assert options["trt_fp16_enable"] is True and options["trt_engine_cache_enable"] is True
    assert options["trt_engine_cache_path"] == str(tmp_path)
    assert options["trt_profile_min_shapes"] == "color:1x3x16x16,guidance:1x7x32x32"
    assert options["trt_profile_max_shapes"] == "color:1x3x540x540,guidance:1x7x1080x1080"


def test_build_engine_without_tensorrt_is_a_clear_error(tmp_path, capsys):
    if "TensorrtExecutionProvider" in _providers():
        pytest.skip("TensorRT is here: nothing to refuse")
    from farmplug.cli import main
    from farmplug.upscale.stage import SHIPPED_WEIGHTS

    if not SHIPPED_WEIGHTS.is_file():
        pytest.skip("no shipped weights")
    assert main(["build-engine", str(SHIPPED_WEIGHTS), "--shape", "64x64", "--cache", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no TensorRT execution provider" in err
    assert list(tmp_path.glob("*.onnx")), "the ONNX graph is exported even without TensorRT"


def _weights(tmp_path):
    from farmplug.nn.registry import architecture
    from farmplug.nn.weights import load_weights, save_weights

    arch = architecture("guided-sr-2x")
    torch.manual_seed(0)
    net = arch.build(features=8, blocks=1, head_features=8)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    save_weights(tmp_path / "w.safetensors", arch, net.state_dict(), hparams={"features": 8, "blocks": 1,
                                                                            "head_features": 8})
    return load_weights(tmp_path / "w.safetensors")


def _check(backend, weights, tol):
    from farmplug.nn.export import example_inputs

    x = example_inputs(weights, 64, 64)
    with torch.no_grad():
        expected = weights.module()(torch.from_numpy(x["color"]), torch.from_numpy(x["guidance"])).numpy()
    got = backend.run(x)
    assert np.max(np.abs(got - expected) / np.maximum(1, np.abs(expected))) < tol


@pytest.mark.gpu
@needs_trt
def test_tensorrt_fp16_backend_builds_and_caches_an_engine(tmp_path):
    from farmplug.nn.backends import BackendOptions, open_backend

    weights = _weights(tmp_path)
    backend = open_backend(weights, runtime="onnxruntime", device="cuda",
                           options=BackendOptions(cache=tmp_path, tile_shape=(128, 128)))
    assert backend.name == "onnxruntime-tensorrt" and backend.precision == "fp16"
    _check(backend, weights, 2e-2)
    assert list((tmp_path / "trt").rglob("*.engine"))


@pytest.mark.gpu
@needs_ort_cuda
def test_onnxruntime_cuda_backend(tmp_path):
    from farmplug.nn.backends import FACTORIES, BackendOptions

    weights = _weights(tmp_path)
    backend = FACTORIES["onnxruntime-cuda"](weights, BackendOptions(cache=tmp_path))
    _check(backend, weights, 1e-3)


@pytest.mark.gpu
@needs_cuda
def test_torch_cuda_fp16_backend(tmp_path):
    from farmplug.nn.backends import BackendOptions, TorchBackend

    weights = _weights(tmp_path)
    backend = TorchBackend(weights, BackendOptions(), "cuda")
    assert backend.precision == "fp16"
    _check(backend, weights, 2e-2)
